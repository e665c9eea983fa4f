"""Who the speakers of a SynthDigits file are, and a validation split stratified by accent.

Why: a validation set of a handful of whole speakers is a noisy stand-in for a test set of
other speakers (results/synthdigits/split_study/report.md). Spreading the held-out speakers
over the accents the generator cycles through (docs/data.md) removes the between-accent part
of that noise.

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
