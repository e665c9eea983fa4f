"""Export a trained network with its integer delays: NIR graphs and safetensors + JSON.

Both formats hold a :class:`~spikedelay.deploy.net.DeployedNet` (BatchNorm folded into the
weights and a bias, float64) and :func:`load_exported` rebuilds it bit for bit, so a reloaded
model streams exactly what the run folder streams.

**safetensors** (``FORMAT_ST``): tensors ``layers.{l}.weight`` (out, in, kc) float64,
``layers.{l}.delays`` (out, in, kc) int64 (steps), ``layers.{l}.bias`` (out,) float64; the JSON
header (key ``"spikedelay"``) holds the neuron type and constants per layer, ``max_delay``,
``tail``, ``framing`` (bin_ms, n_channels, channel_group, ...) and ``class_names``.

**NIR** (``nir`` 1.0): NIR's ``Delay`` node delays each *channel* by its own amount
(``y_i(t) = x_i(t - τ_i)``); our delays are per *synapse*. We expand them by **delay value**:
for every delay ``d`` used in layer ``l`` the graph has a branch ::

    source ─▶ Delay(τ = d·dt on every input channel) ─▶ Linear(W_d) ─▶ neuron of layer l

where ``W_d`` (out, in) keeps the weights of the synapses whose delay is ``d`` and zeros
elsewhere; the branches sum at the neuron node (NIR adds all edges into a node). The first
branch is an ``Affine`` carrying the folded BatchNorm shift as its bias (added after the delay,
so it is constant from t = 0). Trade-off: at most ``K`` Delay + ``K`` Linear nodes per layer
and ``K``× dense weight storage (zeros included: SHD recipe ≈ 2.7 M stored floats for 0.106 M
synapses), but the graph is plain NIR that any simulator with ``Delay`` runs, and the delays
stay exact. The alternative, one channel per synapse (fan-out matrix ▶ Delay of ``in·out``
channels ▶ weights), stores ``in²·out + out²·in`` floats (≈ 49 M for the SHD recipe); a
sparse-aware consumer can drop the zeros of ``W_d`` either way.

Neurons. Our discrete LIF ``H = V - V/τ + I`` is NIR's ``LIF`` ``τ_c dv/dt = (v_leak - v) + R·I``
integrated by forward Euler with step ``dt`` (the frame, ``bin_ms``) when
``τ_c = τ·dt`` (seconds), ``R = τ``, ``v_leak = 0``: ``v + dt/τ_c·(-v + τ·I) = v - v/τ + I``.
``v_threshold = ϑ`` (1.0), ``v_reset = 0`` (hard reset). NIR fires on ``v > v_threshold``,
we on ``v ≥ ϑ``: they differ only when a float lands exactly on the threshold. The readout is
NIR ``LI`` with the same mapping. ``Delay.delay`` is in seconds (``d·dt``). The graph metadata
records ``dt``, ``max_delay``, ``tail``, framing and class names; each neuron node's metadata
records its ``layer`` (1-based) for the end-of-input flush (see ``deploy/stream.py``): after the
input ends, run ``L·tail`` more steps and silence the neurons of layer ``l`` after ``l·tail``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np

from spikedelay.atomic import atomic_write
from spikedelay.deploy.export_file import read_export
from spikedelay.deploy.net import DeployedLayer, DeployedNet
from spikedelay.errors import CheckpointError, DependencyError

FORMAT_ST = "spikedelay-export/1"
FORMAT_NIR = "spikedelay-nir/1"
ExportFormat = Literal["nir", "safetensors"]


# -- safetensors ----------------------------------------------------------------------------------
def save_safetensors(net: DeployedNet, path: str | Path) -> Path:
    """Write ``net`` as safetensors + JSON header (see module docstring)."""
    from safetensors.numpy import save

    from spikedelay.atomic import atomic_write_bytes

    tensors: dict[str, np.ndarray] = {}
    layers = []
    for idx, layer in enumerate(net.layers):
        tensors[f"layers.{idx}.weight"] = np.ascontiguousarray(layer.weight, dtype=np.float64)
        tensors[f"layers.{idx}.delays"] = np.ascontiguousarray(layer.native_delays(),
                                                               dtype=np.int64)
        tensors[f"layers.{idx}.bias"] = np.ascontiguousarray(layer.bias, dtype=np.float64)
        if layer.active is not None:
            tensors[f"layers.{idx}.active"] = np.ascontiguousarray(layer.active, dtype=np.uint8)
        layers.append({"neuron": layer.neuron, "tau": layer.tau, "threshold": layer.threshold,
                       "in_features": layer.in_features, "out_features": layer.out_features,
                       "kind": layer.kind})
    header = {"format": FORMAT_ST, "max_delay": net.max_delay, "tail": net.tail,
              "layers": layers, "framing": net.framing, "class_names": net.class_names,
              "equations": "I = sum W x[t-D] + b; LIF: H = V - V/tau + I, S = H >= threshold, "
                           "V = H (1 - S); LI: V = V - V/tau + I (tau in steps of bin_ms)"}
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata={"spikedelay": json.dumps(header)}))
    return path


def load_safetensors(path: str | Path) -> DeployedNet:
    path = Path(path)
    header, tensors = read_export(path)
    if header.get("format") == "spikedelay-stepped/1":  # a recurrent or adaptive network
        from spikedelay.deploy.stepped_export import stepped_from_header

        return stepped_from_header(header, tensors, str(path))
    if header.get("format") != FORMAT_ST:
        raise CheckpointError(f"{path}: unknown export format {header.get('format')!r}")
    try:
        layers = []
        for i, spec in enumerate(header["layers"]):
            kind = spec.get("kind", "synaptic")
            weight = tensors[f"layers.{i}.weight"]
            delays = tensors[f"layers.{i}.delays"].astype(np.int64)
            if kind != "synaptic":
                delays = DeployedLayer.synapse_view(delays, kind, *weight.shape[:2])[:, :, None]
            active = tensors.get(f"layers.{i}.active")
            layers.append(DeployedLayer(
                weight=weight, delays=np.ascontiguousarray(delays),
                bias=tensors[f"layers.{i}.bias"], neuron=spec["neuron"], tau=float(spec["tau"]),
                threshold=float(spec["threshold"]), kind=kind,
                active=None if active is None else active.astype(bool)))
    except KeyError as err:
        raise CheckpointError(f"{path}: export is missing {err}") from None
    except ValueError as err:
        raise CheckpointError(f"{path}: damaged export: {err}") from None
    return DeployedNet(layers=layers, max_delay=int(header["max_delay"]),
                       tail=int(header["tail"]), framing=dict(header.get("framing") or {}),
                       class_names=list(header.get("class_names") or []))


# -- NIR ------------------------------------------------------------------------------------------
def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a dependency
        raise DependencyError("NIR export needs the `nir` package: pip install nir") from None
    return nir


def to_nir(net: DeployedNet):
    """The :class:`nir.NIRGraph` of ``net`` (per-delay branches, see module docstring)."""
    nir = _nir()
    dt = net.bin_ms / 1000.0
    nodes = {"input": nir.Input(input_type={"input": np.array([net.in_features])})}
    edges = []
    source = "input"
    for idx, layer in enumerate(net.layers, start=1):
        n_out = layer.out_features
        # dendritic: the bias cannot ride on the weights (it would be delayed): leak potential
        leak = _leak_for_bias(layer.bias, layer.tau) if layer.kind == "dendritic" else (
            np.zeros(n_out))
        if layer.neuron == "lif":
            neuron = nir.LIF(tau=np.full(n_out, layer.tau * dt), r=np.full(n_out, layer.tau),
                             v_leak=leak, v_threshold=np.full(n_out, layer.threshold),
                             v_reset=np.zeros(n_out), metadata={"layer": idx})
        else:
            neuron = nir.LI(tau=np.full(n_out, layer.tau * dt), r=np.full(n_out, layer.tau),
                            v_leak=leak, metadata={"layer": idx})
        if layer.kind == "synaptic":
            stack = layer.delay_stack(net.max_delay)
            used = [d for d in range(net.max_delay) if np.any(stack[d])] or [0]
        name = f"layer{idx}.{layer.neuron}"
        nodes[name] = neuron
        if layer.active is not None:
            neuron.metadata["inactive_delays"] = json.dumps(
                np.flatnonzero(~layer.active.reshape(-1)).tolist())
        if layer.kind != "synaptic":
            neuron.metadata["delay_kind"] = layer.kind
            edges += _channel_branch(nir, nodes, layer, idx, source, name, dt)
            source = name
            continue
        for k, d in enumerate(used):
            dname, wname = f"layer{idx}.delay{d}", f"layer{idx}.weight{d}"
            nodes[dname] = nir.Delay(delay=np.full(layer.in_features, d * dt))
            if k == 0:
                nodes[wname] = nir.Affine(weight=stack[d], bias=layer.bias.astype(np.float64))
            else:
                nodes[wname] = nir.Linear(weight=stack[d])
            edges += [(source, dname), (dname, wname), (wname, name)]
        source = name
    nodes["output"] = nir.Output(output_type={"output": np.array([net.n_classes])})
    edges.append((source, "output"))
    meta = {"format": FORMAT_NIR, "dt": dt, "max_delay": net.max_delay, "tail": net.tail,
            "framing": json.dumps(net.framing), "class_names": json.dumps(net.class_names),
            "threshold_rule": "spikedelay fires on v >= v_threshold"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _leak_for_bias(bias: np.ndarray, tau: float) -> np.ndarray:
    """``v_leak`` with ``v_leak / τ == bias`` exactly (float64): a constant input current ``b``
    is NIR's leak potential ``R·b = τ·b`` (``R = τ``, see module docstring); the nearest floats
    around ``τ·b`` are tried so that reading it back (``v_leak / r``) gives ``b`` bit for bit."""
    bias = np.asarray(bias, dtype=np.float64)
    leak = bias * tau
    for _ in range(4):
        off = leak / tau != bias
        if not off.any():
            break
        leak = np.where(off, np.nextafter(leak, np.where(leak / tau < bias, np.inf, -np.inf)),
                        leak)
    return leak


def _channel_branch(nir, nodes: dict, layer: DeployedLayer, idx: int, source: str, neuron: str,
                    dt: float) -> list[tuple[str, str]]:
    """Nodes and edges of an axonal or dendritic layer: one ``Delay`` node, its native form.

    axonal: ``source ▶ Delay(d_i·dt, in) ▶ Affine(W, b) ▶ neuron``; dendritic:
    ``source ▶ Linear(W) ▶ Delay(d_j·dt, out) ▶ neuron`` (bias as the neuron's leak).
    """
    dname, wname = f"layer{idx}.delay", f"layer{idx}.weight"
    w = np.ascontiguousarray(layer.weight[:, :, 0])
    nodes[dname] = nir.Delay(delay=layer.channel_delays.astype(np.float64) * dt,
                             metadata={"delay_kind": layer.kind})
    if layer.kind == "axonal":
        nodes[wname] = nir.Affine(weight=w, bias=layer.bias.astype(np.float64))
        return [(source, dname), (dname, wname), (wname, neuron)]
    nodes[wname] = nir.Linear(weight=w)
    return [(source, wname), (wname, dname), (dname, neuron)]


def _read_channel_layer(graph, incoming: dict, name: str, dt: float,
                        where: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(kind, weight (out, in), channel delays, bias) of an axonal/dendritic neuron's inputs."""
    node = graph.nodes[name]
    kind = node.metadata["delay_kind"]
    try:
        (first,) = incoming[name]
        (second,) = incoming[first]
    except (KeyError, ValueError):
        raise CheckpointError(f"{where}: {kind} layer {name} is not one delay and one weight "
                              "branch") from None
    dnode, wnode = (graph.nodes[second], graph.nodes[first]) if kind == "axonal" else (
        graph.nodes[first], graph.nodes[second])
    delays = np.rint(np.asarray(dnode.delay, dtype=np.float64) / dt).astype(np.int64)
    weight = np.asarray(wnode.weight, dtype=np.float64)
    if kind == "axonal":
        bias = np.asarray(wnode.bias, dtype=np.float64)
    else:
        bias = np.asarray(node.v_leak, dtype=np.float64) / np.asarray(node.r, dtype=np.float64)
    return kind, weight, delays, bias


def save_nir(net: DeployedNet, path: str | Path) -> Path:
    """Write the NIR graph of ``net`` atomically: a failed write keeps any file already there."""
    nir = _nir()
    graph = to_nir(net)
    return atomic_write(path, lambda tmp: nir.write(tmp, graph))


def layer_from_stack(stack: np.ndarray, bias: np.ndarray, neuron: str, tau: float,
                     threshold: float) -> DeployedLayer:
    """A layer whose :meth:`~DeployedLayer.delay_stack` is ``stack`` (K, out, in) exactly.

    Synapse ``(j, i)`` gets one copy per delay at which it has a non-zero weight (one copy for
    a model trained with kernel_count 1); missing copies get weight 0 at delay 0.
    """
    nz = stack != 0
    rank = np.cumsum(nz, axis=0) - 1
    kc = max(1, int(nz.sum(0).max()))
    n_out, n_in = stack.shape[1:]
    weight = np.zeros((n_out, n_in, kc))
    delays = np.zeros((n_out, n_in, kc), dtype=np.int64)
    jj, ii = np.meshgrid(np.arange(n_out), np.arange(n_in), indexing="ij")
    for c in range(kc):
        hit = nz & (rank == c)
        has = hit.any(0)
        d = hit.argmax(0)
        delays[:, :, c] = np.where(has, d, 0)
        weight[:, :, c] = np.where(has, stack[d, jj, ii], 0.0)
    return DeployedLayer(weight=weight, delays=delays, bias=np.asarray(bias, dtype=np.float64),
                         neuron=neuron, tau=float(tau), threshold=float(threshold))


def _read_active(node):
    """A function of the native delay shape giving the active-delay mask, or None (all)."""
    text = (node.metadata or {}).get("inactive_delays")
    if text is None:
        return None
    off = np.asarray(json.loads(str(text)), dtype=np.int64)

    def build(shape: tuple[int, ...]) -> np.ndarray:
        mask = np.ones(int(np.prod(shape)), dtype=bool)
        mask[off] = False
        return mask.reshape(shape)

    return build


def from_nir(graph, *, where: str = "NIR graph") -> DeployedNet:
    """Rebuild a :class:`DeployedNet` from a graph written by :func:`to_nir`."""
    nir = _nir()
    meta = graph.metadata or {}
    if meta.get("format") != FORMAT_NIR:
        raise CheckpointError(f"{where}: not written by spikedelay export "
                              f"(metadata format {meta.get('format')!r})")
    dt, k = float(meta["dt"]), int(meta["max_delay"])
    incoming: dict[str, list[str]] = {}
    for a, b in graph.edges:
        incoming.setdefault(b, []).append(a)
    neurons = sorted((n for n, node in graph.nodes.items() if isinstance(node, (nir.LIF, nir.LI))),
                     key=lambda n: int(graph.nodes[n].metadata["layer"]))
    layers = []
    for name in neurons:
        node = graph.nodes[name]
        n_out = int(np.asarray(node.r).shape[0])
        active = _read_active(node)
        if "delay_kind" in node.metadata:
            kind, weight, delays, bias = _read_channel_layer(graph, incoming, name, dt, where)
            view = DeployedLayer.synapse_view(delays, kind, *weight.shape)
            layers.append(DeployedLayer(
                weight=weight[:, :, None], delays=np.ascontiguousarray(view[:, :, None]),
                bias=bias, neuron="lif" if isinstance(node, nir.LIF) else "li",
                tau=float(np.asarray(node.r).flat[0]),
                threshold=float(np.asarray(node.v_threshold).flat[0])
                if isinstance(node, nir.LIF) else 0.0, kind=kind,
                active=None if active is None else active(delays.shape)))
            continue
        stack = None
        bias = np.zeros(n_out)
        for wname in incoming.get(name, []):
            wnode = graph.nodes[wname]
            (dname,) = incoming[wname]
            d = int(round(float(np.asarray(graph.nodes[dname].delay).flat[0]) / dt))
            weight = np.asarray(wnode.weight, dtype=np.float64)
            if stack is None:
                stack = np.zeros((k, n_out, weight.shape[1]))
            stack[d] = weight
            if isinstance(wnode, nir.Affine):
                bias = np.asarray(wnode.bias, dtype=np.float64)
        if stack is None:
            raise CheckpointError(f"{where}: neuron node {name} has no weight branches")
        tau = float(np.asarray(node.r).flat[0])  # R = τ in steps (see module docstring)
        if isinstance(node, nir.LIF):
            layer = layer_from_stack(stack, bias, "lif", tau,
                                     float(np.asarray(node.v_threshold).flat[0]))
        else:
            layer = layer_from_stack(stack, bias, "li", tau, 0.0)
        if active is not None:
            layer = dataclasses.replace(layer, active=active(layer.delays.shape))
        layers.append(layer)
    return DeployedNet(layers=layers, max_delay=k, tail=int(meta["tail"]),
                       framing=json.loads(str(meta.get("framing", "{}"))),
                       class_names=json.loads(str(meta.get("class_names", "[]"))))


# -- entry points ---------------------------------------------------------------------------------
def export(net: DeployedNet, path: str | Path, fmt: ExportFormat) -> Path:
    """Write ``net`` in ``fmt`` (``"nir"`` or ``"safetensors"``) to ``path``."""
    if fmt == "nir":
        return save_nir(net, path)
    if fmt == "safetensors":
        return save_safetensors(net, path)
    raise ValueError(f"unknown export format {fmt!r}: use 'nir' or 'safetensors'")


def load_exported(path: str | Path) -> DeployedNet:
    """Reload a file written by ``spikedelay export`` (NIR or safetensors, told by content).

    Returns the :class:`~spikedelay.deploy.net.DeployedNet`; ``net.predict(frames, lengths)``
    and ``net.stream()`` run it exactly as the run folder it came from.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: exported model not found")
    with path.open("rb") as fh:
        magic = fh.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":  # NIR files are HDF5
        nir = _nir()
        try:
            graph = nir.read(path)
        except Exception as err:
            raise CheckpointError(f"{path}: not a readable NIR file: {err}") from None
        if (graph.metadata or {}).get("format") == "spikedelay-stepped-nir/1":  # recurrent
            from spikedelay.deploy.stepped_nir import from_nir as stepped_from_nir

            return stepped_from_nir(graph, where=str(path))
        return from_nir(graph, where=str(path))
    return load_safetensors(path)
