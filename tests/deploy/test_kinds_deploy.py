"""Axonal and dendritic networks deployed: streaming = offline on the whole shipped SynthDigits
test set, NIR as one ``Delay`` node per layer (checked by the independent NIR simulator of
test_export), safetensors and ``load_exported`` round trips, and the report. ~15 s.
"""

from __future__ import annotations

import re
from importlib import resources

import nir
import numpy as np
import pytest
import torch
from deploy_helpers import randomised_model, save_run
from test_export import simulate_nir

from spikedelay.config import ModelConfig
from spikedelay.deploy.export import export, load_exported, to_nir
from spikedelay.deploy.net import from_model, from_run
from spikedelay.deploy.report import write_report
from spikedelay.deploy.stream import run_utterances
from spikedelay.train.loss import summed_softmax

KINDS = [("axonal", 0.0), ("axonal", 0.5), ("dendritic", 0.0), ("dendritic", 0.5)]


@pytest.fixture(scope="module")
def shipped_test_set():
    """All 240 words of the SynthDigits test split shipped with spikedelay, framed (140 ch)."""
    from spikedelay.data.framing import Framing
    from spikedelay.data.hdf5 import read_spike_file
    from spikedelay.data.sets import pad_packed

    path = resources.files("spikedelay") / "data" / "synthdigits" / "shd_test.h5.gz"
    rec = read_spike_file(str(path))
    framing = Framing()
    frames = [framing(t, u) for t, u in zip(rec.times, rec.units, strict=True)]
    lengths = np.array([len(f) for f in frames])
    x = torch.from_numpy(pad_packed(np.concatenate(frames), lengths)).double()
    return x, torch.from_numpy(lengths)


def _calibrated(kind: str, sparsity: float, x: torch.Tensor, lengths: torch.Tensor):
    """A small random network of ``kind`` whose BatchNorm is set from the data (lively spikes)."""
    cfg = ModelConfig(in_features=140, hidden=[40, 30], n_classes=20, max_delay=9,
                      delay_kind=kind, delay_sparsity=sparsity, dropout=0.0)
    model = randomised_model(cfg, seed=11).double()
    with torch.no_grad():
        h, hl = x[:40], lengths[:40]
        for block in model.hidden:
            y = block.delay(h)
            hl = block.delay.output_length(hl)
            mask = torch.arange(y.shape[1])[None] < hl[:, None]
            block.norm.running_mean.copy_(y[mask].mean(0))
            block.norm.running_var.copy_(y[mask].var(0) * 0.5)
            h = block.lif(block.norm(y)) * mask[..., None]
    return model


@pytest.mark.parametrize("kind,sparsity", KINDS)
def test_stream_equals_offline_on_the_whole_test_set(shipped_test_set, kind, sparsity):
    x, lengths = shipped_test_set
    model = _calibrated(kind, sparsity, x, lengths)
    with torch.no_grad():
        rec = model.forward_recording(x, lengths)  # float64 offline, integer delays
    rates = [float(s.sum() / (s.shape[2] * rec.spike_lengths[i].sum()))
             for i, s in enumerate(rec.spikes)]
    assert all(0.01 < r < 0.6 for r in rates), rates  # an active network, not a silent one
    net = from_model(model)
    assert all(layer.kind == kind for layer in net.layers)
    if sparsity:
        assert all(int((~layer.active).sum()) == int(sparsity * layer.channel_delays.size)
                   for layer in net.layers)
    v, scores, _ = run_utterances(net, x.numpy(), lengths.numpy())
    for b in range(len(lengths)):
        n = int(rec.lengths[b])
        np.testing.assert_allclose(v[b, :n], rec.v_out[b, :n].numpy(), rtol=0, atol=1e-9)
    m_off = summed_softmax(rec.v_out, rec.lengths).numpy()
    np.testing.assert_array_equal(scores.argmax(1), m_off.argmax(1))


@pytest.fixture(params=KINDS, ids=[f"{k}-S{s}" for k, s in KINDS])
def small(request):
    kind, sparsity = request.param
    cfg = ModelConfig(in_features=12, hidden=[16, 10], n_classes=4, max_delay=7,
                      delay_kind=kind, delay_sparsity=sparsity, dropout=0.0)
    model = randomised_model(cfg, seed=5).double()
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(4, 20, 12, generator=g) < 0.35).double()
    lengths = torch.tensor([20, 13, 6, 17])
    with torch.no_grad():
        v_off, out_len = model(x, lengths)
    return model, x, lengths, v_off, out_len


