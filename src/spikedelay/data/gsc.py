"""Google Speech Commands v0.02 (35 words): WAV folders and the log-mel front end.

Folder layout: one subfolder of 16 kHz mono WAVs per word, plus ``validation_list.txt`` and
``testing_list.txt`` (paths relative to the root); training is every other WAV, and
``_background_noise_`` is skipped.

Front end (REFERENCE §2, torchaudio conventions, written with numpy/scipy because torchaudio
does not load next to our CPU torch): pad/trim to 1 s → resample 16 → 8 kHz
(``scipy.signal.resample_poly``) → power spectrogram (n_fft 256, hop 80, periodic Hann,
centred with reflect padding) → 140 HTK-mel triangles (norm None) from 50 Hz to **4 kHz** →
``10 log10(max(x, 1e-10))`` → (101, 140) float32, one frame per 10 ms.

Why f_max 4 kHz: the reference asks for 14 kHz, but after resampling to 8 kHz the spectrum
stops at the 4 kHz Nyquist frequency, so every band above it is empty (53 of 140). Note that
at 31.25 Hz per FFT bin, the narrowest low-frequency triangles (about 9 Hz apart near 50 Hz)
can fall between bins and stay all-zero (7 of the 140), as in torchaudio with the same
settings; those features are a constant -100 dB.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spikedelay.data.sets import DataSplits, framed_set_from_arrays
from spikedelay.errors import DataError
from spikedelay.progress import progress_bar

if TYPE_CHECKING:
    from spikedelay.config import DataConfig

GSC_CLASSES: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward",
    "four", "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one",
    "right", "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow",
    "yes", "zero",
)  # fmt: skip
BACKGROUND = "_background_noise_"


@dataclass(frozen=True)
class FrontEnd:
    """The GSC front end's parameters (saved with checkpoints, part of the cache key)."""

    sample_rate: int = 16000  # of the WAV files
    target_rate: int = 8000  # after resampling
    n_fft: int = 256
    hop: int = 80  # 10 ms at 8 kHz
    n_mels: int = 140
    f_min: float = 50.0
    f_max: float = 4000.0  # Nyquist at 8 kHz, see the module docstring
    amin: float = 1e-10  # floor before the log: -100 dB
    max_frames: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# the math


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_edges(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """``n_mels + 2`` frequencies (Hz), equally spaced in mel: filter ``m`` rises from edge
    ``m``, peaks at edge ``m + 1`` and falls to zero at edge ``m + 2``."""
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))


def mel_filterbank(
    freqs: np.ndarray, *, n_mels: int, f_min: float, f_max: float
) -> np.ndarray:
    """Triangular mel filters evaluated at ``freqs`` (Hz); height 1 at the centre, norm None.

    Shapes: freqs (F,) → (F, n_mels). Same construction as torchaudio's ``melscale_fbanks``
    with ``mel_scale="htk"``.
    """
    f_pts = mel_edges(n_mels, f_min, f_max)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - np.asarray(freqs, dtype=np.float64)[:, None]
    rising = -slopes[:, :-2] / f_diff[:-1]
    falling = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(rising, falling))


