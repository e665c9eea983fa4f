"""Spoken words from espeak-ng: vocabularies, synthetic speakers and per-utterance augmentation.

A *speaker* is a fixed espeak-ng voice (accent + voice variant), pitch and base speed; the same
speaker says every word of the vocabulary (German words with the German voice and the same
variant, pitch and speed). Each utterance is then perturbed: speed (espeak's words per minute),
a random lead-in silence, and white noise at a random SNR. espeak-ng speaks at 22.05 kHz; we
resample to 48 kHz, the rate the cochlea is always fed.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import wave
from dataclasses import dataclass

import numpy as np

from spikedelay.errors import DependencyError, SpikeDelayError

ESPEAK_RATE = 22_050
OUT_RATE = 48_000  # 48000 / 22050 = 320 / 147

ENGLISH_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GERMAN_DIGITS = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
# the 35 keywords of Google Speech Commands v2, in GSC's alphabetical order
GSC_COMMANDS = (
    "backward bed bird cat dog down eight five follow forward four go happy house learn left "
    "marvin nine no off on one right seven sheila six stop three tree two up visual wow yes zero"
).split()

# label → (word, language); labels follow SHD for digits: 0-9 English, 10-19 German
VOCABS: dict[str, tuple[tuple[str, str], ...]] = {
    "digits": tuple((w, "en") for w in ENGLISH_DIGITS) + tuple((w, "de") for w in GERMAN_DIGITS),
    "commands": tuple((w, "en") for w in GSC_COMMANDS),
}

ENGLISH_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
GERMAN_VOICE = "de"
# espeak-ng's voice variants (voices/!v); "Mr serious" is left out (a space in its name)
VARIANTS = (
    "Alex Alicia Andrea Andy Annie AnxiousAndy Demonic Denis Diogo Gene Gene2 Henrique Hugo "
    "Jacky Lee Marco Mario Michael Mike Nguyen RicishayMax RicishayMax2 RicishayMax3 Storm Tweaky "
    "UniRobot adam anika anikaRobot announcer antonio aunty belinda benjamin boris caleb croak "
    "david ed edward edward2 f1 f2 f3 f4 f5 fast grandma grandpa gustave iven iven2 iven3 iven4 "
    "john kaukovalta klatt klatt2 klatt3 klatt4 klatt5 klatt6 linda m1 m2 m3 m4 m5 m6 m7 m8 "
    "marcelo max michel miguel norbert pablo paul pedro quincy rob robert robosoft robosoft2 "
    "robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8 sandro shelby steph steph2 "
    "steph3 travis victor whisper whisperf zac"
).split()


@dataclass(frozen=True)
class Augmentation:
    """Per-utterance perturbation ranges (uniform draws)."""

    speed_factor: tuple[float, float] = (0.85, 1.15)  # × the speaker's base wpm
    lead_in_s: tuple[float, float] = (0.02, 0.15)  # silence before the word
    tail_s: float = 0.05  # at least this much after it (then padded to the clip length)
    snr_db: tuple[float, float] = (10.0, 30.0)  # white noise relative to the word's power


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: the same voice says every word."""

    id: int
    accent: str  # espeak-ng English voice, e.g. "en-gb-scotland"
    variant: str  # espeak-ng voice variant, e.g. "klatt3"
    pitch: int  # espeak -p, 0-99
    wpm: int  # base speed, espeak -s

    def voice(self, language: str) -> str:
        base = self.accent if language == "en" else GERMAN_VOICE
        return f"{base}+{self.variant}"


def make_speakers(n: int, rng: np.random.Generator, *, first_id: int = 0) -> list[Speaker]:
    """Draw ``n`` speakers: accent and variant uniformly, pitch 20-80, base speed 130-210 wpm."""
    out = []
    for i in range(n):
        out.append(
            Speaker(
                id=first_id + i,
                accent=str(rng.choice(ENGLISH_ACCENTS)),
                variant=str(rng.choice(VARIANTS)),
                pitch=int(rng.integers(20, 81)),
                wpm=int(rng.integers(130, 211)),
            )
        )
    return out


