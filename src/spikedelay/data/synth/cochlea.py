"""A fast version of the Heidelberg cochlea model that made SHD (Cramer et al. 2020).

Chain (the published model, the same parameters as the ``lauscher`` package):

1. RMS-normalise the waveform to 0.3, then a Hann window over the whole utterance
   (rising over the first half, falling over the second).
2. Hydrodynamic basilar membrane (Sieroka, Dosch & Rupp 2006): 700 places along the cochlea, the
   response of place ``c`` is ``real(ifft(V(ω, c) · X(ω)))`` over the first ``N//2 + 1`` FFT
   bins, so its output runs at ``fs / 2``. ``V`` is the closed-form transfer of the model.
3. Meddis transmitter-pool inner hair cell per place → firing probability per step.
4. 40 auditory-nerve fibres per place, Bernoulli spikes with 1 ms absolute refractoriness.
5. One LIF bushy cell per place summing its 40 fibres through exponential synapses;
   its spikes are the output (times in seconds, quantised at ``2 / fs``; units 0 … 699).

What makes it fast (≈ 0.3 s instead of ≈ 90 s for 0.5 s of 48 kHz audio):

- the transfer ``V`` (channels × bins, complex, the costly part: a Hankel function per entry)
  depends only on the clip length and rate, so it is computed once per length and cached;
  the SynthDigits builder pads clips to a few lengths whose ``N//2 + 1`` is FFT-friendly;
- the hair cell and the bushy cell are per-channel recursions compiled with numba;
- the 40 fibres are not simulated step by step: a Bernoulli process with dead time is sampled
  exactly by drawing each next spike from the cumulative hazard ``Σ -log(1 - p_t)``
  (one exponential and one binary search per fibre spike instead of one uniform per step);
  since the bushy cell's synapses are linear, it only needs the fibre spike count per step.

Internal arrays are ``(channel, time)``: every stage is a recursion over time within a channel.
Random numbers come from a counter-based generator seeded by ``(seed, channel, fibre)``, so the
output depends only on ``seed``, never on thread scheduling.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np
import scipy.fft
from scipy import special

FS = 48_000  # always feed 48 kHz: spike counts depend on the rate (REFERENCE §6)
N_CHANNELS = 700
RMS_LEVEL = 0.3


class BasilarMembraneParams(NamedTuple):
    """Hydrodynamic basilar membrane (Sieroka et al. 2006), the values used for SHD."""

    a: float = 3500.0
    alpha: float = 3.0
    rho: float = 1.0
    c_max: float = 3.5  # places are linspace(0, c_max, channels); 0 = base (high frequency)
    c0: float = 10e8
    de: float = 0.15
    h: float = 0.1
    m: float = 0.05


class HairCellParams(NamedTuple):
    """Meddis (1986, 1988) transmitter-pool hair cell."""

    y: float = 5.05
    g: float = 2000.0
    l: float = 2500.0
    r: float = 6580.0
    x: float = 66.3
    a: float = 5.0
    b: float = 300.0
    h: float = 50000.0
    m: float = 1.0


class BushyCellParams(NamedTuple):
    """Fibres per bushy cell and the LIF bushy cell."""

    n_fibres: int = 40
    tau_mem: float = 1e-3
    tau_syn: float = 5e-4
    tau_refrac: float = 1e-3  # fibres and bushy cell alike
    weight: float = 13e3  # total over the fibres (each gets weight / n_fibres)


BM_PARAMS = BasilarMembraneParams()
HAIR_CELL_PARAMS = HairCellParams()
BUSHY_CELL_PARAMS = BushyCellParams()


# ------------------------------------------------------------------------------------------
# 1. Front: RMS normalisation and Hann window
# ------------------------------------------------------------------------------------------


def normalise_and_window(audio: np.ndarray, level: float = RMS_LEVEL) -> np.ndarray:
    """RMS-normalise to ``level`` and apply a Hann ramp over each half of the clip.

    Shapes: audio (N,) → (N,), float64. The middle sample of an odd-length clip is not scaled.
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    rms = math.sqrt(float(np.mean(x**2)))
    if rms == 0.0:
        raise ValueError("cannot RMS-normalise a silent clip")
    x = x * (level / rms)
    half = x.size // 2
    ramp = np.hanning(2 * half)[:half]
    x[:half] *= ramp
    x[x.size - half :] *= ramp[::-1]
    return x


# ------------------------------------------------------------------------------------------
# 2. Basilar membrane
# ------------------------------------------------------------------------------------------


