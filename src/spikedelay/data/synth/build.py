"""Build a SynthDigits data set: espeak-ng words → 48 kHz → cochlea → SHD-layout HDF5 files.

Two passes over the utterances, both spread over ``workers`` processes:

1. speak every (speaker, word) with its augmentation (speed, lead-in silence);
2. pad each clip to a length from a short list (multiples of ``clip_quantum_s`` rounded up to a
   fast FFT size), add noise, and run the cochlea, grouped by length so that each process
   computes the costly basilar-membrane transfer once per length.

Every random draw comes from a seed derived from ``(seed, speaker, label)``, so the files depend
only on the arguments, never on the number of workers or on scheduling.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from spikedelay.data.hdf5 import write_spike_file
from spikedelay.data.synth import cochlea as _cochlea
from spikedelay.data.synth import speech
from spikedelay.errors import ConfigError
from spikedelay.progress import progress_counter

DEFAULT_SPEAKERS = 48
DEFAULT_TEST_SPEAKERS = 12
CLIP_QUANTUM_S = 0.1
_CHUNK = 24  # utterances per task: large enough to amortise, small enough to balance


def _job_rng(seed: int, speaker: int, label: int, stage: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, speaker, label, stage]))


def _speak(job: tuple) -> np.ndarray:
    seed, spk, label, word, language = job
    audio, _ = speech.utterance(word, language, spk, _job_rng(seed, spk.id, label, 0))
    return audio.astype(np.float32)


def _hear(task: tuple) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
    """A chunk of clips of one length → [(index, times float32, units uint16, cochlea s)]."""
    length, channels, items = task
    out = []
    for index, seed, spk_id, label, audio in items:
        rng = _job_rng(seed, spk_id, label, 1)
        clip = speech.pad_and_add_noise(audio.astype(np.float64), length, rng)
        t0 = time.perf_counter()
        times, units = _cochlea.cochlea(
            clip, speech.OUT_RATE, seed=int(rng.integers(2**62)), channels=channels
        )
        out.append(
            (index, times.astype(np.float32), units.astype(np.uint16), time.perf_counter() - t0)
        )
    return out


def _init_worker() -> None:
    # one numba thread per process: the processes already share the cores
    import numba

    numba.set_num_threads(1)


def _check_args(
    vocab: str, speakers: int, test_speakers: int, workers: int, time_dtype: str
) -> None:
    problems = []
    if vocab not in speech.VOCABS:
        problems.append(f"vocab {vocab!r} is not one of {sorted(speech.VOCABS)}")
    if speakers < 1:
        problems.append(f"speakers must be ≥ 1, got {speakers}")
    if test_speakers < 1:
        problems.append(f"test_speakers must be ≥ 1, got {test_speakers}")
    if workers < 1:
        problems.append(f"workers must be ≥ 1, got {workers}")
    if time_dtype not in ("float16", "float32", "float64"):
        problems.append(f"time_dtype must be float16, float32 or float64, got {time_dtype!r}")
    if problems:
        raise ConfigError("synth data set: " + "; ".join(problems))


def build_synthdigits(
    out: str | os.PathLike,
    *,
    vocab: str = "digits",
    speakers: int = DEFAULT_SPEAKERS,
    test_speakers: int = DEFAULT_TEST_SPEAKERS,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    compress: bool = False,
    clip_quantum_s: float = CLIP_QUANTUM_S,
    channels: int = _cochlea.N_CHANNELS,
    time_dtype: str = "float32",
) -> dict:
    """Build SynthDigits into ``out``: ``shd_train.h5`` and ``shd_test.h5`` (``.h5.gz`` with
    ``compress``), speaker-disjoint, in the SHD layout, plus ``summary.json``.

    ``vocab`` "digits": 20 classes, English zero … nine (labels 0-9) and German null … neun
    (10-19); "commands": the 35 GSC v2 keywords. Every speaker says every word once.
    Same arguments → identical files (``workers`` does not matter). Returns the summary dict.

    ``clip_quantum_s``: clips are padded to a multiple of it (then to a fast FFT size); fewer
    distinct lengths mean fewer basilar-membrane transfers to compute (≈ 8 s each at 700
    channels). ``channels`` < 700 only for quick tests (the SHD layout has 700 units).
    ``time_dtype``: "float32" (default, exact: times are multiples of 1/24000 s) or "float16"
    (as SHD itself; ≤ 0.5 ms rounding below 1 s, a third smaller once gzipped).
    """
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    _check_args(vocab, speakers, test_speakers, workers, time_dtype)
    speech.espeak_binary()  # fail before any work if espeak-ng is missing
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    words = speech.VOCABS[vocab]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0C1EA]))
    all_speakers = speech.make_speakers(speakers + test_speakers, rng)
    jobs = [
        (seed, spk, label, word, lang)
        for spk in all_speakers
        for label, (word, lang) in enumerate(words)
    ]
    t_start = time.perf_counter()
    ctx = mp.get_context("spawn")  # numba's thread pool is not fork-safe
    pool = ctx.Pool(workers, initializer=_init_worker) if workers > 1 else None
    try:
        audio = _run(pool, _speak, jobs, progress, "speak", chunks=False)
        quantum = max(int(round(clip_quantum_s * speech.OUT_RATE)), 2)
        by_length: dict[int, list] = defaultdict(list)
        for i, (job, a) in enumerate(zip(jobs, audio, strict=True)):
            length = _cochlea.fast_clip_length(a.size, quantum)
            by_length[length].append((i, seed, job[1].id, job[2], a))
        tasks = [
            (length, channels, items[k : k + _CHUNK])
            for length in sorted(by_length)
            for items in [by_length[length]]
            for k in range(0, len(items), _CHUNK)
        ]
        heard = _run(pool, _hear, tasks, progress, "cochlea", chunks=True, total=len(jobs))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    wall = time.perf_counter() - t_start

    times: list = [None] * len(jobs)
    units: list = [None] * len(jobs)
    cochlea_s = np.zeros(len(jobs))
    for index, t, u, secs in heard:
        times[index], units[index], cochlea_s[index] = t, u, secs
    lengths = np.zeros(len(jobs))
    for length, items in by_length.items():
        for item in items:
            lengths[item[0]] = length / speech.OUT_RATE

    keys = [w for w, _ in words]
    suffix = ".h5.gz" if compress else ".h5"
    attrs = {
        "generator": "spikedelay.data.synth.build_synthdigits",
        "vocab": vocab,
        "seed": seed,
        "speakers": speakers,
        "test_speakers": test_speakers,
        "cochlea": f"Heidelberg (lauscher) model, 48 kHz, {channels} channels",
    }
    split_of = {spk.id: ("train" if spk.id < speakers else "test") for spk in all_speakers}
    summary: dict = {
        "vocab": vocab,
        "classes": len(words),
        "channels": channels,
        "time_dtype": time_dtype,
        "seed": seed,
        "samples": {},
        "speakers": {"train": speakers, "test": test_speakers},
    }
    for split in ("train", "test"):
        idx = [i for i, job in enumerate(jobs) if split_of[job[1].id] == split]
        write_spike_file(
            out / f"shd_{split}{suffix}",
            [times[i] for i in idx],
            [units[i] for i in idx],
            [jobs[i][2] for i in idx],
            [jobs[i][1].id for i in idx],
            keys,
            time_dtype=np.dtype(time_dtype),
            attrs={**attrs, "split": split},
        )
        summary["samples"][split] = len(idx)
    counts = np.array([t.size for t in times])
    summary.update(
        {
            "spikes_per_sample": {
                "mean": float(counts.mean()),
                "min": int(counts.min()),
                "max": int(counts.max()),
            },
            "duration_s": {
                "mean": float(lengths.mean()),
                "min": float(lengths.min()),
                "max": float(lengths.max()),
            },
            "clip_lengths": len(by_length),
            "cochlea_seconds_per_utterance": float(cochlea_s.mean()),
            "wall_seconds": wall,
            "wall_seconds_per_utterance": wall / len(jobs),
            "workers": workers,
            "speaker_table": [
                {"id": s.id, "accent": s.accent, "variant": s.variant, "pitch": s.pitch,
                 "wpm": s.wpm, "split": split_of[s.id]}
                for s in all_speakers
            ],
        }
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def _run(pool, fn, items, progress: bool, desc: str, *, chunks: bool, total: int | None = None):
    """Map ``fn`` over ``items`` (in a pool if given) with a progress bar; keeps input order for
    plain maps, flattens chunk results."""
    bar = progress_counter(total=total or len(items), desc=desc, unit="word", enabled=progress)
    results = []
    it = pool.imap(fn, items, chunksize=1 if chunks else 8) if pool is not None else map(fn, items)
    for res in it:
        if chunks:
            results.extend(res)
            bar.update(len(res))
        else:
            results.append(res)
            bar.update(1)
    bar.close()
    return results