def espeak_binary() -> str:
    """Path of ``espeak-ng``, or a :class:`DependencyError` saying how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise DependencyError(
            "espeak-ng not found on PATH: SynthDigits needs it to speak the words. "
            "Install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu) "
            "or `brew install espeak-ng` (macOS)."
        )
    return path


def _parse_wav(data: bytes, what: str) -> np.ndarray:
    # espeak-ng --stdout writes a streaming header (chunk sizes 0x7fffffff): take what follows
    # the "data" tag rather than trusting the sizes.
    pos = data.find(b"data", 12)
    if not data.startswith(b"RIFF") or pos < 0:
        raise SpikeDelayError(f"espeak-ng returned no WAV data for {what}")
    with wave.open(io.BytesIO(data[:44])) as w:  # the fixed 44-byte header
        rate, width, chans = w.getframerate(), w.getsampwidth(), w.getnchannels()
    if (rate, width, chans) != (ESPEAK_RATE, 2, 1):
        raise SpikeDelayError(f"espeak-ng WAV for {what}: {rate} Hz, {width} B, {chans} ch")
    raw = data[pos + 8 :]
    raw = raw[: len(raw) // 2 * 2]
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0


def synthesize(word: str, voice: str, *, pitch: int, wpm: int) -> np.ndarray:
    """Speak ``word`` with espeak-ng. Returns float64 samples at 22.05 kHz in [-1, 1)."""
    cmd = [espeak_binary(), "-v", voice, "-p", str(pitch), "-s", str(wpm), "--stdout", word]
    try:
        res = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    except subprocess.CalledProcessError as err:
        raise SpikeDelayError(
            f"espeak-ng failed for {word!r} with voice {voice!r}: {err.stderr.decode().strip()}"
        ) from err
    return _parse_wav(res.stdout, f"{word!r} ({voice})")


def trim_silence(x: np.ndarray, rel_threshold: float = 0.01) -> np.ndarray:
    """Cut leading/trailing samples quieter than ``rel_threshold`` × the peak."""
    peak = np.max(np.abs(x)) if x.size else 0.0
    if peak == 0.0:
        raise SpikeDelayError("espeak-ng produced a silent clip")
    loud = np.flatnonzero(np.abs(x) >= rel_threshold * peak)
    return x[loud[0] : loud[-1] + 1]


def utterance(
    word: str,
    language: str,
    speaker: Speaker,
    rng: np.random.Generator,
    aug: Augmentation = Augmentation(),
) -> tuple[np.ndarray, int]:
    """One augmented utterance at 48 kHz, not yet padded to its final length.

    Returns (samples (n,) float64 with lead-in, word and minimal tail, noise-free;
    start index of the word). Noise is added by :func:`pad_and_add_noise` once the final
    clip length is known.
    """
    factor = rng.uniform(*aug.speed_factor)
    wpm = int(np.clip(round(speaker.wpm * factor), 80, 450))
    raw = trim_silence(synthesize(word, speaker.voice(language), pitch=speaker.pitch, wpm=wpm))
    from scipy.signal import resample_poly  # slow to import: only where it is needed

    speech = resample_poly(raw, OUT_RATE // 150, ESPEAK_RATE // 150)  # 320 / 147
    lead = int(round(rng.uniform(*aug.lead_in_s) * OUT_RATE))
    tail = int(round(aug.tail_s * OUT_RATE))
    out = np.zeros(lead + speech.size + tail)
    out[lead : lead + speech.size] = speech
    return out, lead


def pad_and_add_noise(
    x: np.ndarray,
    length: int,
    rng: np.random.Generator,
    aug: Augmentation = Augmentation(),
) -> np.ndarray:
    """Zero-pad ``x`` to ``length`` samples and add white noise at an SNR drawn from
    ``aug.snr_db``, relative to the mean power of the non-silent part of ``x``."""
    if length < x.size:
        raise ValueError(f"length {length} < clip {x.size}")
    out = np.zeros(length)
    out[: x.size] = x
    voiced = x[np.abs(x) > 0]
    power = float(np.mean(voiced**2)) if voiced.size else 1.0
    snr = rng.uniform(*aug.snr_db)
    out += rng.standard_normal(length) * math.sqrt(power / 10 ** (snr / 10))
    return out
