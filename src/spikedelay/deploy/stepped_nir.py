"""NIR graphs of recurrent LIF networks (:class:`~spikedelay.deploy.stepped_stream.SteppedNet`).

Feed-forward edges as in :mod:`spikedelay.deploy.export` (one ``Delay`` + ``Linear`` branch per
delay value, the first an ``Affine`` with the folded bias). A recurrent layer adds a **cycle**::

    layer{l}.lif ─▶ layer{l}.rec_delay: Delay(τ_o = d_o·dt per channel) ─▶ layer{l}.rec_weight:
    Linear(W_rec) ─▶ layer{l}.lif

In discrete time a cycle delivers one step late (the spike of step ``t`` is read at ``t + 1``),
so the ``Delay`` carries ``d_o = lag_o - 1`` steps and neuron ``o``'s spike arrives at
``t + 1 + d_o``, DelRec's axonal recurrent delay. Neurons map to NIR ``LIF``/``LI`` as in
``export.py`` (``τ_c = τ·dt``, ``R = τ``, hard reset to 0). NIR has no adaptive LIF and no
subtractive reset: such a layer is one :class:`~spikedelay.errors.CheckpointError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spikedelay.atomic import atomic_write
from spikedelay.deploy.stepped_stream import SteppedLayer, SteppedNet
from spikedelay.errors import CheckpointError, DependencyError

FORMAT_STEPPED_NIR = "spikedelay-stepped-nir/1"


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a dependency
        raise DependencyError("NIR export needs the `nir` package: pip install nir") from None
    return nir


def to_nir(net: SteppedNet):
    """The :class:`nir.NIRGraph` of ``net``; adaptive neurons or subtractive resets raise."""
    for idx, layer in enumerate(net.layers, start=1):
        if layer.neuron in ("adlif", "se-adlif"):
            raise CheckpointError(
                f"layer {idx} has {layer.neuron} neurons, which NIR cannot express (it has no "
                "adaptive LIF primitive): export this network as safetensors instead")
        if layer.subtract:
            raise CheckpointError(
                f"layer {idx} resets by subtraction, which NIR's LIF (reset to v_reset) cannot "
                "express: export this network as safetensors instead")
    nir = _nir()
    dt = float(net.framing.get("bin_ms", 10.0)) / 1000.0
    n_in = int(net.layers[0].stack.shape[2])
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges: list[tuple[str, str]] = []
    source = "input"
    for idx, layer in enumerate(net.layers, start=1):
        n_out = layer.out_features
        meta = {"layer": idx}
        if layer.neuron == "lif":
            neuron = nir.LIF(tau=np.full(n_out, layer.tau * dt), r=np.full(n_out, layer.tau),
                             v_leak=np.zeros(n_out), v_threshold=np.full(n_out, layer.threshold),
                             v_reset=np.zeros(n_out), metadata=meta)
        else:
            neuron = nir.LI(tau=np.full(n_out, layer.tau * dt), r=np.full(n_out, layer.tau),
                            v_leak=np.zeros(n_out), metadata=meta)
        name = f"layer{idx}.{layer.neuron}"
        nodes[name] = neuron
        used = [d for d in range(net.max_delay) if np.any(layer.stack[d])] or [0]
        for k, d in enumerate(used):
            dname, wname = f"layer{idx}.delay{d}", f"layer{idx}.weight{d}"
            nodes[dname] = nir.Delay(delay=np.full(layer.stack.shape[2], d * dt))
            nodes[wname] = (nir.Affine(weight=layer.stack[d], bias=layer.bias) if k == 0
                            else nir.Linear(weight=layer.stack[d]))
            edges += [(source, dname), (dname, wname), (wname, name)]
        if layer.w_rec is not None:
            rd, rw = f"layer{idx}.rec_delay", f"layer{idx}.rec_weight"
            nodes[rd] = nir.Delay(delay=(layer.rec_lags - 1).astype(np.float64) * dt)
            nodes[rw] = nir.Linear(weight=layer.w_rec)
            edges += [(name, rd), (rd, rw), (rw, name)]
        source = name
    nodes["output"] = nir.Output(output_type={"output": np.array([net.layers[-1].out_features])})
    edges.append((source, "output"))
    meta = {"format": FORMAT_STEPPED_NIR, "dt": dt, "max_delay": net.max_delay,
            "tail": net.tail, "framing": json.dumps(net.framing),
            "class_names": json.dumps(net.class_names),
            "recurrence": "a cycle delivers one step late; rec_delay adds d_o steps",
            "threshold_rule": "spikedelay fires on v >= v_threshold"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def from_nir(graph, *, where: str = "NIR graph") -> SteppedNet:
    """Rebuild the :class:`SteppedNet` from a graph written by :func:`to_nir`."""
    nir = _nir()
    meta = graph.metadata or {}
    if meta.get("format") != FORMAT_STEPPED_NIR:
        raise CheckpointError(f"{where}: not a spikedelay recurrent NIR graph")
    try:
        dt = float(meta["dt"])
        k = int(meta["max_delay"])
        layers = []
        idx = 1
        while f"layer{idx}.lif" in graph.nodes or f"layer{idx}.li" in graph.nodes:
            kind = "lif" if f"layer{idx}.lif" in graph.nodes else "li"
            node = graph.nodes[f"layer{idx}.{kind}"]
            tau = float(np.asarray(node.r).flat[0])
            threshold = float(np.asarray(node.v_threshold).flat[0]) if kind == "lif" else 1.0
            stack = bias = None
            for d in range(k):
                wnode = graph.nodes.get(f"layer{idx}.weight{d}")
                if wnode is None:
                    continue
                w = np.asarray(wnode.weight, dtype=np.float64)
                if stack is None:
                    stack = np.zeros((k, *w.shape))
                stack[d] = w
                if isinstance(wnode, nir.Affine):
                    bias = np.asarray(wnode.bias, dtype=np.float64)
            w_rec = lags = None
            if f"layer{idx}.rec_weight" in graph.nodes:
                w_rec = np.asarray(graph.nodes[f"layer{idx}.rec_weight"].weight, np.float64)
                delay = np.asarray(graph.nodes[f"layer{idx}.rec_delay"].delay, np.float64)
                lags = 1 + np.rint(delay / dt).astype(np.int64)
            layers.append(SteppedLayer(stack, bias, kind, tau, threshold, w_rec=w_rec,
                                       rec_lags=lags))
            idx += 1
        return SteppedNet(layers, k, int(meta["tail"]), json.loads(meta["framing"]),
                          json.loads(meta["class_names"]))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{where}: malformed recurrent NIR graph: {err}") from None


def save_nir(net: SteppedNet, path: str | Path) -> Path:
    """Write the NIR graph of ``net`` atomically: a failed write keeps any file already there."""
    nir = _nir()
    graph = to_nir(net)
    return atomic_write(path, lambda tmp: nir.write(tmp, graph))


__all__ = ["FORMAT_STEPPED_NIR", "from_nir", "save_nir", "to_nir"]
