"""Streaming recurrent and adaptive networks frame by frame vs the offline DelaySNN (float64).

The offline model runs the fused time-stepped kernel over whole padded sequences; the stream
keeps ring buffers of past frames and past spikes and updates one frame at a time in numpy.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch

from spikedelay.config import ModelConfig
from spikedelay.deploy.stepped_stream import from_model, needs_stepped_engine
from spikedelay.model import DelaySNN
from spikedelay.train.loss import summed_softmax

CASES = {
    "delrec-like": dict(recurrent=["none", "delayed"], bias=True, delays="none",
                        padding="causal", recurrent_delay_range=[0.0, 6.0], tau=1.05,
                        readout_tau=1.05),
    "lif-ff-delays-flush": dict(recurrent="delayed", bias=True, delays="learned",
                                padding="reference", max_delay=5,
                                recurrent_delay_range=[0.0, 4.0], tau=1.5),
    "se-adlif": dict(neuron="se-adlif", recurrent="plain", norm="none", bias=True,
                     delays="none", padding="causal", surrogate="slayer", readout_tau=15.0),
    "adlif-subtract": dict(neuron="adlif", reset="subtract", recurrent=["plain", "none"],
                           delays="fixed", max_delay=3, padding="causal"),
}


def _model(case: str, hidden=(9, 7), n_in=6, seed=0) -> DelaySNN:
    torch.manual_seed(seed)
    cfg = ModelConfig(in_features=n_in, hidden=list(hidden), n_classes=4, dropout=0.0,
                      **CASES[case])
    model = DelaySNN(cfg)
    with torch.no_grad():
        for block in model.hidden:
            if block.norm is not None:
                block.norm.running_mean.uniform_(-0.3, 0.3)
                block.norm.running_var.uniform_(0.3, 1.0)
                block.norm.weight.uniform_(0.8, 1.5)
                block.norm.bias.uniform_(0.0, 0.4)
            if cfg.neuron != "lif":  # adaptive neurons charge by (1-α) of their input
                block.delay.weight.mul_(8.0)
                block.neurons.adaptation.a.mul_(0.2)  # milder adaptation: livelier layers
                block.neurons.adaptation.b.mul_(0.2)
                if block.bias is not None:
                    block.bias.add_(0.8)
            if block.neurons is not None and block.neurons.recurrent is not None:
                block.neurons.recurrent.weight.mul_(1.5)
    return model.double().eval()


@pytest.mark.parametrize("case", list(CASES))
def test_stream_equals_offline(case):
    model = _model(case)
    assert needs_stepped_engine(model)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(5, 30, 6, generator=g) < 0.4).double() * 3.0
    lengths = torch.tensor([30, 12, 25, 1, 30])
    with torch.no_grad():
        rec = model.forward_recording(x, lengths)
    rates = [float(s.mean()) for s in rec.spikes]
    assert all(r > 0.01 for r in rates), rates  # every layer is active
    net = from_model(model)
    m_off = summed_softmax(rec.v_out, rec.lengths).numpy()
    for b in range(5):
        n_in, n_out = int(lengths[b]), int(rec.lengths[b])
        res = net.run(x[b, :n_in].numpy())
        assert res.v_out.shape[0] == n_out
        np.testing.assert_allclose(res.v_out, rec.v_out[b, :n_out].numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(res.sum_softmax, m_off[b], rtol=0, atol=1e-10)


def test_streams_of_one_batch_are_independent():
    model = _model("se-adlif")
    net = from_model(model)
    x = (torch.rand(3, 10, 6, generator=torch.Generator().manual_seed(2)) < 0.4).double() * 3
    together = net.stream(3)
    outs = np.stack([together.step(x[:, t].numpy()) for t in range(10)], 1)
    for b in range(3):
        np.testing.assert_allclose(outs[b], net.run(x[b].numpy()).v_out, rtol=0, atol=0)


@pytest.mark.parametrize("case", ["delrec-like", "se-adlif"])
def test_whole_synthdigits_test_set(case):
    """A small recurrent-delay and an SE-adLIF network on every test word of the SynthDigits
    release shipped with spikedelay."""
    from spikedelay.data.framing import Framing
    from spikedelay.data.hdf5 import read_spike_file
    from spikedelay.data.sets import pad_packed

    rec = read_spike_file(str(resources.files("spikedelay") / "data" / "synthdigits"
                              / "shd_test.h5.gz"))
    framing = Framing()
    frames = [framing(t, u) for t, u in zip(rec.times, rec.units, strict=True)]
    lengths = np.array([len(f) for f in frames])
    x = torch.from_numpy(pad_packed(np.concatenate(frames), lengths)).double()
    model = _model(case, hidden=(24, 16), n_in=x.shape[2], seed=4)
    with torch.no_grad():
        out = model.forward_recording(x, torch.from_numpy(lengths))
    rates = [float(s.sum() / (s.shape[2] * out.spike_lengths[i].sum()))
             for i, s in enumerate(out.spikes)]
    assert all(0.005 < r < 0.6 for r in rates), rates
    net = from_model(model)
    np.testing.assert_array_equal(net.predict(x.numpy(), lengths),
                                  summed_softmax(out.v_out, out.lengths).argmax(1).numpy())
    for b in range(0, len(lengths), 37):  # and the potentials, step by step, on a sample
        n = int(out.lengths[b])
        np.testing.assert_allclose(net.run(x[b, : lengths[b]].numpy()).v_out,
                                   out.v_out[b, :n].numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", ["delrec-like", "se-adlif", "adlif-subtract"])
def test_safetensors_export_reloads_bit_for_bit(case, tmp_path):
    from spikedelay.deploy.export import load_exported
    from spikedelay.deploy.stepped_export import save_stepped

    model = _model(case)
    net = from_model(model, framing={"bin_ms": 10.0}, class_names=list("abcd"))
    back = load_exported(save_stepped(net, tmp_path / "net.safetensors"))
    assert (back.max_delay, back.tail, back.framing, back.class_names) == (
        net.max_delay, net.tail, net.framing, net.class_names)
    for a, b in zip(net.layers, back.layers, strict=True):
        for name in ("stack", "bias", "coeffs", "w_rec", "rec_lags"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or np.array_equal(x, y), name
        assert (a.neuron, a.tau, a.threshold, a.subtract, a.q) == (
            b.neuron, b.tau, b.threshold, b.subtract, b.q)
    x = (torch.rand(4, 20, 6, generator=torch.Generator().manual_seed(3)) < 0.4).double() * 3
    with torch.no_grad():
        v, n = model(x)
    np.testing.assert_array_equal(back.predict(x.numpy()),
                                  summed_softmax(v, n).argmax(1).numpy())


def test_the_lif_engine_refuses_a_recurrent_or_adaptive_network_by_name():
    from spikedelay.deploy.net import from_model as lif_engine
    from spikedelay.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"recurrence \(model.recurrent.*stepped_stream"):
        lif_engine(_model("delrec-like"))
    with pytest.raises(CheckpointError, match="se-adlif neurons"):
        lif_engine(_model("se-adlif"))
