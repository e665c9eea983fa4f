"""Loading a data set: files → framed arrays (through the cache) → train/val/test splits.

This is what the trainer calls: :func:`load_dataset` turns a :class:`DataConfig` into
:class:`~spikedelay.data.sets.DataSplits` of :class:`~spikedelay.data.sets.FramedSet` s held as
whole tensors (move them to the GPU once with ``.to(device)``; batching then only indexes on
the device).

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
from pathlib import Path

import numpy as np
import torch

from spikedelay.config import DataConfig
from spikedelay.data.cache import FrameCache, file_digest
from spikedelay.data.framing import Framing
from spikedelay.data.hdf5 import N_CHANNELS, find_split_files, read_spike_file
from spikedelay.data.sets import DataSplits, FramedSet, compact, framed_set_from_arrays
from spikedelay.data.speakers import (
    difficulty_strata,
    speaker_difficulty,
    speaker_strata,
    stratified_val_speakers,
)
from spikedelay.errors import DataError
from spikedelay.progress import progress_bar

PROTOCOLS = ("validation", "test-selected")


def frame_spike_file(
    path: Path, framing: Framing, *, cache: bool = True, progress: bool = False,
    cache_writes: bool = True,
) -> tuple[dict[str, np.ndarray], bool]:
    """Read, validate and frame one SHD-layout file, through the cache (only read from it
    when ``cache_writes`` is false).

    Returns the packed arrays (``frames`` (sum T, C), ``lengths``, ``labels``, optional
    ``speakers``, ``class_names``) and whether the cache served them.
    """

    def build() -> dict[str, np.ndarray]:
        rec = read_spike_file(path, n_channels=framing.n_channels)
        frames = [
            framing(t, u)
            for t, u in progress_bar(
                zip(rec.times, rec.units, strict=True), total=len(rec),
                desc=f"framing {path.name}", unit="sample", enabled=progress, leave=False,
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
    return FrameCache(writable=cache_writes).load_or_build(
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
    cfg: DataConfig, *, seed: int, protocol: str, progress: bool = True,
    cache_writes: bool = True,
) -> DataSplits:
    """Load, frame (through the cache when ``cfg.cache``) and split ``cfg.dataset``.

    ``cache_writes=False`` uses cached frames but stores (or deletes) none: nothing is written.

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

        return load_gsc_splits(root, cfg, seed=seed, protocol=protocol, progress=progress,
                               cache_writes=cache_writes)

    framing = _framing_for(cfg)
    files = find_split_files(root, cfg.dataset)
    loaded = {
        split: frame_spike_file(path, framing, cache=cfg.cache, progress=progress,
                                cache_writes=cache_writes)[0]
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
