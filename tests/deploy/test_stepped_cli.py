"""`spikedelay stream | export | report` on recurrent-delayed and SE-adLIF run folders.

References are independent of the stepped engine: the offline DelaySNN (float64, the same
float32 parameters the checkpoint holds) for predictions, and a naive count of its recorded
spikes × fan-out (feed-forward and recurrent) for the report's synaptic operations.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from deploy_helpers import deploy_cli as _main
from deploy_helpers import save_run

from spikedelay.config import ModelConfig
from spikedelay.data.framing import Framing
from spikedelay.data.hdf5 import read_spike_file, write_spike_file
from spikedelay.deploy import load_exported
from spikedelay.model import DelaySNN

CASES = {
    "delrec": dict(recurrent=["plain", "delayed"], bias=True, delays="none", padding="causal",
                   recurrent_delay_range=[0.0, 6.0], tau=2.0),
    "se-adlif": dict(neuron="se-adlif", recurrent="plain", norm="none", bias=True,
                     delays="none", padding="causal", readout_tau=15.0),
}
# weight gain, bias added, seed: lively layers and predictions that differ between samples
DRIVE = {"delrec": (3.0, 0.0, 1), "se-adlif": (30.0, 2.0, 2)}
N_TEST = 6


def _model(case: str) -> DelaySNN:
    gain, shift, seed = DRIVE[case]
    torch.manual_seed(seed)
    cfg = ModelConfig(in_features=140, hidden=[16, 12], n_classes=3, dropout=0.0,
                      **CASES[case])
    model = DelaySNN(cfg)
    with torch.no_grad():
        for block in model.hidden:
            if block.norm is not None:
                block.norm.running_var.fill_(0.05)
            block.delay.weight.mul_(gain)
            block.bias.add_(shift)
            if cfg.neuron != "lif":
                block.neurons.adaptation.a.mul_(0.2)
                block.neurons.adaptation.b.mul_(0.2)
            if block.neurons.recurrent is not None:
                block.neurons.recurrent.weight.mul_(2.0)
        model.readout_bias.zero_()  # the class then depends on the spikes, not a bias
    return model.eval()


def _random_words(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` words of 40–160 input spikes over 0.2–0.5 s (times exact in float32)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(40, 160, n)
    times = [np.sort(rng.uniform(0, rng.uniform(0.2, 0.5), c)).astype(np.float32)
             .astype(np.float64) for c in counts]
    return times, [rng.integers(0, 700, c) for c in counts]


@pytest.fixture(name="runs", scope="module")
def _runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stepped-cli")
    data = root / "data"
    data.mkdir()
    for name, n, seed in (("shd_train.h5", 12, 0), ("shd_test.h5", N_TEST, 1)):
        times, units = _random_words(n, seed)
        write_spike_file(data / name, times, units, np.arange(n) % 3, np.arange(n) % 4,
                         ["zero", "one", "two"])
    out = {}
    for case in CASES:
        model = _model(case)
        run = save_run(root / case, model, class_names=["zero", "one", "two"], data_root=data)
        out[case] = run, copy.deepcopy(model).double()
    return data, out


def _test_frames(data) -> list[np.ndarray]:
    rec = read_spike_file(data / "shd_test.h5")
    return [Framing()(t, u) for t, u in zip(rec.times, rec.units, strict=True)]


def _offline_predictions(model, frames: list[np.ndarray]) -> list[int]:
    preds = []
    for f in frames:
        with torch.no_grad():
            v, n = model(torch.from_numpy(f).double()[None])
        preds.append(int(torch.softmax(v[0, : int(n[0])], -1).sum(0).argmax()))
    return preds


@pytest.mark.parametrize("case", list(CASES))
def test_stream_prints_the_offline_predictions(runs, case, capsys):
    data, by_case = runs
    run, model = by_case[case]
    frames = _test_frames(data)
    with torch.no_grad():  # a real check: every hidden layer spikes, predictions differ
        rec = model.forward_recording(torch.from_numpy(frames[0]).double()[None])
    assert all(float(s.mean()) > 0.01 for s in rec.spikes), [float(s.mean()) for s in rec.spikes]
    expected = _offline_predictions(model, frames)
    assert len(set(expected)) >= 2, expected
    capsys.readouterr()
    assert _main(["stream", str(run), "--input", str(data / "shd_test.h5")]) == 0
    got = [int(m.group(1)) for m in re.finditer(r"→ prediction (\d+) \(",
                                                 capsys.readouterr().out)]
    assert got == expected
    assert _main(["stream", str(run), "--input", str(data / "shd_test.h5"), "--limit", "1",
                  "--per-frame"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(ln.startswith("  sample 0 frame ") for ln in lines) == len(frames[0])
    assert f"→ prediction {expected[0]} (" in lines[-2]


@pytest.mark.parametrize("case", list(CASES))
def test_export_round_trips_to_the_offline_predictions(runs, case, tmp_path, capsys):
    data, by_case = runs
    run, model = by_case[case]
    frames = _test_frames(data)
    expected = _offline_predictions(model, frames)
    formats = ["safetensors"] + (["nir"] if case == "delrec" else [])
    for fmt in formats:
        out = tmp_path / f"net.{fmt}"
        assert _main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
        said = capsys.readouterr().out
        assert f"wrote {out}" in said
        # no feed-forward delays in either case: the summary says the delays used (all 0),
        # not the room K - 1 the layers have
        assert f"delays 0…0 steps of 10 ms (room for 0…{model.cfg.max_delay - 1})" in said
        net = load_exported(out)
        assert [int(net.predict(f[None], np.array([len(f)]))[0]) for f in frames] == expected
        assert _main(["stream", str(out), "--input", str(data / "shd_test.h5")]) == 0
        got = [int(m.group(1)) for m in re.finditer(r"→ prediction (\d+) \(",
                                                     capsys.readouterr().out)]
        assert got == expected


def test_nir_refuses_se_adlif_with_one_line(runs, tmp_path, capsys):
    from spikedelay.cli import main

    _, by_case = runs
    out = tmp_path / "net.nir"
    capsys.readouterr()
    assert main(["export", str(by_case["se-adlif"][0]), "--format", "nir", "--out",
                 str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: layer 1 has se-adlif neurons"), err
    assert "Traceback" not in captured.err + captured.out and not out.exists()


def _naive_sops(model, frames: list[np.ndarray]) -> float:
    """Σ events × fan-out over the first samples, from the offline model's recorded spikes:
    feed-forward (input entries, then spikes of the layer below) and recurrent (each spike of a
    recurrent layer reaches the non-zero W_rec entries of its column)."""
    total = 0.0
    for f in frames:
        x = torch.from_numpy(f).double()[None]
        with torch.no_grad():
            spikes = [s[0].numpy() for s in model.forward_recording(x).spikes]
        inputs = [f] + spikes
        for i, layer in enumerate([b.delay for b in model.hidden] + [model.readout]):
            w = layer.weight.detach().numpy()
            fan_out = np.count_nonzero(w.reshape(w.shape[0], w.shape[1], -1).any(-1), axis=0)
            total += float(((inputs[i] != 0) * fan_out[None]).sum())
            if i < len(model.hidden) and model.hidden[i].neurons.recurrent is not None:
                w_rec = model.hidden[i].neurons.recurrent.weight.detach().numpy()
                total += float((spikes[i] * np.count_nonzero(w_rec, axis=0)[None]).sum())
    return total / len(frames)


@pytest.mark.parametrize("case", list(CASES))
def test_report_counts_recurrent_synaptic_operations(runs, case, capsys):
    data, by_case = runs
    run, model = by_case[case]
    assert _main(["report", str(run), "--samples", str(N_TEST)]) == 0
    text = (run / "report.md").read_text()
    m = re.search(r"\| \*\*total\*\* \| \| \| \| \| \*\*([\d.]+) ?(k?)\*\*", text)
    got = float(m.group(1)) * (1000 if m.group(2) == "k" else 1)
    assert got == pytest.approx(_naive_sops(model, _test_frames(data)), rel=0.005)
    assert "recurrent (per presynaptic neuron)" in text and "Not computed" in text
    assert "## Confusion matrix" in text
    for png in ("delays.png", "raster.png"):
        assert (run / "report" / png).stat().st_size > 1000


def test_report_on_another_data_set_says_so(runs, tmp_path):
    """Labels beyond the model's classes (another data set's folder): the cost sections say
    why they are missing instead of ending in an IndexError."""
    _, by_case = runs
    other = tmp_path / "other"
    other.mkdir()
    for name in ("shd_train.h5", "shd_test.h5"):
        times, units = _random_words(5, 4)
        write_spike_file(other / name, times, units, np.arange(5), np.arange(5) % 2,
                         [f"c{k}" for k in range(5)])
    run = by_case["se-adlif"][0]
    assert _main(["report", str(run), "--data", str(other), "--samples", "10"]) == 0
    text = (run / "report.md").read_text()
    assert "labels go up to 4, the model has 3 classes" in text
    assert "## Confusion matrix" not in text
