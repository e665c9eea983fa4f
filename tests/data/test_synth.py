"""espeak-ng speech, augmentation and the SynthDigits builder (tiny builds: 20 channels).
≈ 45 s on 2 loaded cores, mostly the 2-process build (each spawned worker imports
spikedelay.data, hence torch)."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from spikedelay.data.synth import build_synthdigits, speech
from spikedelay.errors import ConfigError, DependencyError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def test_missing_espeak_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DependencyError, match="apt-get install espeak-ng"):
        speech.synthesize("one", "en-us", pitch=50, wpm=170)
    with pytest.raises(DependencyError, match="apt-get install espeak-ng"):
        build_synthdigits(tmp_path / "out", speakers=1, test_speakers=1, progress=False)


def test_vocabularies():
    digits = speech.VOCABS["digits"]
    assert len(digits) == 20
    english = "zero one two three four five six seven eight nine".split()
    german = "null eins zwei drei vier fünf sechs sieben acht neun".split()
    assert [w for w, _ in digits] == english + german
    assert [lang for _, lang in digits] == ["en"] * 10 + ["de"] * 10
    gsc = (
        "backward bed bird cat dog down eight five follow forward four go happy house learn "
        "left marvin nine no off on one right seven sheila six stop three tree two up visual "
        "wow yes zero"
    ).split()
    assert [w for w, _ in speech.VOCABS["commands"]] == gsc and len(gsc) == 35


def test_speakers_use_real_voices_and_german_for_german():
    rng = np.random.default_rng(0)
    spk = speech.make_speakers(200, rng)
    assert {s.accent for s in spk} == set(speech.ENGLISH_ACCENTS)
    assert all(20 <= s.pitch <= 80 and 130 <= s.wpm <= 210 for s in spk)
    assert spk[0].voice("de").startswith("de+") and spk[0].voice("en").startswith(spk[0].accent)
    assert len(speech.VARIANTS) == 100 and all(" " not in v for v in speech.VARIANTS)


@needs_espeak
def test_synthesize_speaks_at_espeak_rate():
    x = speech.synthesize("seven", "en-us+klatt", pitch=50, wpm=170)
    assert x.ndim == 1 and 0.2 < x.size / speech.ESPEAK_RATE < 1.5
    assert 0.05 < np.abs(x).max() <= 1.0
    slow = speech.synthesize("seven", "en-us+klatt", pitch=50, wpm=100)
    assert speech.trim_silence(slow).size > 1.3 * speech.trim_silence(x).size


@needs_espeak
def test_utterance_resamples_and_leads_in_with_silence():
    spk = speech.Speaker(id=0, accent="en-gb", variant="m3", pitch=40, wpm=160)
    aug = speech.Augmentation(speed_factor=(1.0, 1.0), lead_in_s=(0.1, 0.1), tail_s=0.05)
    x, lead = speech.utterance("four", "en", spk, np.random.default_rng(0), aug)
    raw = speech.trim_silence(speech.synthesize("four", "en-gb+m3", pitch=40, wpm=160))
    assert lead == 4800 and not x[:lead].any() and x[lead] != 0
    # 22.05 kHz → 48 kHz: 320/147 samples per input sample
    assert abs((x.size - lead - 2400) - raw.size * 320 / 147) <= 2


def test_noise_is_added_at_the_drawn_snr():
    rng = np.random.default_rng(0)
    speech_part = np.sin(np.arange(24_000) / 7.0)
    clip = np.concatenate([np.zeros(1000), speech_part])
    aug = speech.Augmentation(snr_db=(15.0, 15.0))
    out = speech.pad_and_add_noise(clip, 40_000, rng, aug)
    noise = out.copy()
    noise[: clip.size] -= clip
    snr = 10 * np.log10(np.mean(speech_part**2) / np.mean(noise**2))
    assert abs(snr - 15.0) < 0.2
    with pytest.raises(ValueError):
        speech.pad_and_add_noise(clip, 10, rng)


def test_bad_arguments_are_listed_together(tmp_path):
    with pytest.raises(ConfigError, match="vocab 'letters'.*speakers must be.*time_dtype"):
        build_synthdigits(
            tmp_path, vocab="letters", speakers=0, time_dtype="int8", progress=False
        )


@needs_espeak
def test_tiny_build_is_reproducible_and_speaker_disjoint(tmp_path):
    from spikedelay.data.hdf5 import read_spike_file

    kw = dict(speakers=1, test_speakers=1, seed=3, channels=20, clip_quantum_s=1.0, progress=False)
    s1 = build_synthdigits(tmp_path / "a", workers=1, **kw)
    s2 = build_synthdigits(tmp_path / "b", workers=2, **kw)
    for name in ("shd_train.h5", "shd_test.h5"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert s1["samples"] == s2["samples"] == {"train": 20, "test": 20}
    assert s1["spikes_per_sample"] == s2["spikes_per_sample"]
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    for key in ("samples", "speakers", "spikes_per_sample", "duration_s",
                "cochlea_seconds_per_utterance"):
        assert key in summary
    train = read_spike_file(tmp_path / "a" / "shd_train.h5")
    test = read_spike_file(tmp_path / "a" / "shd_test.h5")
    with h5py.File(tmp_path / "a" / "shd_train.h5") as f:
        speakers_train = set(f["extra/speaker"][()].tolist())
        keys = [k.decode() for k in f["extra/keys"][()]]
        assert f["spikes/times"].dtype.metadata["vlen"] == np.float32
    with h5py.File(tmp_path / "a" / "shd_test.h5") as f:
        speakers_test = set(f["extra/speaker"][()].tolist())
    assert speakers_train.isdisjoint(speakers_test)
    assert keys[0] == "zero" and keys[15] == "fünf"
    assert sorted(np.asarray(train.labels).tolist()) == list(range(20))
    assert sorted(np.asarray(test.labels).tolist()) == list(range(20))
    assert all(t.size > 10 and np.all(np.diff(t) >= 0) for t in train.times)
    assert all(u.max() < 20 for u in train.units)
