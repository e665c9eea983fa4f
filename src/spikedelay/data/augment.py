"""Augmentation of framed spike counts, for the training split only.

Why here and not in the files: augmented data is drawn afresh every epoch, on the device that
holds the batch, from a generator derived from ``(seed, epoch)`` alone, so an epoch's augmented
data is the same whether the run went through or was resumed (nothing to checkpoint), and the
same on every data-parallel process (each augments the same global batch, then keeps its share).

Each transform is a frozen dataclass (its parameters, as written in ``data.augment``) over a
pure function of tensors. All work on spike *counts* (B, T, C) with their ``lengths``: every
output is again non-negative integer counts, zero past its (possibly new) length. Counts move
between bins by binomial splitting, never by rounding a fraction away, so stretching in time
keeps every spike and expectations are those of linear interpolation.

Channel layout (docs/data.md, REFERENCE §6): feature 0 holds the *highest* cochlea channels
(unit 0 ≈ 20 kHz, 699 ≈ 100 Hz; features are groups of ``channel_group`` units). ``band_limit``
uses each feature's resonance frequency from the cochlea's basilar-membrane parameters.

Config (a list, applied in order; ``p`` is the chance that a sample gets the transform)::

    data:
      augment:
        - {name: time_shift, max_shift: 10, p: 0.5}    # per-channel shifts, frames
        - {name: class_blend, keep: 0.5, p: 0.3}       # DelRec's same-class blend
        - {name: band_limit, high_hz: [3000, 8000]}    # telephone-like low-pass

This module imports nothing else of the package but ``errors`` (``config`` validates specs
with :func:`augment_problems`), and duck-types the training set (``frames``, ``lengths``,
``labels``) and batches (``(x, lengths, labels)`` named tuples).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from spikedelay.errors import ConfigError

Range = tuple[float, float]  # a value drawn uniformly per sample from [lo, hi] (lo == hi: fixed)

_SALT = 0x5A7A  # keeps augmentation draws apart from the speaker split's, which use the same seed


class TrainingPool(Protocol):
    """What a same-class blend needs of the training set (a ``FramedSet``)."""

    frames: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class Context:
    """What transforms may read besides the batch: the training set and the channel layout."""

    pool: TrainingPool | None = None
    feature_hz: torch.Tensor | None = None  # (C,) centre frequency of each feature, Hz


# --------------------------------------------------------------------------------------------
# pure functions (x: (B, T, C) float counts, lengths: (B,) int64)


def valid_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """(B, t, 1) bool: frame index < length."""
    return (torch.arange(t, device=lengths.device)[None, :] < lengths[:, None])[..., None]


def shift_in_time(x: torch.Tensor, lengths: torch.Tensor, shifts: torch.Tensor,
                  t_out: int) -> torch.Tensor:
    """``out[b, t, c] = x[b, t - shifts[b, c], c]`` where ``0 <= t - shift < lengths[b]``, else 0.

    Shapes: shifts (B, C) or (B, 1) int64 (positive = later) → (B, t_out, C).
    """
    b, t_in, c = x.shape
    src = torch.arange(t_out, device=x.device)[None, :, None] - shifts[:, None, :]
    ok = (src >= 0) & (src < lengths[:, None, None])
    src = src.clamp(0, max(t_in - 1, 0)).expand(b, t_out, c)
    if t_in == 0:
        return x.new_zeros(b, t_out, c)
    return torch.gather(x, 1, src) * ok


def thin(x: torch.Tensor, keep: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Binomial thinning: each count ``n`` becomes ``Binomial(n, keep)`` (keep broadcasts to x).

    Only the non-zero counts are drawn (spike frames are mostly zeros; the binomial sampler is
    the expensive part)."""
    flat = x.reshape(-1)
    nz = torch.nonzero(flat).squeeze(1)
    prob = torch.broadcast_to(keep.to(x.dtype), x.shape).reshape(-1)[nz]
    out = torch.zeros_like(flat)
    out[nz] = torch.binomial(flat[nz], prob, generator=generator)
    return out.view_as(x)


