"""NIR graphs of recurrent LIF networks, read back and simulated by a generic NIR walker.

The walker knows nothing of spikedelay's layers: it evaluates any graph of Input, Delay,
Linear, Affine, LIF, LI and Output nodes step by step from their NIR parameters (forward Euler
with the graph's dt), summing every edge into a node, with the usual discrete-time rule for
cycles: an edge that closes a cycle delivers its source's value of the previous step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikedelay.config import ModelConfig
from spikedelay.deploy.export import load_exported
from spikedelay.deploy.stepped_nir import save_nir, to_nir
from spikedelay.deploy.stepped_stream import from_model
from spikedelay.errors import CheckpointError
from spikedelay.model import DelaySNN


def simulate_nir(graph, frames: np.ndarray) -> np.ndarray:
    """Output node values (T, C) of a NIR graph fed ``frames`` (T, in)."""
    import nir

    dt = float(graph.metadata["dt"])
    preds: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        preds.setdefault(dst, []).append(src)
    succs: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        succs.setdefault(src, []).append(dst)
    back: set[tuple[str, str]] = set()  # edges that close a cycle (depth-first from the input)
    on_path: list[str] = []
    seen: set[str] = set()

    def dfs(name: str) -> None:
        seen.add(name)
        on_path.append(name)
        for nxt in succs.get(name, []):
            if nxt in on_path:
                back.add((name, nxt))
            elif nxt not in seen:
                dfs(nxt)
        on_path.pop()

    dfs("input")
    values: dict[tuple[str, int], np.ndarray] = {}
    state: dict[str, np.ndarray] = {}

    def value(name: str, t: int) -> np.ndarray:
        node = graph.nodes[name]
        if t < 0:
            return 0.0
        if (name, t) in values:
            return values[(name, t)]
        ins = [value(p, t - 1 if (p, name) in back else t) for p in preds.get(name, [])]
        if isinstance(node, nir.Input):
            out = frames[t]
        elif isinstance(node, nir.Delay):
            steps = np.rint(np.asarray(node.delay) / dt).astype(int)
            (src,) = preds[name]
            n = len(steps)
            out = np.array([np.broadcast_to(np.asarray(value(src, t - k), float), (n,))[i]
                            for i, k in enumerate(steps)])
        elif isinstance(node, nir.Affine):
            out = node.weight @ ins[0] + node.bias
        elif isinstance(node, nir.Linear):
            out = node.weight @ ins[0]
        elif isinstance(node, (nir.LIF, nir.LI)):
            cur = sum(ins)
            v = state.get(name, np.zeros(np.asarray(node.tau).shape))
            v = v + dt / node.tau * (node.v_leak - v + node.r * cur)
            if isinstance(node, nir.LIF):
                s = (v >= node.v_threshold).astype(float)
                state[name] = np.where(s > 0, node.v_reset, v)
                out = s
            else:
                state[name] = v
                out = v
        else:
            out = ins[0]
        values[(name, t)] = out
        return out

    order = sorted((n for n, node in graph.nodes.items() if isinstance(node, (nir.LIF, nir.LI))),
                   key=lambda n: graph.nodes[n].metadata["layer"])
    outs = []
    for t in range(frames.shape[0]):
        for name in order:  # neurons in layer order, each once per step
            value(name, t)
        outs.append(value("output", t))
    return np.stack(outs)


def _recurrent_lif_model() -> DelaySNN:
    torch.manual_seed(0)
    cfg = ModelConfig(in_features=5, hidden=[8, 6], n_classes=3, dropout=0.0, delays="fixed",
                      max_delay=4, padding="causal", bias=True, recurrent=["delayed", "plain"],
                      recurrent_delay_range=[0.0, 5.0], tau=1.5, readout_tau=2.0)
    model = DelaySNN(cfg)
    with torch.no_grad():
        for block in model.hidden:
            block.norm.running_var.uniform_(0.3, 1.0)
            block.norm.bias.uniform_(0.1, 0.4)
            block.neurons.recurrent.weight.mul_(1.5)
    return model.double().eval()


def test_recurrent_nir_graph_simulates_like_the_offline_model(tmp_path):
    model = _recurrent_lif_model()
    net = from_model(model, framing={"bin_ms": 10.0})
    path = save_nir(net, tmp_path / "net.nir")
    import nir

    graph = nir.read(path)
    assert ("layer1.lif", "layer1.rec_delay") in graph.edges  # the recurrent cycle
    lags = 1 + model.hidden[0].neurons.recurrent.integer_delays().numpy()
    np.testing.assert_allclose(graph.nodes["layer1.rec_delay"].delay, (lags - 1) * 0.01)
    x = (torch.rand(3, 20, 5, generator=torch.Generator().manual_seed(1)) < 0.5).double() * 2
    with torch.no_grad():
        rec = model.forward_recording(x)
    assert all(float(s.mean()) > 0.02 for s in rec.spikes)
    for b in range(3):
        np.testing.assert_allclose(simulate_nir(graph, x[b].numpy()), rec.v_out[b].numpy(),
                                   rtol=0, atol=1e-9)
    back = load_exported(path)  # and it reloads as the same network
    for a, c in zip(net.layers, back.layers, strict=True):
        np.testing.assert_array_equal(a.stack, c.stack)
        assert (a.w_rec is None) == (c.w_rec is None)
        if a.w_rec is not None:
            np.testing.assert_array_equal(a.w_rec, c.w_rec)
            np.testing.assert_array_equal(a.rec_lags, c.rec_lags)


@pytest.mark.parametrize("neuron,reset,match", [("se-adlif", "hard", "se-adlif neurons"),
                                                 ("adlif", "hard", "adlif neurons"),
                                                 ("lif", "subtract", "resets by subtraction")])
def test_nir_refuses_what_it_cannot_express_by_name(neuron, reset, match):
    cfg = ModelConfig(in_features=4, hidden=[5], n_classes=2, delays="none", padding="causal",
                      neuron=neuron, reset=reset, recurrent="plain")
    net = from_model(DelaySNN(cfg).eval())
    with pytest.raises(CheckpointError, match=match):
        to_nir(net)


def test_failed_recurrent_nir_write_keeps_the_file_already_there(tmp_path, monkeypatch):
    import nir

    net = from_model(_recurrent_lif_model(), framing={"bin_ms": 10.0})
    path = save_nir(net, tmp_path / "net.nir")
    before = path.read_bytes()

    def dies_half_way(filename, graph):
        with open(filename, "wb") as fh:
            fh.write(b"\x89HDF")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nir, "write", dies_half_way)
    with pytest.raises(OSError):
        save_nir(net, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["net.nir"]
