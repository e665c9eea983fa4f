"""Our fast cochlea against the `lauscher` package (the code that made SHD) and against closed
forms. lauscher is slow and memory hungry: clips are tens of ms, channel subsets small.
≈ 25 s on 2 loaded cores (most of it lauscher's pure-Python hair cell and bushy cell)."""

from __future__ import annotations

import numpy as np
import pytest

from spikedelay.data.synth import cochlea as co

lauscher = pytest.importorskip("lauscher")
from lauscher.audiowaves import MonoAudioWave  # noqa: E402
from lauscher.firing_probability import FiringProbability  # noqa: E402
from lauscher.membranevelocity import MembraneVelocity  # noqa: E402
from lauscher.transformations import (  # noqa: E402
    BasilarMembrane,
    BushyCell,
    HairCell,
    HanningWindow,
    RmsNormalizer,
)

FS = 48_000


def _clip(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    return (
        np.sin(2 * np.pi * 700 * t)
        + 0.5 * np.sin(2 * np.pi * 3100 * t)
        + 0.3 * np.sin(2 * np.pi * 9000 * t)
        + 0.1 * rng.standard_normal(n)
    )


def _lauscher_front(audio: np.ndarray) -> MonoAudioWave:
    wave = MonoAudioWave(audio.copy(), FS)
    return wave.transform(RmsNormalizer(0.3)).transform(HanningWindow())


@pytest.fixture(scope="module")
def reference_bm():
    """lauscher's basilar membrane on a 20 ms clip (its Pool forks; ≈ 1 s)."""
    audio = _clip(960)
    return audio, _lauscher_front(audio).transform(BasilarMembrane())


@pytest.mark.parametrize("n", [960, 961])
def test_front_matches_lauscher(n):
    audio = _clip(n, seed=n)
    np.testing.assert_allclose(
        co.normalise_and_window(audio), _lauscher_front(audio).samples, rtol=1e-12, atol=1e-15
    )


def test_basilar_membrane_matches_lauscher(reference_bm):
    audio, ref = reference_bm
    ours = co.basilar_membrane(co.normalise_and_window(audio), FS)
    assert ref.sample_rate == FS // 2
    assert ours.shape == ref.channels.shape == (700, 481)
    # same closed form, different operation order: agreement to ~1e-13 of the peak
    scale = np.abs(ref.channels).max()
    np.testing.assert_allclose(ours, ref.channels, rtol=1e-9, atol=1e-10 * scale)


def test_basilar_membrane_transfer_is_cached():
    a = co.bm_transfer(480, FS)
    assert co.bm_transfer(480, FS) is a
    assert not a.flags.writeable


def test_hair_cell_matches_lauscher(reference_bm):
    _, bm = reference_bm
    subset = bm.channels[::35]  # 20 channels keep lauscher's Python loop short
    ref = MembraneVelocity(subset, bm.sample_rate).transform(HairCell())
    ours = co.hair_cell(subset, bm.sample_rate)
    np.testing.assert_allclose(ours, ref.channels, rtol=1e-12, atol=1e-15)
    # also at a much louder input (saturating release)
    ref_loud = MembraneVelocity(subset * 50, bm.sample_rate).transform(HairCell())
    np.testing.assert_allclose(
        co.hair_cell(subset * 50, bm.sample_rate), ref_loud.channels, rtol=1e-12, atol=1e-15
    )


def test_bushy_lif_matches_lauscher_given_the_same_fibre_spikes():
    fs = FS // 2
    cell = BushyCell()
    np.random.seed(3)
    total = 0
    for p in (0.003, 0.006, 0.012, 0.03):
        prob = np.full(1200, p)
        prob[600:] *= 1 + np.sin(np.linspace(0, 12, 600))
        fibres = cell._sample(prob, fs).astype(np.float64)  # (T, 40)
        ref = cell._lif(fibres, fs).astype(bool)
        ours = co.bushy_cell(fibres.sum(1)[None, :].astype(np.int32), fs)[0]
        total += ref.sum()
        np.testing.assert_array_equal(ours, ref)
    assert total > 50


def test_fibre_refractoriness_and_rate_closed_form():
    """One fibre at constant p: inter-spike intervals are 24 + Geometric(p) steps (1 ms dead
    time at 24 kHz), so the mean interval is 24 + (1 - p) / p."""
    fs = FS // 2
    p = 0.01
    prob = np.full((50, 20_000), p)
    counts = co.fibre_counts(prob, fs, seed=7, params=co.BushyCellParams(n_fibres=1))
    isi = np.concatenate([np.diff(np.flatnonzero(row)) for row in counts])
    assert counts.max() == 1 and isi.min() == 24
    expected = 24 + (1 - p) / p
    sem = np.sqrt((1 - p) / p**2 / isi.size)
    assert abs(isi.mean() - expected) < 5 * sem


def test_fibre_counts_match_lauscher_statistics():
    fs = FS // 2
    rng = np.random.default_rng(0)
    t = np.arange(2400)
    prob = np.stack(
        [np.clip(a * (1 + np.sin(t / rng.uniform(5, 80))), 0, 1) for a in np.linspace(0, 0.06, 20)]
    )
    prob[-1, 100:110] = 1.0  # p ≥ 1 must fire at once after refractoriness
    cell = BushyCell()
    np.random.seed(0)
    ref = np.array([cell._sample(row, fs).sum() for row in prob])
    ours = co.fibre_counts(prob, fs, seed=0).sum(1)
    assert ref[0] == ours[0] == 0
    # Poisson-like noise: within 5 standard deviations per channel, totals within 2 %
    assert np.all(np.abs(ours - ref) <= 5 * np.sqrt(ref + 1) + 2)
    assert abs(ours.sum() / ref.sum() - 1) < 0.02


def test_bushy_cell_spike_counts_match_lauscher_statistics():
    fs = FS // 2
    rng = np.random.default_rng(1)
    t = np.arange(4800)
    levels = np.linspace(0.002, 0.025, 30)
    prob = np.stack([lv * (1 + 0.8 * np.sin(t / rng.uniform(10, 200))) for lv in levels])
    ref = []
    for seed in range(2):
        np.random.seed(seed)
        train = FiringProbability(prob, fs).transform(BushyCell())
        ref.append(np.bincount(train.spike_labels.astype(int), minlength=30))
    ref = np.mean(ref, axis=0)
    ours = np.mean(
        [co.bushy_cell(co.fibre_counts(prob, fs, seed=s), fs).sum(1) for s in range(8)], axis=0
    )
    assert ref.sum() > 1000
    assert abs(ours.sum() / ref.sum() - 1) < 0.05
    assert np.corrcoef(ours, ref)[0, 1] > 0.99


def test_cochlea_is_reproducible_and_seeded():
    audio = _clip(4800)
    t1, u1 = co.cochlea(audio, seed=5, channels=100)
    t2, u2 = co.cochlea(audio, seed=5, channels=100)
    t3, _ = co.cochlea(audio, seed=6, channels=100)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(u1, u2)
    assert not np.array_equal(t1, t3)
    # sorted by time, then unit; times on the 2/fs grid
    order = np.lexsort((u1, t1))
    np.testing.assert_array_equal(order, np.arange(t1.size))
    np.testing.assert_allclose(t1 * FS / 2, np.round(t1 * FS / 2), atol=1e-6)
    assert u1.min() >= 0 and u1.max() < 100


@pytest.mark.parametrize("freq, unit", [(1000, 403), (8000, 120)])
def test_channel_map_of_tones(freq, unit):
    """Measured map (REFERENCE §6, 48 kHz): 1 kHz → unit ≈ 403, 8 kHz → ≈ 120."""
    t = np.arange(4800) / FS
    _, units = co.cochlea(np.sin(2 * np.pi * freq * t), seed=0)
    peak = np.argmax(np.convolve(np.bincount(units, minlength=700), np.ones(9), "same"))
    assert abs(peak - unit) < 25


def test_fast_clip_length():
    for n in (1, 959, 24_000, 31_337):
        m = co.fast_clip_length(n, 2400)
        assert m >= n and m % 2 == 0
        assert co._is_5_smooth(m // 2 + 1)
    assert len({co.fast_clip_length(n, 4800) for n in range(20_000, 48_000, 97)}) <= 7