def move_counts(x: torch.Tensor, pos: torch.Tensor, size: int,
                generator: torch.Generator) -> torch.Tensor:
    """Move the counts at index ``i`` of the last axis to the fractional position ``pos[..., i]``.

    A count ``n`` at position ``k + f`` (``0 <= f < 1``) sends ``Binomial(n, f)`` to ``k + 1`` and
    the rest to ``k``; what lands outside ``0 .. size - 1`` is dropped. Integers stay integers
    and the expectation is linear interpolation. Shapes: x (..., N), pos broadcastable to x →
    (..., size).
    """
    pos = torch.broadcast_to(pos, x.shape)
    lo = torch.floor(pos)
    upper = thin(x, (pos - lo).to(x.dtype), generator)
    lower = x - upper
    out = x.new_zeros(*x.shape[:-1], size + 2)  # one guard slot each side for dropped counts
    lo_idx = lo.to(torch.int64) + 1
    out.scatter_add_(-1, lo_idx.clamp(0, size + 1), lower)
    out.scatter_add_(-1, (lo_idx + 1).clamp(0, size + 1), upper)
    return out[..., 1 : size + 1]


def stretch_time(x: torch.Tensor, lengths: torch.Tensor, factors: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Play each sample ``factors[b]`` times as long (> 1 slower), keeping every count.

    Frame ``t`` (covering ``[t, t + 1)``) is centred at ``(t + 1/2)·f - 1/2`` afterwards (at
    least 0). The new length is the last frame that can receive counts, plus one (``f = 1`` is
    the identity). Returns (x', lengths').
    """
    _, t_in, _ = x.shape
    t = torch.arange(t_in, device=x.device, dtype=x.dtype)
    f = factors.to(x.dtype)[:, None]
    pos = ((t[None, :] + 0.5) * f - 0.5).clamp_min(0.0)  # (B, T)
    last = ((lengths.to(x.dtype) - 0.5) * f[:, 0] - 0.5).clamp_min(0.0)
    new_lengths = torch.where(lengths > 0, torch.ceil(last).to(torch.int64) + 1,
                              torch.zeros_like(lengths))
    t_out = int(new_lengths.max()) if new_lengths.numel() else 0
    moved = move_counts(x.transpose(1, 2), pos[:, None, :], t_out, generator).transpose(1, 2)
    return moved, new_lengths


def warp_channels(x: torch.Tensor, factors: torch.Tensor, shifts: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
    """Stretch the channel axis by ``factors[b]`` about its centre, then shift it by
    ``shifts[b]`` features (fractional; positive = towards higher indices, i.e. lower
    frequencies in the cochlea layout). Counts pushed past either edge are dropped."""
    c = x.shape[-1]
    centre = (c - 1) / 2.0
    idx = torch.arange(c, device=x.device, dtype=x.dtype)
    f, s = factors.to(x.dtype)[:, None], shifts.to(x.dtype)[:, None]
    pos = (idx[None, :] - centre) * f + centre + s
    return move_counts(x, pos[:, None, :], c, generator)


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """(B,) mean frame index of the counts (0 for an empty sample)."""
    mass = x.sum(-1)
    t = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)
    total = mass.sum(-1)
    return torch.where(total > 0, (mass * t).sum(-1) / total.clamp_min(1e-30),
                       torch.zeros_like(total))


def blend(x: torch.Tensor, lengths: torch.Tensor, other: torch.Tensor,
          other_lengths: torch.Tensor, keep: torch.Tensor,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """DelRec's same-class blend: align the two samples' centres of mass in time (the earlier
    one is delayed by the rounded difference, nothing is cut), thin each by
    ``Binomial(n, keep)`` and add. Returns (x', lengths'), lengths' = the longer aligned one."""
    align = torch.round(centre_of_mass(x) - centre_of_mass(other)).to(torch.int64)
    pad_x, pad_o = (-align).clamp_min(0), align.clamp_min(0)
    new_lengths = torch.maximum(lengths + pad_x, other_lengths + pad_o)
    new_lengths = torch.where((lengths > 0) & (other_lengths > 0), new_lengths,
                              torch.maximum(lengths, other_lengths))
    t_out = int(new_lengths.max()) if new_lengths.numel() else 0
    a = shift_in_time(x, lengths, pad_x[:, None], t_out)
    b = shift_in_time(other, other_lengths, pad_o[:, None], t_out)
    k = keep.to(x.dtype)[:, None, None]
    return thin(a, k, generator) + thin(b, k, generator), new_lengths


def band_mask(feature_hz: torch.Tensor, high_hz: torch.Tensor,
              low_hz: torch.Tensor) -> torch.Tensor:
    """(B, 1, C) float: 1 where ``low_hz[b] <= feature_hz <= high_hz[b]``, else 0."""
    f = feature_hz[None, :]
    return ((f <= high_hz[:, None]) & (f >= low_hz[:, None])).to(feature_hz.dtype)[:, None, :]


def cochlea_feature_hz(n_channels: int, channel_group: int) -> np.ndarray:
    """Centre frequency (Hz) of each feature of the SHD cochlea layout: the geometric mean of
    its units' resonance frequencies ``sqrt((c0·exp(-α·x) - a) / m) / 2π`` at place
    ``x = c_max · unit / (n_channels - 1)`` (the basilar-membrane parameters SHD used; unit 0 ≈
    22 kHz, 403 ≈ 1.1 kHz, 699 ≈ 110 Hz, which matches the measured map of REFERENCE §6)."""
    from spikedelay.data.synth.cochlea import BM_PARAMS as P

    place = P.c_max * np.arange(n_channels) / max(n_channels - 1, 1)
    omega2 = (P.c0 * np.exp(-P.alpha * place) - P.a) / P.m
    hz = np.sqrt(np.maximum(omega2, 1.0)) / (2 * math.pi)
    n_out = n_channels // channel_group
    groups = np.log(hz[: n_out * channel_group]).reshape(n_out, channel_group)
    return np.exp(groups.mean(axis=1))


# --------------------------------------------------------------------------------------------
# transforms: parameters + the random draws, over the pure functions above


def _uniform(rng: Range, n: int, like: torch.Tensor, generator: torch.Generator,
             *, log: bool = False) -> torch.Tensor:
    lo, hi = rng
    u = torch.rand(n, generator=generator, device=like.device, dtype=torch.float64)
    if log:
        return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).to(like.dtype)
    return (lo + u * (hi - lo)).to(like.dtype)