def test_nir_has_one_delay_node_per_layer(small):
    model, x, lengths, v_off, out_len = small
    kind = model.cfg.delay_kind
    graph = to_nir(from_model(model))
    delays = {n: node for n, node in graph.nodes.items() if isinstance(node, nir.Delay)}
    assert sorted(delays) == ["layer1.delay", "layer2.delay", "layer3.delay"]
    for layer, name in zip(model.delay_layers(), sorted(delays), strict=True):
        d = np.rint(np.asarray(delays[name].delay) / 0.01).astype(int)
        np.testing.assert_array_equal(d, layer.integer_delays().numpy())  # native: (C,)
        assert d.shape == ((layer.in_features,) if kind == "axonal" else (layer.out_features,))
    # no per-delay weight branches: one weight node per layer
    weights = [n for n in graph.nodes.values() if isinstance(n, (nir.Linear, nir.Affine))]
    assert len(weights) == 3 and all(w.weight.ndim == 2 for w in weights)
    # the independent NIR simulator reproduces the offline model from the file alone
    for b in range(len(lengths)):
        out = simulate_nir(graph, x[b, :int(lengths[b])].numpy())
        assert out.shape[0] == int(out_len[b])
        np.testing.assert_allclose(out, v_off[b, :out.shape[0]].numpy(), atol=1e-9)


@pytest.mark.parametrize("fmt", ["nir", "safetensors"])
def test_export_round_trip(tmp_path, small, fmt):
    model, x, lengths, v_off, out_len = small
    run = save_run(tmp_path / "run", model.float(), class_names=list("abcd"))
    model.double()
    net = from_run(run)
    back = load_exported(export(net, tmp_path / f"m.{fmt}", fmt))
    for a, b in zip(net.layers, back.layers, strict=True):
        assert a.kind == b.kind == model.cfg.delay_kind
        for key in ("weight", "delays", "bias"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert (a.active is None) == (b.active is None)
        if a.active is not None:
            np.testing.assert_array_equal(a.active, b.active)
    s1 = run_utterances(net, x.numpy(), lengths.numpy())[1]
    s2 = run_utterances(back, x.numpy(), lengths.numpy())[1]
    np.testing.assert_array_equal(s1, s2)
    m_off = summed_softmax(v_off, out_len).numpy()
    np.testing.assert_array_equal(back.predict(x.numpy(), lengths.numpy()), m_off.argmax(1))


def test_report_counts_per_kind(tmp_path, make_spike_set):
    from spikedelay.data.hdf5 import write_spike_file

    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 12, 0), ("test", 6, 1)):
        s = make_spike_set(n, n_classes=3, seed=seed, speaker_offset=10 * seed)
        write_spike_file(data / f"shd_{split}.h5", s.times, s.units, s.labels, s.speakers,
                         s.keys)
    cfg = ModelConfig(in_features=140, hidden=[24], n_classes=3, max_delay=5,
                      delay_kind="axonal", delay_sparsity=0.5, dropout=0.0)
    model = randomised_model(cfg, seed=7)
    with torch.no_grad():
        model.hidden[0].norm.running_var.fill_(0.05)
    run = save_run(tmp_path / "run", model, class_names=["a", "b", "c"], data_root=data)
    text = write_report(run, samples=4).read_text()
    # 140·24 + 24·3 weights, 140 + 24 delays, BN 48; active = 164 - ⌊0.5·140⌋ - ⌊0.5·24⌋
    assert "trainable parameters: 3,644 (164 delays, 82 active)" in text
    assert "delay kind: axonal" in text
    rows = re.findall(r"\| layer (\d) \| axonal \| ([\d,]+) / ([\d,]+) \|", text)
    assert rows == [("1", "70", "140"), ("2", "12", "24")]
    assert (run / "report" / "delays.png").stat().st_size > 1000


def test_run_folder_of_another_kind(tmp_path):
    """A checkpoint whose config says one kind but holds another's weights: CheckpointError."""
    from spikedelay.checkpoint import load_checkpoint, save_checkpoint
    from spikedelay.deploy.net import load_run_model
    from spikedelay.errors import CheckpointError

    cfg = ModelConfig(in_features=6, hidden=[4], n_classes=3, max_delay=5, delay_kind="axonal")
    run = save_run(tmp_path / "run", randomised_model(cfg))
    state = load_checkpoint(run / "best.safetensors")
    state["config"]["model"]["delay_kind"] = "dendritic"
    save_checkpoint(run / "best.safetensors", state)
    with pytest.raises(CheckpointError, match="hold axonal delays .*model.delay_kind = dendritic"):
        load_run_model(run)
