"""GSC: mel filterbank and spectrogram against slow restatements, a fake folder, errors (~3 s)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile

from spikedelay.config import DataConfig
from spikedelay.data.gsc import (
    GSC_CLASSES,
    FrontEnd,
    gsc_file_lists,
    hz_to_mel,
    log_mel,
    mel_edges,
    mel_filterbank,
    mel_to_hz,
    power_spectrogram,
    read_wav,
)
from spikedelay.data.loaders import load_dataset
from spikedelay.errors import DataError

SR = 16000


def test_class_list():
    assert len(GSC_CLASSES) == 35 == len(set(GSC_CLASSES))
    assert list(GSC_CLASSES) == sorted(GSC_CLASSES)


def test_mel_scale_known_values():
    assert hz_to_mel(700.0) == pytest.approx(2595 * math.log10(2))
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.5)  # HTK: 1 kHz ≈ 1000 mel
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(np.array([50.0, 4000.0]))), [50.0, 4000.0])


def slow_filterbank(freqs, n_mels, f_min, f_max):
    """Per band, per frequency: the triangle through (left, 0), (centre, 1), (right, 0)."""
    lo, hi = 2595 * math.log10(1 + f_min / 700), 2595 * math.log10(1 + f_max / 700)
    step = (hi - lo) / (n_mels + 1)
    edge = [700 * (10 ** ((lo + i * step) / 2595) - 1) for i in range(n_mels + 2)]
    out = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        left, centre, right = edge[m], edge[m + 1], edge[m + 2]
        for k, f in enumerate(freqs):
            if left < f <= centre:
                out[k, m] = (f - left) / (centre - left)
            elif centre < f < right:
                out[k, m] = (right - f) / (right - centre)
    return out


def test_filterbank_matches_slow_triangles():
    freqs = np.linspace(0, 4000, 129)
    got = mel_filterbank(freqs, n_mels=140, f_min=50, f_max=4000)
    np.testing.assert_allclose(got, slow_filterbank(freqs, 140, 50, 4000), atol=1e-12)
    fine = np.linspace(0, 4000, 4001)
    np.testing.assert_allclose(mel_filterbank(fine, n_mels=20, f_min=50, f_max=4000),
                               slow_filterbank(fine, 20, 50, 4000), atol=1e-12)


def test_each_filter_peaks_at_its_centre():
    centres = mel_edges(140, 50, 4000)[1:-1]
    at_centres = mel_filterbank(centres, n_mels=140, f_min=50, f_max=4000)
    np.testing.assert_allclose(at_centres, np.eye(140), atol=1e-9)
    fine = np.linspace(0, 4000, 40001)
    fb = mel_filterbank(fine, n_mels=140, f_min=50, f_max=4000)
    np.testing.assert_allclose(fine[fb.argmax(0)], centres, atol=0.1)
    assert fb[fine > 4000 - 1e-9].sum() == 0 and fb[fine < 50].sum() == 0
    # On the 129 FFT bins, the narrowest low bands fall between bins (documented: 7 of 140).
    bins = mel_filterbank(np.linspace(0, 4000, 129), n_mels=140, f_min=50, f_max=4000)
    assert (bins.sum(0) == 0).sum() == 7 and (bins.sum(0)[40:] > 0).all()


def test_spectrogram_matches_naive_dft():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000)
    n_fft, hop = 256, 80
    got = power_spectrogram(x, n_fft=n_fft, hop=hop)
    padded = np.concatenate([x[1 : n_fft // 2 + 1][::-1], x, x[-n_fft // 2 - 1 : -1][::-1]])
    n_frames = 1 + len(x) // hop
    assert got.shape == (n_frames, n_fft // 2 + 1)
    k = np.arange(n_fft // 2 + 1)
    for t in (0, 5, n_frames - 1):
        seg = padded[t * hop : t * hop + n_fft]
        w = [0.5 - 0.5 * math.cos(2 * math.pi * n / n_fft) for n in range(n_fft)]
        re = [sum(seg[n] * w[n] * math.cos(2 * math.pi * kk * n / n_fft) for n in range(n_fft))
              for kk in k[::16]]
        im = [sum(seg[n] * w[n] * math.sin(2 * math.pi * kk * n / n_fft) for n in range(n_fft))
              for kk in k[::16]]
        np.testing.assert_allclose(got[t, ::16], np.add(np.square(re), np.square(im)),
                                   rtol=1e-9, atol=1e-9)


def tone(freq, seconds=1.0, amp=0.3):
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_front_end_shape_tone_position_and_floor():
    out = log_mel(tone(1000.0))
    assert out.shape == (101, 140) and out.dtype == np.float32
    centres = mel_edges(140, 50, 4000)[1:-1]
    peak = centres[int(np.median(out[5:-5].argmax(1)))]
    assert abs(peak - 1000.0) < 40  # the band nearest 1 kHz wins
    silent = log_mel(np.zeros(SR))
    np.testing.assert_array_equal(silent, np.full((101, 140), -100.0, np.float32))


def test_pad_and_trim_to_one_second():
    long = tone(440.0, 1.5)
    np.testing.assert_array_equal(log_mel(long), log_mel(long[:SR]))
    short = tone(440.0, 0.4)
    np.testing.assert_array_equal(log_mel(short),
                                  log_mel(np.concatenate([short, np.zeros(SR - short.size)])))
    assert log_mel(short, FrontEnd(max_frames=30)).shape == (30, 140)


# ---- a fake GSC folder --------------------------------------------------------------------


@pytest.fixture
def gsc_root(tmp_path):
    root = tmp_path / "gsc"
    words = {"yes": 500.0, "no": 900.0, "up": 1500.0}
    rel = []
    for w, f in words.items():
        (root / w).mkdir(parents=True)
        for spk in ("aa11", "bb22", "cc33", "dd44"):
            name = f"{w}/{spk}_nohash_0.wav"
            soundfile.write(root / name, tone(f + 10 * len(rel), 0.8), SR)
            rel.append(name)
    (root / "_background_noise_").mkdir()
    soundfile.write(root / "_background_noise_" / "noise.wav", tone(60.0, 2.0), SR)
    (root / "validation_list.txt").write_text("yes/cc33_nohash_0.wav\nno/cc33_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/dd44_nohash_0.wav\nup/dd44_nohash_0.wav\n"
                                           "no/dd44_nohash_0.wav\n")
    return root


def test_file_lists(gsc_root):
    lists = gsc_file_lists(gsc_root)
    assert len(lists["train"]) == 12 - 5 and len(lists["valid"]) == 2 and len(lists["test"]) == 3
    assert not any("_background_noise_" in r for r in lists["train"])
    assert not set(lists["train"]) & (set(lists["valid"]) | set(lists["test"]))


@pytest.mark.parametrize("protocol", ["validation", "test-selected"])
def test_load_gsc(gsc_root, protocol):
    cfg = DataConfig(dataset="gsc", root=str(gsc_root), channel_group=1)
    s = load_dataset(cfg, seed=0, protocol=protocol, progress=False)
    assert s.class_names == list(GSC_CLASSES) and s.in_features == 140
    assert (len(s.train), len(s.test)) == (7, 3)
    assert len(s.val) == (2 if protocol == "validation" else 3)
    assert s.train.frames.shape == (7, 101, 140) and s.train.lengths.tolist() == [101] * 7
    names = sorted(r for r in gsc_file_lists(gsc_root)["test"])
    assert [GSC_CLASSES[i] for i in s.test.labels.tolist()] == [r.split("/")[0] for r in names]
    want = log_mel(read_wav(gsc_root / names[0]))
    np.testing.assert_allclose(s.test.frames[0].float().numpy(), want, rtol=2e-3, atol=0.1)
    assert s.framing["dataset"] == "gsc" and s.framing["f_max"] == 4000.0


def test_gsc_errors(gsc_root, tmp_path):
    soundfile.write(gsc_root / "yes" / "ee55_nohash_0.wav", tone(500.0)[::2], 8000)
    with pytest.raises(DataError, match=r"ee55_nohash_0\.wav: sample rate 8000 Hz"):
        read_wav(gsc_root / "yes" / "ee55_nohash_0.wav")
    bad = gsc_root / "no" / "ff66_nohash_0.wav"
    bad.write_bytes(b"RIFF....garbage")
    with pytest.raises(DataError, match=r"ff66_nohash_0\.wav: unreadable audio"):
        read_wav(bad)
    (gsc_root / "validation_list.txt").unlink()
    with pytest.raises(DataError, match="validation_list.txt"):
        gsc_file_lists(gsc_root)
    with pytest.raises(DataError, match="not one of the 35"):
        other = tmp_path / "other"
        (other / "hello").mkdir(parents=True)
        soundfile.write(other / "hello" / "a_nohash_0.wav", tone(500.0), SR)
        (other / "validation_list.txt").write_text("")
        (other / "testing_list.txt").write_text("")
        gsc_file_lists(other)