def power_spectrogram(x: np.ndarray, *, n_fft: int, hop: int) -> np.ndarray:
    """|STFT|², periodic Hann window, centred (reflect padding ``n_fft // 2``).

    Shapes: x (S,) → (1 + S // hop, n_fft // 2 + 1).
    """
    pad = n_fft // 2
    padded = np.pad(np.asarray(x, dtype=np.float64), (pad, pad), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2


def log_mel(audio: np.ndarray, fe: FrontEnd = FrontEnd()) -> np.ndarray:  # noqa: B008 (frozen)
    """One clip at ``fe.sample_rate`` → (101, n_mels) float32 log-mel features in dB."""
    from scipy.signal import resample_poly

    n = fe.sample_rate  # 1 s
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)[:n]
    audio = np.pad(audio, (0, n - audio.size))
    g = np.gcd(fe.sample_rate, fe.target_rate)
    audio = resample_poly(audio, fe.target_rate // g, fe.sample_rate // g)
    spec = power_spectrogram(audio, n_fft=fe.n_fft, hop=fe.hop)
    freqs = np.linspace(0.0, fe.target_rate / 2, fe.n_fft // 2 + 1)
    mel = spec @ mel_filterbank(freqs, n_mels=fe.n_mels, f_min=fe.f_min, f_max=fe.f_max)
    out = 10.0 * np.log10(np.maximum(mel, fe.amin))
    if fe.max_frames is not None:
        out = out[: fe.max_frames]
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# files


def read_wav(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float samples; DataError naming the file if unreadable, multi-channel or at the
    wrong sample rate."""
    import soundfile

    try:
        audio, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as err:  # LibsndfileError is a RuntimeError
        raise DataError(f"{path}: unreadable audio file ({err})") from None
    if sr != sample_rate:
        raise DataError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
    if audio.shape[1] != 1:
        raise DataError(f"{path}: {audio.shape[1]} channels, expected mono")
    return audio[:, 0]


def _read_list(root: Path, name: str) -> list[str]:
    path = root / name
    if not path.is_file():
        raise DataError(f"{path}: missing (a Speech Commands v0.02 folder has {name})")
    entries = [ln.strip().replace("\\", "/") for ln in path.read_text().splitlines()]
    entries = [e for e in entries if e]
    for e in entries:
        if not (root / e).is_file():
            raise DataError(f"{path}: lists {e}, which does not exist under {root}")
    return entries


def gsc_file_lists(root: str | os.PathLike) -> dict[str, list[str]]:
    """Relative WAV paths per split: ``{"train": ..., "valid": ..., "test": ...}`` (sorted)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    valid = _read_list(root, "validation_list.txt")
    test = _read_list(root, "testing_list.txt")
    held_out = set(valid) | set(test)
    train: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name == BACKGROUND or folder.name.startswith("."):
            continue
        wavs = sorted(folder.glob("*.wav"))
        if not wavs:
            continue
        if folder.name not in GSC_CLASSES:
            raise DataError(
                f"{folder}: '{folder.name}' is not one of the 35 Speech Commands v0.02 words"
            )
        train += [f"{folder.name}/{w.name}" for w in wavs if f"{folder.name}/{w.name}" not in
                  held_out]
    for split, items in (("train", train), ("validation_list.txt", valid),
                         ("testing_list.txt", test)):
        for rel in items:
            if rel.split("/")[0] not in GSC_CLASSES:
                raise DataError(f"{root}: {split} entry {rel} is not in a known word folder")
    if not train:
        raise DataError(f"{root}: no training WAVs found in word subfolders")
    return {"train": train, "valid": sorted(valid), "test": sorted(test)}


def _speaker_of(rel: str) -> str:
    """GSC names files ``SPEAKERHASH_nohash_N.wav``."""
    return Path(rel).name.split("_nohash_")[0]


def _listing_digest(root: Path, files: list[str]) -> str:
    """Cheap content key for a folder of ~100k files: names, sizes and mtimes.

    Hashing 2.3 GB of audio on every start would cost more than framing it.
    """
    h = hashlib.sha256()
    for rel in files:
        st = (root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def frame_gsc_split(
    root: Path,
    files: list[str],
    speaker_ids: dict[str, int],
    fe: FrontEnd,
    *,
    cache: bool,
    progress: bool,
    desc: str,
    cache_writes: bool = True,
) -> dict[str, np.ndarray]:
    """Front end over ``files``; packed arrays as for spike files (frames stored as float16)."""
    from spikedelay.data.cache import FrameCache

    def build() -> dict[str, np.ndarray]:
        feats = [
            log_mel(read_wav(root / rel, fe.sample_rate), fe)
            for rel in progress_bar(files, total=len(files), desc=desc, unit="sample",
                                    enabled=progress, leave=False)
        ]
        return {
            # float16 halves 85k x 101 x 140 features to 2.4 GB; dB values keep ~3 digits.
            "frames": np.concatenate(feats).astype(np.float16),
            "lengths": np.array([len(f) for f in feats], dtype=np.int64),
            "labels": np.array([GSC_CLASSES.index(r.split("/")[0]) for r in files], np.int64),
            "speakers": np.array([speaker_ids[_speaker_of(r)] for r in files], np.int64),
            "class_names": np.array(GSC_CLASSES, dtype=str),
        }

    if not cache:
        return build()
    digest = _listing_digest(root, files)
    speakers = hashlib.sha256(json.dumps(sorted(speaker_ids)).encode()).hexdigest()
    params = {"kind": "gsc", **fe.to_dict(), "speaker_ids": speakers}
    return FrameCache(writable=cache_writes).load_or_build(
        digest, params, build, info={"source": str(root)})[0]


def load_gsc_splits(
    root: Path, cfg: DataConfig, *, seed: int, protocol: str, progress: bool,
    cache_writes: bool = True,
) -> DataSplits:
    """GSC splits from its own lists (``seed`` is unused: the split is fixed by the lists)."""
    del seed
    if abs(cfg.bin_ms - 10.0) > 1e-9:
        raise DataError(
            f"data.bin_ms = {cfg.bin_ms}: the GSC front end has a fixed 10 ms hop (80 @ 8 kHz)"
        )
    fe = FrontEnd(max_frames=cfg.max_frames)
    lists = gsc_file_lists(root)
    every = sorted({_speaker_of(r) for files in lists.values() for r in files})
    speaker_ids = {s: i for i, s in enumerate(every)}
    sets = {
        split: framed_set_from_arrays(
            frame_gsc_split(root, files, speaker_ids, fe, cache=cfg.cache, progress=progress,
                            desc=f"GSC {split}", cache_writes=cache_writes)
        )
        for split, files in lists.items()
        if files
    }
    missing = [s for s in ("valid", "test") if s not in sets]
    if missing:
        raise DataError(f"{root}: the {' and '.join(missing)} list(s) are empty")
    val = sets["test"] if protocol == "test-selected" else sets["valid"]
    return DataSplits(
        train=sets["train"],
        val=val,
        test=sets["test"],
        class_names=list(GSC_CLASSES),
        in_features=fe.n_mels,
        framing={**fe.to_dict(), "bin_ms": 10.0, "dataset": "gsc"},
        protocol=protocol,
    )