@dataclass(frozen=True)
class Transform:
    """Base: ``p`` = chance per sample; subclasses implement :meth:`apply` on the whole batch."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()  # Context fields it reads
    p: float = 1.0

    def problems(self) -> list[str]:
        return [] if 0.0 <= self.p <= 1.0 else [f"p = {self.p!r}: must be in [0, 1]"]

    def apply(self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
              ctx: Context, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                 ctx: Context, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x', lengths'): the transform on a share ``p`` of the samples, the rest unchanged
        (only the picked samples are computed)."""
        picked = torch.rand(x.shape[0], generator=generator, device=x.device) < self.p
        idx = torch.nonzero(picked).squeeze(1)
        if idx.numel() == 0:
            return x, lengths
        sub_lengths = lengths[idx]
        sub_x = x[idx, : int(sub_lengths.max())]
        new_x, new_lengths = self.apply(sub_x, sub_lengths, labels[idx], ctx, generator)
        out = _pad_time(x, max(x.shape[1], new_x.shape[1])).clone()
        out[idx] = _pad_time(new_x, out.shape[1])
        out_lengths = lengths.clone()
        out_lengths[idx] = new_lengths
        return out[:, : int(out_lengths.max())], out_lengths


def _pad_time(x: torch.Tensor, t: int) -> torch.Tensor:
    return x if x.shape[1] == t else torch.nn.functional.pad(x, (0, 0, 0, t - x.shape[1]))


def _range_problems(name: str, value: Range, lo: float, hi: float, what: str) -> list[str]:
    a, b = value
    if not (lo <= a <= b <= hi):
        return [f"{name} = {list(value)!r}: must be {what}"]
    return []