def bm_frequencies(n_samples: int, fs: int) -> np.ndarray:
    """Angular frequencies at which the model evaluates its transfer (as the SHD code does:
    ``N//2 + 1`` points spread evenly from 1 Hz to ``fs//2``, not the exact FFT bin centres)."""
    return 2.0 * np.pi * np.linspace(1, fs // 2, n_samples // 2 + 1)


def _impedance(omega: np.ndarray, p: BasilarMembraneParams) -> np.ndarray:
    """Input impedance ``Z(ω)`` of the cochlear duct (Bessel functions of ``k(ω)``)."""
    k = 2.0 * omega / p.alpha * np.sqrt(2.0 / (p.h * p.c0))  # = 4π f / α · sqrt(2 / (h c0))
    num = 1j * special.j0(k) + special.y0(k)
    den = special.j1(k) - 1j * special.y1(k)
    return np.sqrt(2.0 * p.c0 / p.h) * num / den


def _pressure(omega: np.ndarray, c: np.ndarray, p: BasilarMembraneParams) -> np.ndarray:
    """Pressure ``P(ω, c)`` (WKB solution with a Hankel function), broadcasting ω against c."""
    r0 = p.de * np.sqrt(p.c0 * p.m)
    mw2 = p.m * omega**2
    decay = np.exp(-p.alpha * c / 2.0)  # r(c) / r0, and s(c) = c0·decay² − a
    xi_c = p.c0 * decay**2 - p.a - mw2 - 1j * omega * r0 * decay
    xi_0 = p.c0 - p.a - mw2 - 1j * omega * r0
    g_c = omega * np.sqrt(p.rho / (p.h * xi_c))
    g_0 = omega * np.sqrt(p.rho / (p.h * xi_0))
    root_a = np.sqrt(p.a + mw2)
    top = -p.alpha * np.sqrt(xi_0) + 1j * p.alpha * (
        2.0 * p.a + omega * (2.0 * p.m * omega + 1j * r0)
    ) / (2.0 * root_a)
    bottom = (
        0.5
        * p.alpha
        / decay
        * (
            -2.0 * np.sqrt(xi_c)
            + 1j * (2.0 * p.a + omega * (2.0 * p.m * omega + 1j * decay * r0)) / root_a
        )
    )
    big_g = 2.0 * g_0 / p.alpha - (2j * np.sqrt(2.0) * omega * np.log(top / bottom)) / (
        p.alpha * np.sqrt(2.0 * p.h * (mw2 + p.a))
    )
    return np.sqrt(big_g / g_c) * special.hankel1(0, big_g)


def bm_transfer_uncached(
    n_samples: int,
    fs: int,
    channels: int = N_CHANNELS,
    params: BasilarMembraneParams = BM_PARAMS,
    *,
    block: int = 25,
) -> np.ndarray:
    """Membrane velocity transfer ``V(ω, c)`` for a clip of ``n_samples`` at ``fs``.

    Shapes: → (channels, n_samples//2 + 1) complex128. Cost ≈ 1 µs per entry (the Hankel
    function), i.e. ≈ 8 s for 0.5 s at 48 kHz: call :func:`bm_transfer` (cached) instead.
    Computed in blocks of ``block`` channels to keep temporaries small.
    """
    p = params
    omega = bm_frequencies(n_samples, fs)
    places = np.linspace(0.0, p.c_max, channels)
    r0 = p.de * np.sqrt(p.c0 * p.m)
    ref = _impedance(omega, p) / _pressure(omega, np.zeros(1), p)  # Z(ω) / P(ω, 0)
    out = np.empty((channels, omega.size), dtype=np.complex128)
    for start in range(0, channels, block):
        c = places[start : start + block, None]
        decay = np.exp(-p.alpha * c / 2.0)
        xi_c = p.c0 * decay**2 - p.a - p.m * omega**2 - 1j * omega * r0 * decay
        out[start : start + block] = (2.0 * omega / xi_c) * _pressure(omega, c, p) * ref
    return out


@lru_cache(maxsize=2)
def bm_transfer(n_samples: int, fs: int, channels: int = N_CHANNELS) -> np.ndarray:
    """Cached :func:`bm_transfer_uncached` (default parameters), read-only.

    Two lengths are kept (≈ 135 MB each for 0.5 s at 48 kHz): process clips grouped by length.
    """
    v = bm_transfer_uncached(n_samples, fs, channels)
    v.setflags(write=False)
    return v


def basilar_membrane(x: np.ndarray, fs: int, channels: int = N_CHANNELS) -> np.ndarray:
    """Membrane velocity per place, sampled at ``fs // 2``.

    Shapes: x (N,) (already normalised and windowed) → (channels, N//2 + 1) float64.
    The inverse FFT has length ``N//2 + 1``: pick ``N`` so that it is FFT-friendly
    (see :func:`fast_clip_length`), else a prime factor makes it several times slower.
    """
    n = x.size
    v = bm_transfer(n, fs, channels)
    spectrum = scipy.fft.rfft(x)[: v.shape[1]]  # the first N//2 + 1 bins, as fft(x)[:N//2+1]
    return scipy.fft.ifft(v * spectrum, axis=1).real


def fast_clip_length(min_samples: int, quantum: int) -> int:
    """Smallest even clip length ≥ ``min_samples``, a multiple of ``quantum`` rounded up to a
    length whose ``N//2 + 1`` is 5-smooth (a fast FFT size). Few distinct lengths → few
    transfers to compute; fast sizes → a fast inverse FFT."""
    n = -(-max(int(min_samples), 1) // quantum) * quantum
    m = scipy.fft.next_fast_len(n // 2 + 1)
    while not _is_5_smooth(m):
        m = scipy.fft.next_fast_len(m + 1)
    return 2 * (m - 1)


def _is_5_smooth(n: int) -> bool:
    for q in (2, 3, 5):
        while n % q == 0:
            n //= q
    return n == 1


# ------------------------------------------------------------------------------------------
# 3. Hair cell
# ------------------------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True)
def _meddis(bm, fs, y, g, l, r, x, a, b, h, m):  # pragma: no cover - compiled
    ymdt = y * m / fs
    xdt = x / fs
    ydt = y / fs
    rdt = r / fs
    gdt = g / fs
    hdt = h / fs
    lplusrdt = (l + r) / fs
    kt0 = g * a / (a + b)
    c0 = m * y * kt0 / (l * kt0 + y * (l + r))
    q0 = c0 * (l + r) / kt0
    w0 = c0 * r / x
    channels, steps = bm.shape
    out = np.empty((channels, steps))
    for ch in numba.prange(channels):
        q = q0
        c = c0
        w = w0
        for j in range(steps):
            s = bm[ch, j] + a
            if s > 0:
                kt = gdt * s / (s + b)
            else:
                kt = 0.0
            if q < m:
                replenish = ymdt - ydt * q
            else:
                replenish = 0.0
            eject = kt * q
            reuptake_and_loss = lplusrdt * c
            reuptake = rdt * c
            reprocess = xdt * w
            q = max(q + replenish - eject + reprocess, 0.0)
            c = max(c + eject - reuptake_and_loss, 0.0)
            w = max(w + reuptake - reprocess, 0.0)
            out[ch, j] = c * hdt
    return out


def hair_cell(bm: np.ndarray, fs: float, params: HairCellParams = HAIR_CELL_PARAMS) -> np.ndarray:
    """Firing probability per step of each place's fibres (Meddis hair cell, starting at rest).

    Shapes: bm (channels, T) membrane velocity at rate ``fs`` → (channels, T) float64.
    """
    bm = np.ascontiguousarray(bm, dtype=np.float64)
    return _meddis(bm, float(fs), *params)


# ------------------------------------------------------------------------------------------
# 4. Fibres and 5. bushy cell
# ------------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_HAZARD_CAP = 50.0  # hazard of a step with p ≥ 1: P(no spike) = e^-50, i.e. never


@numba.njit(cache=True, inline="always")
def _splitmix(state):  # pragma: no cover - compiled
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return state, z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def _hazard(p):  # pragma: no cover - compiled
    """-log(1 - p), the hazard of one step. A series for small p (the common case: ≈ 5× faster
    than log1p; the first omitted term is p⁹/9 < 4e-13 · p for p < 0.04)."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return _HAZARD_CAP
    if p < 0.04:
        return p * (
            1.0
            + p
            * (
                1.0 / 2
                + p
                * (1.0 / 3 + p * (1.0 / 4 + p * (1.0 / 5 + p * (1.0 / 6 + p * (1.0 / 7 + p / 8)))))
            )
        )
    return -math.log1p(-p)


@numba.njit(cache=True, inline="always")
def _first_reaching(cum, start, target):  # pragma: no cover - compiled
    """Smallest k ≥ start with cum[k] ≥ target (len(cum) if none); cum is non-decreasing.
    Galloping search: the next spike is usually a few hundred steps away."""
    n = cum.size
    lo = start  # invariant: cum[i] < target for start ≤ i < lo
    step = 16
    hi = start
    while True:
        hi = lo + step
        if hi >= n:
            hi = n
            break
        if cum[hi - 1] >= target:
            break
        lo = hi
        step *= 2
    while lo < hi:  # answer in [lo, hi]
        mid = (lo + hi) // 2
        if cum[mid] >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, parallel=True)
def _fibre_counts(prob, n_fibres, refrac_steps, seed):  # pragma: no cover - compiled
    channels, steps = prob.shape
    counts = np.zeros((channels, steps), dtype=np.int32)
    for ch in numba.prange(channels):
        # cum[t] = hazard of steps 0..t (inclusive)
        cum = np.empty(steps)
        acc = 0.0
        for t in range(steps):
            acc += _hazard(prob[ch, t])
            cum[t] = acc
        for fibre in range(n_fibres):
            state = np.uint64(seed) * _GOLDEN + np.uint64(ch * 1024 + fibre)
            state, _ = _splitmix(state)
            t = 0
            while t < steps:
                state, z = _splitmix(state)
                u = ((z >> _S11) + np.uint64(1)) * (1.0 / 9007199254740992.0)  # (0, 1]
                base = cum[t - 1] if t > 0 else 0.0
                # first step k ≥ t with hazard over t..k ≥ Exp(1): P(silent over t..k) = Π(1 - p)
                k = _first_reaching(cum, t, base - math.log(u))
                if k >= steps:
                    break
                counts[ch, k] += 1
                t = k + refrac_steps
    return counts


def fibre_counts(
    prob: np.ndarray,
    fs: float,
    seed: int,
    params: BushyCellParams = BUSHY_CELL_PARAMS,
) -> np.ndarray:
    """Number of fibre spikes per step and place (``n_fibres`` fibres, each Bernoulli with
    probability ``prob`` per step and an absolute refractory period of ``tau_refrac``).

    Shapes: prob (channels, T) → (channels, T) int32. Deterministic in ``seed``.
    """
    refrac = params.tau_refrac * fs
    # a spike at j blocks every j' with j' - j < refrac
    refrac_steps = max(int(math.ceil(refrac)), 1)
    prob = np.ascontiguousarray(prob, dtype=np.float64)
    return _fibre_counts(prob, int(params.n_fibres), refrac_steps, np.uint64(seed))


@numba.njit(cache=True, parallel=True)
def _bushy_lif(counts, dt, decay_mem, decay_syn, weight, n_refrac):  # pragma: no cover
    channels, steps = counts.shape
    spikes = np.zeros((channels, steps), dtype=np.bool_)
    for ch in numba.prange(channels):
        v_prev = 0.0
        isyn = 0.0
        refrac = 0.0
        for step in range(steps):
            v = 0.0
            if step > 0:
                if refrac <= 0:
                    if v_prev < 1.0:
                        v = v_prev * decay_mem
                    else:  # the spike is registered one step late, as in the SHD code
                        refrac = n_refrac
                        spikes[ch, step - 1] = True
                isyn = isyn * decay_syn
            isyn += counts[ch, step]
            if refrac <= 0:
                v += isyn * weight * dt
            if v > 1.0:
                v = 1.0
            refrac -= 1
            v_prev = v
    return spikes


def bushy_cell(
    counts: np.ndarray, fs: float, params: BushyCellParams = BUSHY_CELL_PARAMS
) -> np.ndarray:
    """LIF bushy cell driven by its fibres' spike counts (synapses are linear, so the count per
    step is all it needs). Shapes: counts (channels, T) → spikes (channels, T) bool."""
    dt = 1.0 / float(fs)
    return _bushy_lif(
        np.ascontiguousarray(counts, dtype=np.int32),
        dt,
        math.exp(-dt / params.tau_mem),
        math.exp(-dt / params.tau_syn),
        params.weight / float(params.n_fibres),
        params.tau_refrac * fs,
    )


def dense_to_events(spikes: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(channels, T) bool → (times in s, units), sorted by time then unit."""
    steps, units = np.nonzero(spikes.T)
    return steps / float(fs), units.astype(np.int64)


# ------------------------------------------------------------------------------------------
# Whole chain
# ------------------------------------------------------------------------------------------


def cochlea(
    audio: np.ndarray, fs: int = FS, *, seed: int = 0, channels: int = N_CHANNELS
) -> tuple[np.ndarray, np.ndarray]:
    """Waveform → bushy-cell spikes, the SHD cochlea model.

    Shapes: audio (N,) at ``fs`` → (times (S,) float64 seconds, units (S,) int64), sorted by
    time then unit; times are multiples of ``2 / fs``. Feed 48 kHz: channel 0 ≈ 20 kHz,
    699 ≈ 100 Hz, and spike counts depend on the rate.
    """
    x = normalise_and_window(audio)
    bm = basilar_membrane(x, fs, channels)
    fs_bm = fs // 2
    prob = hair_cell(bm, fs_bm)
    counts = fibre_counts(prob, fs_bm, seed)
    return dense_to_events(bushy_cell(counts, fs_bm), fs_bm)
