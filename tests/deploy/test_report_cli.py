"""`spikedelay report | export | stream` on a tiny run folder and tiny SHD-layout files. ~8 s."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile
import torch
from deploy_helpers import deploy_cli as _main
from deploy_helpers import randomised_model, save_run

from spikedelay.config import ModelConfig
from spikedelay.data.framing import Framing
from spikedelay.data.hdf5 import read_spike_file, write_spike_file
from spikedelay.deploy import load_exported
from spikedelay.deploy.net import from_run
from spikedelay.deploy.report import write_report


@pytest.fixture(name="run_with_data")
def _run_with_data(tmp_path, make_spike_set):
    def write_set(path, s):
        write_spike_file(path, s.times, s.units, s.labels, s.speakers, s.keys)

    data = tmp_path / "data"
    data.mkdir()
    write_set(data / "shd_train.h5", make_spike_set(24, n_classes=3, seed=0))
    write_set(data / "shd_test.h5", make_spike_set(9, n_classes=3, seed=1, speaker_offset=10))
    # K = 9: offline the DFT path (K >= delays.FFT_MIN_TAPS), as the recipes run
    cfg = ModelConfig(in_features=140, hidden=[24], n_classes=3, max_delay=9, dropout=0.0)
    model = randomised_model(cfg, seed=7)
    with torch.no_grad():
        model.hidden[0].norm.running_var.fill_(0.05)  # make the sparse input drive spikes
    run = save_run(tmp_path / "run", model, class_names=["zero", "one", "two"], data_root=data)
    return run, data, model


def test_report(run_with_data):
    run, data, _ = run_with_data
    out = write_report(run, samples=5)
    text = out.read_text()
    for png in ("curves.png", "delays.png", "raster.png"):
        assert (run / "report" / png).stat().st_size > 1000
        assert f"report/{png}" in text
    assert "SOPs" in text and "trainable parameters: 6,912" in text
    # the SOP total in the table equals a naive count: events × fan-out from the offline model
    rec = read_spike_file(data / "shd_test.h5")
    framing = Framing()
    net = from_run(run)
    total = 0
    model = run_with_data[2]
    for i in range(5):
        x = torch.from_numpy(framing(rec.times[i], rec.units[i]))[None].double()
        with torch.no_grad():
            spikes = model.double().forward_recording(x).spikes
        for inp, layer in zip([x] + spikes, net.layers, strict=True):
            fan_out = np.count_nonzero(layer.weight[:, :, 0], axis=0)
            total += (fan_out[None] * (inp[0].numpy() != 0)).sum()
    m = re.search(r"\*\*total\*\* \| \| \| \| \| \*\*([\d.]+) ?(k?)\*\*", text)
    got = float(m.group(1)) * (1000 if m.group(2) == "k" else 1)
    assert got == pytest.approx(total / 5, rel=0.01)


def test_report_without_data(tmp_path):
    cfg = ModelConfig(in_features=140, hidden=[8], n_classes=3, max_delay=5)
    run = save_run(tmp_path / "run", randomised_model(cfg), data_root=tmp_path / "nowhere")
    text = write_report(run).read_text()
    assert "Not computed" in text and "--data" in text


def test_cli_export_and_stream(run_with_data, tmp_path, capsys):
    run, data, model = run_with_data
    out = tmp_path / "m.nir"
    assert _main(["export", str(run), "--format", "nir", "--out", str(out)]) == 0
    assert load_exported(out).n_classes == 3
    assert _main(["stream", str(out), "--input", str(data / "shd_test.h5"), "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # predictions printed equal the offline model's
    rec = read_spike_file(data / "shd_test.h5")
    for i in range(3):
        x = torch.from_numpy(Framing()(rec.times[i], rec.units[i]))[None]
        with torch.no_grad():
            v, _ = model.float()(x)
        pred = int(torch.softmax(v[0], -1).sum(0).argmax())
        assert f"prediction {pred} (" in [ln for ln in lines if ln.startswith(f"sample {i}:")][0]


def _offline_running_predictions(model, frames: np.ndarray) -> tuple[list[int | None], int]:
    """What ``--per-frame`` must print, from the offline model: after frame t the prediction is
    argmax Σ_{s < t} softmax(v_out[s]) over the readout steps emitted so far (None where two
    classes are within 1e-9: a tie that float rounding may break either way); and the final
    prediction over every readout step (the L·P tail steps included)."""
    with torch.no_grad():
        v, _ = model.double()(torch.from_numpy(frames).double()[None])
    running = torch.cumsum(torch.softmax(v[0], -1), 0)
    preds: list[int | None] = []
    for t in range(len(frames)):
        top2 = torch.topk(running[t], 2).values
        preds.append(int(running[t].argmax()) if float(top2[0] - top2[1]) > 1e-9 else None)
    return preds, int(running[-1].argmax())


_PER_FRAME = re.compile(r"^  sample (\d+) frame (\d+) \(([\d.]+) ms\): (\d+) ")
_FINAL = re.compile(r"^sample (\d+): (\d+) frames → prediction (\d+) ")


def _check_per_frame_output(out: str, model, frames: np.ndarray) -> None:
    expected, final = _offline_running_predictions(model, frames)
    rows = [m.groups() for m in map(_PER_FRAME.match, out.splitlines()) if m]
    assert [(int(s), int(t), float(ms)) for s, t, ms, _ in rows] == [
        (0, t, 10.0 * t) for t in range(1, len(frames) + 1)]
    got = [int(r[3]) for r in rows]
    compared = [(g, e) for g, e in zip(got, expected, strict=True) if e is not None]
    assert len(compared) >= 0.9 * len(frames) and all(g == e for g, e in compared), (got, expected)
    assert len(set(e for _, e in compared)) >= 2  # the running prediction changes: a real check
    (last,) = [m.groups() for m in map(_FINAL.match, out.splitlines()) if m]
    assert (int(last[0]), int(last[1]), int(last[2])) == (0, len(frames), final)


def test_cli_stream_per_frame_equals_offline_running_prediction(run_with_data, capsys):
    run, data, model = run_with_data
    rec = read_spike_file(data / "shd_test.h5")
    i = 4  # a sample whose running prediction changes on the way
    frames = Framing()(rec.times[i], rec.units[i])
    one = data / "one.h5"
    write_spike_file(one, [rec.times[i]], [rec.units[i]], rec.labels[i:i + 1],
                     rec.speakers[i:i + 1], rec.class_names)
    capsys.readouterr()
    assert _main(["stream", str(run), "--input", str(one), "--per-frame"]) == 0
    _check_per_frame_output(capsys.readouterr().out, model, frames)


@pytest.mark.slow  # the cochlea's numba compile dominates (~10 s on a cold cache)
def test_cli_stream_wav(run_with_data, tmp_path, capsys):
    """A 16 kHz WAV → the cochlea at 48 kHz → frames: the printed running and final
    predictions are the offline model's on the same events (resampled here by hand)."""
    from scipy.signal import resample_poly

    from spikedelay.data.synth.cochlea import cochlea

    run, _, model = run_with_data
    t = np.arange(4800) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) * np.linspace(0.2, 1.0, t.size)
    audio += 0.2 * np.sin(2 * np.pi * 1900 * t) * (t > 0.15)  # a second tone half way
    wav = tmp_path / "tones.wav"
    soundfile.write(wav, audio, 16000, subtype="FLOAT")
    times, units = cochlea(resample_poly(audio, 3, 1), 48000)
    frames = Framing()(times, units)
    with torch.no_grad():
        spikes = model.double().forward_recording(torch.from_numpy(frames).double()[None]).spikes
    assert len(frames) >= 25 and float(spikes[0].sum()) > 50  # the network hears the tones
    capsys.readouterr()
    assert _main(["stream", str(run), "--input", str(wav), "--per-frame"]) == 0
    _check_per_frame_output(capsys.readouterr().out, model, frames)


def test_bad_kernel_backend_is_one_clear_error(run_with_data, monkeypatch, capsys):
    """A bad or impossible SPIKEDELAY_KERNELS ends a deploy command with one line, exit 2."""
    from spikedelay.cli import main

    run, _, _ = run_with_data
    monkeypatch.setenv("SPIKEDELAY_KERNELS", "bogus")
    assert main(["report", str(run), "--samples", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: SPIKEDELAY_KERNELS='bogus' is not a kernel backend; use one of "
                   "auto, numba, triton, torch"]
