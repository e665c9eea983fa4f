"""Framed data sets held as whole tensors, and batches that carry their lengths.

Why apart from the loaders: every reader (SHD-layout files, GSC folders) produces these, so
they sit below all of them and no reader imports another.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch


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
