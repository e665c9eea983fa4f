"""Framed data sets, the validation split, and batches that carry their lengths.

This is what the trainer consumes: :func:`load_dataset` turns a :class:`DataConfig` into
:class:`DataSplits` of :class:`FramedSet` s held as whole tensors (move them to the GPU once with
``.to(device)``; batching then only indexes on the device).

Selection protocols (REFERENCE §3):

- ``"validation"`` (default, honest): ``val`` is held out from the training data. SHD-layout
  sets hold out ``val_fraction`` of the training *speakers* (speaker-disjoint; random samples if
  the file has no ``extra/speaker``), seeded (``data.val_split``: at random, or spread over
  accents or difficulty terciles, :mod:`spikedelay.data.speakers`); SSC uses ``ssc_valid``;
  GSC its ``validation_list.txt``.
- ``"test-selected"`` (the reference's): train on the full training file, and ``val`` *is* the
  test set, so the best epoch is chosen on test data. The trainer labels such results.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from spikedelay.config import DataConfig
from spikedelay.data.cache import FrameCache, file_digest
from spikedelay.data.framing import Framing
from spikedelay.data.hdf5 import N_CHANNELS, find_split_files, read_spike_file
from spikedelay.data.speakers import (
    difficulty_strata,
    speaker_difficulty,
    speaker_strata,
    stratified_val_speakers,
)
from spikedelay.errors import DataError

PROTOCOLS = ("validation", "test-selected")


class Batch(NamedTuple):
    """One batch. Shapes: x (B, T, C) float32, trimmed to the longest sample; lengths (B,)
    int64 valid frames per sample (frames past a sample's length are zero); labels (B,) int64."""

    x: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor


@dataclass
class FramedSet:
    """Padded frames of a whole split.

    Shapes: frames (N, T_max, C) in a compact dtype (uint8/int16 spike counts, float16 or
    float32 features), zero past each sample's length; lengths, labels (N,) int64; speakers (N,)
    int64 or None.
    """

    frames: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    speakers: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        return self.frames.device

    def subset(self, index: torch.Tensor) -> FramedSet:
        """The samples at ``index`` (ints or a bool mask), frames trimmed to their longest."""
        index = torch.as_tensor(index, device=self.frames.device)
        lengths = self.lengths[index]
        t_max = int(lengths.max()) if lengths.numel() else 0
        return FramedSet(
            frames=self.frames[index, :t_max],
            lengths=lengths,
            labels=self.labels[index],
            speakers=None if self.speakers is None else self.speakers[index],
        )

    def to(self, device: torch.device | str) -> FramedSet:
        """A copy on ``device`` (one transfer; batching then never goes through the host)."""
        return FramedSet(
            frames=self.frames.to(device),
            lengths=self.lengths.to(device),
            labels=self.labels.to(device),
            speakers=None if self.speakers is None else self.speakers.to(device),
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield :class:`Batch` es on the set's device.

        The order is drawn on the CPU with ``generator`` (one permutation per call, so a CPU
        generator gives the same order on every device) and copied to the device once; each
        batch's trim length is read from a CPU copy of ``lengths``, so there is no per-batch
        host sync.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        lengths_cpu = self.lengths.cpu()  # one sync per epoch, not per batch
        order_dev = order.to(self.frames.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx_cpu = order[start : start + batch_size]
            idx = order_dev[start : start + batch_size]
            t_max = int(lengths_cpu[idx_cpu].max())
            yield Batch(
                x=self.frames[idx, :t_max].float(),
                lengths=self.lengths[idx],
                labels=self.labels[idx],
            )


@dataclass
class DataSplits:
    """Train/val/test sets plus what a checkpoint needs to reproduce the front end."""

    train: FramedSet
    val: FramedSet
    test: FramedSet
    class_names: list[str]
    in_features: int
    framing: dict[str, Any]  # Framing.to_dict() (or the GSC front end) + "dataset"
    protocol: str  # "validation" or "test-selected"


# --------------------------------------------------------------------------------------------
# packing


def compact(frames: np.ndarray) -> np.ndarray:
    """Smallest exact dtype: uint8/int16 for integer counts, else float32 unchanged."""
    if frames.size == 0 or frames.dtype.kind == "f" and not np.all(frames == np.round(frames)):
        return frames.astype(np.float32)
    lo, hi = frames.min(), frames.max()
    if lo >= 0 and hi <= 255:
        return frames.astype(np.uint8)
    if lo >= -32768 and hi <= 32767:
        return frames.astype(np.int16)
    return frames.astype(np.float32)


def pad_packed(packed: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(sum(lengths), C) rows, sample after sample → (N, max(lengths), C), zero-padded."""
    n = len(lengths)
    t_max = int(lengths.max()) if n else 0
    out = np.zeros((n, t_max, packed.shape[1]), dtype=packed.dtype)
    sample = np.repeat(np.arange(n), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if n else np.zeros(0, np.int64)
    step = np.arange(packed.shape[0]) - np.repeat(starts, lengths)
    out[sample, step] = packed
    return out


def framed_set_from_arrays(arrays: dict[str, np.ndarray]) -> FramedSet:
    lengths = arrays["lengths"].astype(np.int64)
    speakers = arrays.get("speakers")
    return FramedSet(
        frames=torch.from_numpy(pad_packed(arrays["frames"], lengths)),
        lengths=torch.from_numpy(lengths),
        labels=torch.from_numpy(arrays["labels"].astype(np.int64)),
        speakers=None if speakers is None else torch.from_numpy(speakers.astype(np.int64)),
    )


def _progress(iterable, *, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="sample", leave=False)


def frame_spike_file(
    path: Path, framing: Framing, *, cache: bool = True, progress: bool = False
) -> tuple[dict[str, np.ndarray], bool]:
    """Read, validate and frame one SHD-layout file, through the cache.

    Returns the packed arrays (``frames`` (sum T, C), ``lengths``, ``labels``, optional
    ``speakers``, ``class_names``) and whether the cache served them.
    """

    def build() -> dict[str, np.ndarray]:
        rec = read_spike_file(path, n_channels=framing.n_channels)
        frames = [
            framing(t, u)
            for t, u in _progress(
                zip(rec.times, rec.units, strict=True), total=len(rec),
                desc=f"framing {path.name}", enabled=progress,
            )
        ]
        arrays = {
            "frames": compact(np.concatenate(frames)),
            "lengths": np.array([len(f) for f in frames], dtype=np.int64),
            "labels": rec.labels,
            "class_names": np.array(rec.class_names, dtype=str),
        }
        if rec.speakers is not None:
            arrays["speakers"] = rec.speakers
        return arrays

    if not cache:
        return build(), False
    return FrameCache().load_or_build(
        file_digest(path), {"kind": "spikes", **framing.to_dict()}, build,
        info={"source": str(path)},
    )


# --------------------------------------------------------------------------------------------
# splitting


def split_train_val(
    speakers: np.ndarray | None, n: int, val_fraction: float, seed: int,
    strata: dict[int, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): whole speakers held out when speakers are known, else samples.

    ``val_fraction * n_speakers`` speakers, rounded half up (at least 1, at most all but 1),
    go to val, chosen by a permutation seeded with ``seed`` or, given ``strata`` (speaker ->
    accent), spread over the strata (:func:`spikedelay.data.speakers.stratified_val_speakers`).
    """
    rng = np.random.default_rng(seed)
    if speakers is not None:
        ids = np.unique(speakers)
        if len(ids) >= 2:
            n_val = min(max(1, int(val_fraction * len(ids) + 0.5)), len(ids) - 1)
            if strata is not None:
                val_ids = stratified_val_speakers(ids, strata, n_val, seed=seed)
            else:
                val_ids = rng.permutation(ids)[:n_val]
            is_val = np.isin(speakers, val_ids)
            return np.flatnonzero(~is_val), np.flatnonzero(is_val)
        warnings.warn(
            "only one speaker in the training file: validation split is by sample, not speaker",
            stacklevel=2,
        )
    if n < 2:
        raise DataError(f"cannot split {n} training sample(s) into train and validation")
    n_val = min(max(1, int(val_fraction * n + 0.5)), n - 1)
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _val_strata(val_split: str, path: Path, train: FramedSet) -> dict[int, str] | None:
    """Speaker -> stratum for ``data.val_split`` (None: plain random speakers)."""
    if val_split == "stratified":
        return speaker_strata(path)
    if val_split == "difficulty" and train.speakers is not None:
        return difficulty_strata(speaker_difficulty(train.frames, train.lengths, train.labels,
                                                    train.speakers))
    return None


def _index(fs: FramedSet, idx: np.ndarray) -> FramedSet:
    return fs.subset(torch.from_numpy(idx.astype(np.int64)))


# --------------------------------------------------------------------------------------------
# entry points


def default_synthdigits_root() -> Path:
    """The SynthDigits release shipped in the package (``spikedelay/data/synthdigits``)."""
    root = Path(__file__).resolve().parent / "synthdigits"
    names = ("shd_train.h5.gz", "shd_train.h5")
    if not any((root / n).is_file() for n in names):
        raise DataError(
            f"{root}: the SynthDigits release is not installed. Build one with "
            "`spikedelay data synth --out DIR` and pass `--data DIR`."
        )
    return root


def _framing_for(cfg: DataConfig) -> Framing:
    return Framing(
        bin_ms=float(cfg.bin_ms),
        n_channels=N_CHANNELS,
        channel_group=cfg.channel_group,
        max_frames=cfg.max_frames,
    )


def load_dataset(
    cfg: DataConfig, *, seed: int, protocol: str, progress: bool = True
) -> DataSplits:
    """Load, frame (through the cache when ``cfg.cache``) and split ``cfg.dataset``.

    ``cfg.root`` None means the shipped SynthDigits release for ``synthdigits`` and is an
    error for shd/ssc/gsc. ``seed`` drives the speaker split only.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol '{protocol}': use one of {', '.join(PROTOCOLS)}")
    if cfg.root is None:
        if cfg.dataset != "synthdigits":
            raise DataError(
                f"data set '{cfg.dataset}' has no default location: pass --data DIR "
                f"(the folder holding its files)"
            )
        root = default_synthdigits_root()
    else:
        root = Path(cfg.root).expanduser()

    if cfg.dataset == "gsc":
        from spikedelay.data.gsc import load_gsc_splits

        return load_gsc_splits(root, cfg, seed=seed, protocol=protocol, progress=progress)

    framing = _framing_for(cfg)
    files = find_split_files(root, cfg.dataset)
    loaded = {
        split: frame_spike_file(path, framing, cache=cfg.cache, progress=progress)[0]
        for split, path in files.items()
    }
    sets = {split: framed_set_from_arrays(a) for split, a in loaded.items()}
    class_names = [str(s) for s in loaded["train"]["class_names"]]
    for split, a in loaded.items():
        names = [str(s) for s in a["class_names"]]
        if names and class_names and names != class_names:
            raise DataError(f"{files[split]}: class names differ from {files['train']}")
    if not class_names:
        n_classes = max(int(fs.labels.max()) for fs in sets.values()) + 1
        class_names = [str(i) for i in range(n_classes)]

    train, test = sets["train"], sets["test"]
    if protocol == "test-selected":
        val = test
    elif "valid" in sets:
        val = sets["valid"]
    else:
        speakers = None if train.speakers is None else train.speakers.numpy()
        strata = _val_strata(cfg.val_split, files["train"], train)
        tr_idx, va_idx = split_train_val(speakers, len(train), cfg.val_fraction, seed, strata)
        train, val = _index(train, tr_idx), _index(train, va_idx)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        class_names=class_names,
        in_features=framing.out_features,
        framing={**framing.to_dict(), "dataset": cfg.dataset},
        protocol=protocol,
    )
