"""Who the speakers of a SynthDigits file are, and validation splits stratified by accent or
by how hard each speaker is.

Why: a validation set of a handful of whole speakers is a noisy stand-in for a test set of
other speakers (results/synthdigits/split_study/report.md): per-speaker accuracy ranges from
≈ 25 % to ≈ 95 %. Spreading the held-out speakers over strata removes the between-strata part
of that noise: accents (the generator cycles through them, docs/data.md) explain little of it;
a training-only difficulty score (a linear classifier, leave-one-speaker-out) more.

Where the metadata is: files written by other SynthDigits generators carry ``extra/voice``
per sample (``"en-gb-x-rp+klatt3"``, ``"de+klatt3"`` for the German words of the same
speaker); our builder writes the speaker table (accent, variant, pitch, base speed) into the
``summary.json`` beside the files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from spikedelay.data.hdf5 import _open_bytes
from spikedelay.errors import DataError


def _decode(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def speaker_table(path: str | Path) -> dict[int, dict]:
    """``{speaker id: {"accent", "variant", (pitch, wpm)}}`` for the speakers of one file.

    Read from the file's ``extra/voice`` (English voice of each speaker) or, failing that,
    from ``summary.json``'s ``speaker_table`` in the same folder. Raises DataError naming both
    places when neither exists.
    """
    path = Path(path)
    try:
        with h5py.File(_open_bytes(path), "r") as f:
            speakers = np.asarray(f["extra/speaker"][()]).reshape(-1) \
                if "extra/speaker" in f else None
            voices = [_decode(v) for v in f["extra/voice"][()]] if "extra/voice" in f else None
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    if speakers is None:
        raise DataError(f"{path}: no extra/speaker, so there are no speakers to describe")
    present = {int(s) for s in speakers}
    if voices is not None and len(voices) == len(speakers):
        out: dict[int, dict] = {}
        for s, voice in zip(speakers, voices, strict=True):
            accent, _, variant = voice.partition("+")
            if int(s) not in out or not accent.startswith("de"):  # the English voice wins
                out[int(s)] = {"accent": accent, "variant": variant}
        return out
    summary = path.parent / "summary.json"
    if summary.is_file():
        try:
            table = json.loads(summary.read_text())["speaker_table"]
            out = {int(r["id"]): {k: r[k] for k in ("accent", "variant", "pitch", "wpm") if k in r}
                   for r in table if int(r["id"]) in present}
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{summary}: no usable speaker_table ({err!r})") from None
        if present <= set(out):
            return out
    raise DataError(
        f"{path}: no speaker metadata (neither extra/voice in the file nor a summary.json with "
        f"a speaker_table beside it), so data.val_split = stratified cannot be used; "
        f"use data.val_split = speakers"
    )


def speaker_strata(path: str | Path) -> dict[int, str]:
    """The stratum of each speaker: its accent."""
    return {s: meta["accent"] for s, meta in speaker_table(path).items()}


def stratified_val_speakers(ids: Sequence[int] | np.ndarray, strata: Mapping[int, str],
                            n_val: int, *, seed: int) -> np.ndarray:
    """``n_val`` speakers spread over strata in proportion to their sizes.

    Systematic sampling of a stratified list: speakers are listed stratum by stratum (strata
    and speakers within them in a seeded random order) and every ``len(ids) / n_val``-th is
    taken from a random start, so each stratum gets the floor or ceiling of its share.
    """
    ids = np.asarray(ids)
    if not 1 <= n_val <= len(ids):
        raise ValueError(f"n_val = {n_val} must be in 1..{len(ids)}")
    missing = [int(s) for s in ids if int(s) not in strata]
    if missing:
        raise DataError(f"speakers {missing[:5]} have no stratum (accent) in the metadata")
    rng = np.random.default_rng(seed)
    names = sorted({strata[int(s)] for s in ids})
    rank = {name: i for i, name in enumerate(rng.permutation(names))}
    shuffled = rng.permutation(ids)
    listed = sorted(shuffled, key=lambda s: rank[strata[int(s)]])  # stable: keeps the shuffle
    step = len(ids) / n_val
    start = rng.uniform(0, step)
    picks = np.floor(start + step * np.arange(n_val)).astype(int)
    return np.sort(np.asarray(listed)[picks])


def histogram_features(frames: torch.Tensor, lengths: torch.Tensor, t_bins: int = 8,
                       groups: int = 35) -> np.ndarray:
    """(N, t_bins · groups) spike histograms: each sample cut into ``t_bins`` equal parts of
    its own length × ``groups`` neighbouring-feature groups, normalised to sum 1."""
    n, t, c = frames.shape
    x = frames.float()
    steps = torch.arange(t)[None, :]
    bins = torch.clamp(steps * t_bins // lengths.clamp_min(1)[:, None], max=t_bins - 1)
    hist = torch.zeros(n, t_bins, c).scatter_add_(1, bins[..., None].expand(n, t, c), x)
    g = groups if c % groups == 0 else c
    hist = hist.reshape(n, t_bins, g, c // g).sum(-1).reshape(n, -1).double().numpy()
    return hist / np.maximum(hist.sum(1, keepdims=True), 1.0)


def _ridge_predict(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, n_classes: int,
                   alpha: float = 1.0) -> np.ndarray:
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    a = np.c_[(xtr - mu) / sd, np.ones(len(xtr))]
    b = np.c_[(xte - mu) / sd, np.ones(len(xte))]
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ np.eye(n_classes)[ytr])
    return (b @ w).argmax(1)


def speaker_difficulty(frames: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                       speakers: torch.Tensor) -> dict[int, float]:
    """Each speaker's accuracy under a ridge classifier of spike histograms trained on all
    *other* training speakers (leave-one-speaker-out; training data only). Cheap (one linear
    solve per speaker) and, on SynthDigits, ranks speakers like a trained SNN does
    (Spearman 0.8-0.9 on test speakers, split_study/report.md)."""
    h = histogram_features(frames, lengths)
    y, spk = labels.numpy(), speakers.numpy()
    n_classes = int(y.max()) + 1
    out = {}
    for s in np.unique(spk):
        held = spk == s
        out[int(s)] = float(np.mean(_ridge_predict(h[~held], y[~held], h[held], n_classes)
                                    == y[held]))
    return out


def difficulty_strata(difficulty: Mapping[int, float], n_strata: int = 3) -> dict[int, str]:
    """Speakers binned into ``n_strata`` quantiles of their difficulty (ties broken by id)."""
    ids = sorted(difficulty, key=lambda s: (difficulty[s], s))
    return {int(s): f"q{i * n_strata // len(ids)}" for i, s in enumerate(ids)}