@dataclass(frozen=True)
class TimeShift(Transform):
    """Per-channel random time shifts (DelRec: up to ±100 frames on SHD): each feature of a
    sample moves by its own integer ``U{-max_shift .. max_shift}`` frames, zero-filled; what
    leaves ``[0, length)`` is lost and the length is kept."""

    name: ClassVar[str] = "time_shift"
    max_shift: int = 10

    def problems(self) -> list[str]:
        bad = [] if self.max_shift >= 0 else [f"max_shift = {self.max_shift!r}: must be >= 0"]
        return super().problems() + bad

    def apply(self, x, lengths, labels, ctx, generator):
        b, t, c = x.shape
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (b, c), generator=generator,
                               device=x.device)
        return shift_in_time(x, lengths, shifts, t) * valid_mask(lengths, t), lengths


@dataclass(frozen=True)
class TimeStretch(Transform):
    """Slower or faster speech: the time axis scaled by a factor drawn log-uniformly from
    ``[1/max_factor, max_factor]``; every count is kept, lengths change with the factor."""

    name: ClassVar[str] = "time_stretch"
    max_factor: float = 1.15

    def problems(self) -> list[str]:
        bad = [] if self.max_factor >= 1.0 else [f"max_factor = {self.max_factor!r}: must be >= 1"]
        return super().problems() + bad

    def apply(self, x, lengths, labels, ctx, generator):
        f = _uniform((1 / self.max_factor, self.max_factor), x.shape[0], x, generator, log=True)
        return stretch_time(x, lengths, f, generator)


@dataclass(frozen=True)
class ChannelShift(Transform):
    """Shift along the channel (frequency) axis by ``U(-max_shift, max_shift)`` features
    (fractional): on the log-frequency cochlea axis a shift is a change of pitch/formants
    (vocal-tract-length perturbation). Zero-filled at the edge it leaves."""

    name: ClassVar[str] = "channel_shift"
    max_shift: float = 3.0

    def problems(self) -> list[str]:
        bad = [] if self.max_shift >= 0 else [f"max_shift = {self.max_shift!r}: must be >= 0"]
        return super().problems() + bad

    def apply(self, x, lengths, labels, ctx, generator):
        s = _uniform((-self.max_shift, self.max_shift), x.shape[0], x, generator)
        return warp_channels(x, torch.ones_like(s), s, generator), lengths


@dataclass(frozen=True)
class ChannelStretch(Transform):
    """Stretch the channel axis about its centre by a factor drawn log-uniformly from
    ``[1/max_factor, max_factor]`` (a wider or narrower spectrum); counts pushed past the
    edges are dropped."""

    name: ClassVar[str] = "channel_stretch"
    max_factor: float = 1.1

    def problems(self) -> list[str]:
        bad = [] if self.max_factor >= 1.0 else [f"max_factor = {self.max_factor!r}: must be >= 1"]
        return super().problems() + bad

    def apply(self, x, lengths, labels, ctx, generator):
        f = _uniform((1 / self.max_factor, self.max_factor), x.shape[0], x, generator, log=True)
        return warp_channels(x, f, torch.zeros_like(f), generator), lengths


@dataclass(frozen=True)
class EventDrop(Transform):
    """Drop each spike independently with a probability drawn from ``rate`` = [lo, hi] per
    sample (binomial thinning: expected counts scale by 1 - rate)."""

    name: ClassVar[str] = "event_drop"
    rate: Range = (0.0, 0.3)

    def problems(self) -> list[str]:
        return super().problems() + _range_problems("rate", self.rate, 0.0, 1.0,
                                                    "a rate or [lo, hi] with 0 <= lo <= hi <= 1")

    def apply(self, x, lengths, labels, ctx, generator):
        rate = _uniform(self.rate, x.shape[0], x, generator)
        return thin(x, (1.0 - rate)[:, None, None], generator), lengths


