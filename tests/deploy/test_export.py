"""Export → reload round trips (safetensors, NIR) and an independent NIR simulator. ~5 s.

The NIR simulator below knows nothing of spikedelay: it runs any feed-forward graph of Input,
Delay, Linear/Affine, LIF/LI and Output nodes step by step with forward Euler at ``dt``, NIR's
own equations and spike rule (``v > v_threshold``), and reads only the graph (plus the
documented end-of-input flush from the metadata). It must reproduce the offline model.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from deploy_helpers import randomised_model, save_run

import spikedelay
from spikedelay.deploy.export import export, load_exported, to_nir
from spikedelay.deploy.net import from_model, from_run
from spikedelay.deploy.stream import run_utterances
from spikedelay.errors import CheckpointError
from spikedelay.train.loss import summed_softmax


def simulate_nir(graph: nir.NIRGraph, frames: np.ndarray) -> np.ndarray:
    """Run one utterance (T, in) through ``graph``; returns the output (T + flush, out)."""
    dt = float(graph.metadata["dt"])
    tail = int(graph.metadata["tail"])
    incoming: dict[str, list[str]] = {}
    for a, b in graph.edges:
        incoming.setdefault(b, []).append(a)
    order, done = [], set()
    while len(order) < len(graph.nodes):  # topological order (the graph is a DAG)
        for name in graph.nodes:
            if name not in done and all(p in done for p in incoming.get(name, [])):
                order.append(name)
                done.add(name)
    n_layers = max(int(n.metadata.get("layer", 0)) for n in graph.nodes.values())
    history: dict[str, list[np.ndarray]] = {}
    state: dict[str, np.ndarray] = {}
    outputs = []
    n_steps = len(frames) + n_layers * tail
    for t in range(n_steps):
        flush = t - len(frames) + 1  # 1, 2, … after the input ended
        val: dict[str, np.ndarray] = {}
        for name in order:
            node = graph.nodes[name]
            inp = sum(val[p] for p in incoming.get(name, []))
            if isinstance(node, nir.Input):
                val[name] = frames[t] if t < len(frames) else np.zeros(frames.shape[1])
            elif isinstance(node, nir.Delay):
                hist = history.setdefault(name, [])
                hist.append(inp)
                steps = np.rint(np.asarray(node.delay) / dt).astype(int)
                val[name] = np.array([hist[t - s][c] if t - s >= 0 else 0.0
                                      for c, s in enumerate(steps)])
            elif isinstance(node, nir.Affine):
                val[name] = node.weight @ inp + node.bias
            elif isinstance(node, nir.Linear):
                val[name] = node.weight @ inp
            elif isinstance(node, (nir.LIF, nir.LI)):
                v = state.get(name, np.zeros_like(node.tau))
                v = v + dt / node.tau * ((node.v_leak - v) + node.r * inp)
                if isinstance(node, nir.LIF):
                    z = (v > node.v_threshold).astype(float)
                    v = np.where(z > 0, node.v_reset, v)
                    if flush > int(node.metadata["layer"]) * tail:
                        z = np.zeros_like(z)  # the documented end-of-input rule
                    val[name] = z
                else:
                    val[name] = v
                state[name] = v
            elif isinstance(node, nir.Output):
                val[name] = inp
                outputs.append(inp)
    return np.array(outputs)


@pytest.fixture
def trained_like(tiny_cfg):
    model = randomised_model(tiny_cfg, seed=5).double()
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(4, 20, tiny_cfg.in_features, generator=g) < 0.35).double()
    lengths = torch.tensor([20, 13, 6, 17])
    with torch.no_grad():
        v_off, out_len = model(x, lengths)
    return model, x, lengths, v_off, out_len


def test_nir_graph_structure(trained_like):
    model, *_ = trained_like
    graph = to_nir(from_model(model))
    delays = [n for n in graph.nodes.values() if isinstance(n, nir.Delay)]
    lifs = [n for n in graph.nodes.values() if isinstance(n, nir.LIF)]
    assert len(lifs) == 2 and sum(isinstance(n, nir.LI) for n in graph.nodes.values()) == 1
    assert all(np.allclose(n.tau, 1.005 * 0.01) and np.allclose(n.r, 1.005) for n in lifs)
    # every used delay value has a node; each weight branch holds the synapses of its delay
    layer0 = model.hidden[0].delay
    used = set(layer0.integer_delays().flatten().tolist())
    got = {int(round(float(n.delay[0]) / 0.01)) for n in delays
           if n.delay.shape[0] == layer0.in_features}
    assert used <= got


@pytest.mark.usefixtures("kernel_backend")  # every CPU backend, Triton interpreted
@pytest.mark.parametrize("fmt", ["safetensors", "nir"])
def test_export_reload_is_exact(tmp_path, trained_like, fmt):
    model, x, lengths, v_off, out_len = trained_like
    run = save_run(tmp_path / "run", model.float(), class_names=list("wxyz"))
    model.double()
    net = from_run(run)
    path = export(net, tmp_path / f"model.{fmt}", fmt)
    back = spikedelay.load_exported(path)
    assert back.class_names == list("wxyz") and back.framing == net.framing
    assert back.max_delay == net.max_delay and back.tail == net.tail
    v1, s1, _ = run_utterances(net, x.numpy(), lengths.numpy())
    v2, s2, _ = run_utterances(back, x.numpy(), lengths.numpy())
    np.testing.assert_array_equal(v1, v2)  # bit for bit, NaN tails included
    np.testing.assert_array_equal(s1, s2)
    # and both are the offline model (float64 from the same float32 weights)
    m_off = summed_softmax(v_off, out_len).numpy()
    np.testing.assert_allclose(s2, m_off, atol=1e-10)
    np.testing.assert_array_equal(back.predict(x.numpy(), lengths.numpy()), m_off.argmax(1))


@pytest.mark.usefixtures("kernel_backend")  # every CPU backend, Triton interpreted
def test_reference_nir_simulator_reproduces_offline(tmp_path, trained_like):
    model, x, lengths, v_off, out_len = trained_like
    path = export(from_model(model), tmp_path / "m.nir", "nir")
    graph = nir.read(path)
    for b in range(len(lengths)):
        n = int(lengths[b])
        out = simulate_nir(graph, x[b, :n].numpy())
        assert out.shape[0] == int(out_len[b])
        np.testing.assert_allclose(out, v_off[b, :out.shape[0]].numpy(), atol=1e-9)
        p_nir = torch.softmax(torch.from_numpy(out), -1).sum(0).argmax()
        assert int(p_nir) == int(summed_softmax(v_off[b:b + 1], out_len[b:b + 1]).argmax())


def test_load_exported_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_exported(tmp_path / "missing.nir")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage that is not a file format")
    with pytest.raises(CheckpointError, match="not a spikedelay export"):
        load_exported(bad)


def test_failed_nir_write_keeps_the_file_already_there(tmp_path, trained_like, monkeypatch):
    """A NIR export that dies half-way (disk full, a kill) leaves the previous export intact
    and no temporary behind; before, ``nir.write`` truncated the target first."""
    model, x, lengths, *_ = trained_like
    net = from_model(model)
    path = export(net, tmp_path / "model.nir", "nir")
    before = path.read_bytes()

    def dies_half_way(filename, graph):
        with open(filename, "wb") as fh:
            fh.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nir, "write", dies_half_way)
    with pytest.raises(OSError):
        export(net, path, "nir")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nir"]
    np.testing.assert_array_equal(spikedelay.load_exported(path).predict(x.numpy(),
                                  lengths.numpy()), net.predict(x.numpy(), lengths.numpy()))
