"""Save and reload a :class:`~spikedelay.deploy.stepped_stream.SteppedNet` (recurrent and
adaptive networks) as safetensors + JSON, bit for bit.

Tensors per layer ``l``: ``layers.{l}.stack`` (K, out, in) float64 feed-forward weights per
delay (BatchNorm and bias folded), ``layers.{l}.bias`` (out,), and where present
``layers.{l}.coeffs`` (4, out) α, β, a, b, ``layers.{l}.w_rec`` (out, out) post × pre,
``layers.{l}.rec_lags`` (out,) int64 (recurrent lag ``1 + d_o``). The JSON header (key
``"spikedelay"``, format ``FORMAT_STEPPED``) holds per layer the neuron, τ, threshold, reset and
``q``, plus ``max_delay``, ``tail``, framing, class names and the equations.
:func:`spikedelay.deploy.export.load_exported` recognises the format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spikedelay.deploy.export_file import read_export
from spikedelay.deploy.stepped_stream import SteppedLayer, SteppedNet
from spikedelay.errors import CheckpointError

FORMAT_STEPPED = "spikedelay-stepped/1"
EQUATIONS = (
    "I[t] = sum_d stack[d] x[t-d] + bias + W_rec y[t], y[t, o] = s[t - rec_lags[o], o]; "
    "lif: h = u - u/tau + I; adlif: w = beta w + a h[t-1] + b s[t-1], h = alpha u + "
    "(1-alpha)(I - w); se-adlif: h = alpha u + (1-alpha)(I - w); s = h >= threshold; "
    "u = h - threshold s (subtract) or h (1 - s) (hard); se-adlif then w = beta w + "
    "(1-beta) q (a u + b s); li (readout): u = u - u/tau + I"
)
_OPTIONAL = ("coeffs", "w_rec", "rec_lags")


def save_stepped(net: SteppedNet, path: str | Path) -> Path:
    """Write ``net`` (see module docstring); atomic."""
    from safetensors.numpy import save

    from spikedelay.atomic import atomic_write_bytes

    tensors: dict[str, np.ndarray] = {}
    specs = []
    for i, layer in enumerate(net.layers):
        tensors[f"layers.{i}.stack"] = np.ascontiguousarray(layer.stack, dtype=np.float64)
        tensors[f"layers.{i}.bias"] = np.ascontiguousarray(layer.bias, dtype=np.float64)
        for name in _OPTIONAL:
            value = getattr(layer, name)
            if value is not None:
                tensors[f"layers.{i}.{name}"] = np.ascontiguousarray(value)
        specs.append({"neuron": layer.neuron, "tau": layer.tau, "threshold": layer.threshold,
                      "subtract": layer.subtract, "q": layer.q})
    header = {"format": FORMAT_STEPPED, "max_delay": net.max_delay, "tail": net.tail,
              "layers": specs, "framing": net.framing, "class_names": net.class_names,
              "equations": EQUATIONS}
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata={"spikedelay": json.dumps(header)}))
    return path


def stepped_from_header(header: dict, tensors: dict[str, np.ndarray], where: str) -> SteppedNet:
    """Rebuild from an already-read header and tensors (``load_exported`` uses this)."""
    try:
        layers = []
        for i, spec in enumerate(header["layers"]):
            extra = {name: tensors.get(f"layers.{i}.{name}") for name in _OPTIONAL}
            if extra["rec_lags"] is not None:
                extra["rec_lags"] = extra["rec_lags"].astype(np.int64)
            layers.append(SteppedLayer(
                stack=tensors[f"layers.{i}.stack"], bias=tensors[f"layers.{i}.bias"],
                neuron=str(spec["neuron"]), tau=float(spec["tau"]),
                threshold=float(spec["threshold"]), subtract=bool(spec["subtract"]),
                q=float(spec["q"]), **extra))
        return SteppedNet(layers, int(header["max_delay"]), int(header["tail"]),
                          dict(header.get("framing") or {}),
                          list(header.get("class_names") or []))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: export is missing or has a bad {err}") from None


def load_stepped(path: str | Path) -> SteppedNet:
    """Reload a file written by :func:`save_stepped`."""
    header, tensors = read_export(path)
    if header.get("format") != FORMAT_STEPPED:
        raise CheckpointError(f"{path}: unknown export format {header.get('format')!r}")
    return stepped_from_header(header, tensors, str(path))


__all__ = ["FORMAT_STEPPED", "load_stepped", "save_stepped", "stepped_from_header"]