@dataclass(frozen=True)
class ClassBlend(Transform):
    """DelRec's same-class blend (REFERENCE §9): a random training sample of the same class
    (drawn from the whole training set, the sample itself included with chance 1/class size),
    centres of mass aligned in time, each thinned by ``Binomial(n, keep)``, summed."""

    name: ClassVar[str] = "class_blend"
    needs: ClassVar[tuple[str, ...]] = ("pool",)
    keep: float = 0.5

    def problems(self) -> list[str]:
        bad = [] if 0.0 < self.keep <= 1.0 else [f"keep = {self.keep!r}: must be in (0, 1]"]
        return super().problems() + bad

    def apply(self, x, lengths, labels, ctx, generator):
        pool = ctx.pool
        assert pool is not None, "class_blend needs the training set (Context.pool)"
        partner = same_class_partners(pool.labels, labels, generator)
        p_len = pool.lengths[partner]
        t_p = int(p_len.max()) if p_len.numel() else 0
        other = pool.frames[partner, :t_p].to(x.dtype)
        keep = torch.full((x.shape[0],), self.keep, device=x.device, dtype=x.dtype)
        return blend(x, lengths, other, p_len, keep, generator)


def same_class_partners(pool_labels: torch.Tensor, labels: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:
    """(B,) indices into the pool, each uniform among the pool samples with the same label."""
    order = torch.argsort(pool_labels, stable=True)
    n_classes = int(max(int(pool_labels.max()), int(labels.max()))) + 1
    counts = torch.bincount(pool_labels, minlength=n_classes)
    starts = torch.cumsum(counts, 0) - counts
    if bool((counts[labels] == 0).any()):
        raise ValueError("class_blend: a batch label has no sample in the training set")
    u = torch.rand(labels.shape[0], generator=generator, device=labels.device, dtype=torch.float64)
    pick = torch.minimum((u * counts[labels]).to(torch.int64), counts[labels] - 1)
    return order[starts[labels] + pick]


@dataclass(frozen=True)
class BandLimit(Transform):
    """Silence the features outside a pass band, as a telephone line does (300-3400 Hz): the
    upper cut-off is drawn log-uniformly from ``high_hz`` = [lo, hi] per sample, the lower one
    from ``low_hz`` (0 = none)."""

    name: ClassVar[str] = "band_limit"
    needs: ClassVar[tuple[str, ...]] = ("feature_hz",)
    high_hz: Range = (3400.0, 3400.0)
    low_hz: Range = (0.0, 0.0)

    def problems(self) -> list[str]:
        out = super().problems()
        out += _range_problems("high_hz", self.high_hz, 1e-9, math.inf,
                               "a frequency or [lo, hi] with 0 < lo <= hi (Hz)")
        out += _range_problems("low_hz", self.low_hz, 0.0, math.inf,
                               "a frequency or [lo, hi] with 0 <= lo <= hi (Hz)")
        if not out and self.low_hz[1] >= self.high_hz[0]:
            out.append(f"low_hz = {list(self.low_hz)!r}: must stay below high_hz "
                       f"= {list(self.high_hz)!r}")
        return out

    def apply(self, x, lengths, labels, ctx, generator):
        assert ctx.feature_hz is not None, "band_limit needs Context.feature_hz"
        n = x.shape[0]
        high = _uniform(self.high_hz, n, x, generator, log=True)
        lo_lo, lo_hi = self.low_hz
        low = (_uniform(self.low_hz, n, x, generator, log=True) if lo_lo > 0
               else _uniform((lo_lo, lo_hi), n, x, generator))
        return x * band_mask(ctx.feature_hz.to(x), high, low), lengths


TRANSFORMS: dict[str, type[Transform]] = {
    cls.name: cls for cls in (TimeShift, TimeStretch, ChannelShift, ChannelStretch, EventDrop,
                              ClassBlend, BandLimit)
}


# --------------------------------------------------------------------------------------------
# config specs


def _field_value(cls: type[Transform], field: dataclasses.Field, value: Any) -> tuple[Any, str]:
    """Coerce a YAML value to the field's type; (value, problem or '')."""
    default = field.default
    number = (int, float)
    if isinstance(value, bool):
        return None, "must be a number, not a boolean"
    if isinstance(default, tuple):  # a Range: one number (fixed) or [lo, hi]
        if isinstance(value, number):
            return (float(value), float(value)), ""
        if (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(v, number) and not isinstance(v, bool) for v in value)):
            return (float(value[0]), float(value[1])), ""
        return None, "must be a number or a [lo, hi] pair of numbers"
    if isinstance(default, int):
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value), ""
        return None, "must be an integer"
    if isinstance(value, number):
        return float(value), ""
    return None, "must be a number"


def parse_spec(spec: Any, where: str = "data.augment") -> tuple[Transform | None, list[str]]:
    """One ``{name: ..., params}`` mapping → (transform, problems)."""
    if not isinstance(spec, Mapping):
        return None, [f"{where} = {spec!r}: must be a mapping like {{name: time_shift, ...}}"]
    name = spec.get("name")
    if name not in TRANSFORMS:
        known = ", ".join(TRANSFORMS)
        return None, [f"{where}.name = {name!r}: unknown augmentation; use one of {known}"]
    cls = TRANSFORMS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs, problems = {}, []
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in fields:
            problems.append(f"{where} ({name}): unknown parameter '{key}'; allowed are "
                            f"{', '.join(fields)}")
            continue
        parsed, why = _field_value(cls, fields[key], value)
        if why:
            problems.append(f"{where} ({name}).{key} = {value!r}: {why}")
        else:
            kwargs[key] = parsed
    if problems:
        return None, problems
    transform = cls(**kwargs)
    return transform, [f"{where} ({name}).{p}" for p in transform.problems()]


def parse_specs(specs: Sequence[Any]) -> tuple[tuple[Transform, ...], list[str]]:
    """The whole ``data.augment`` list → (transforms, every problem)."""
    out, problems = [], []
    for i, spec in enumerate(specs):
        transform, found = parse_spec(spec, f"data.augment[{i}]")
        problems += found
        if transform is not None and not found:
            out.append(transform)
    return tuple(out), problems


def augment_problems(specs: Sequence[Any], dataset: str) -> list[str]:
    """Problems of a ``data.augment`` list for ``dataset``, for the config's one error message."""
    _, problems = parse_specs(specs)
    if specs and dataset == "gsc":
        problems.append("data.augment: the transforms work on spike counts; gsc's log-mel "
                        "features are not counts")
    return problems


# --------------------------------------------------------------------------------------------
# the training-side entry point


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch's augmentation: a function of (seed, epoch) only."""
    return int(np.random.SeedSequence([seed, epoch, _SALT]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


@dataclass(frozen=True)
class Augmenter:
    """A ``data.augment`` pipeline bound to its training set and seed."""

    transforms: tuple[Transform, ...]
    seed: int
    context: Context

    @classmethod
    def build(cls, specs: Sequence[Any], train_set: TrainingPool, framing: Mapping[str, Any],
              *, seed: int) -> Augmenter | None:
        """None when ``specs`` is empty (then training batches are the plain ones)."""
        transforms, problems = parse_specs(specs)
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        if not transforms:
            return None
        if train_set.frames.is_floating_point() and not bool(
                (train_set.frames == torch.round(train_set.frames)).all()):
            raise ConfigError("data.augment: the training frames are not spike counts")
        needs = {n for t in transforms for n in t.needs}
        hz = None
        if "feature_hz" in needs:
            if "channel_group" not in framing or "n_channels" not in framing:
                raise ConfigError("data.augment: band_limit needs the cochlea channel layout "
                                  "(an SHD-layout data set)")
            hz = torch.as_tensor(cochlea_feature_hz(int(framing["n_channels"]),
                                                    int(framing["channel_group"])),
                                 dtype=torch.float32, device=train_set.frames.device)
        ctx = Context(pool=train_set if "pool" in needs else None, feature_hz=hz)
        return cls(transforms=transforms, seed=int(seed), context=ctx)

    def generator(self, epoch: int, device: torch.device | str) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(epoch_seed(self.seed, epoch))

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in self.transforms:
            x, lengths = transform(x, lengths, labels, self.context, generator)
        return x, lengths

    def batches(self, batches: Iterable, epoch: int) -> Iterator:
        """Augment an epoch of training batches (same type out as in, e.g. ``Batch``)."""
        generator = None
        for batch in batches:
            x, lengths, labels = batch
            if generator is None:
                generator = self.generator(epoch, x.device)
            new_x, new_lengths = self(x, lengths, labels, generator)
            yield type(batch)(new_x, new_lengths, labels) if hasattr(batch, "_fields") \
                else (new_x, new_lengths, labels)
