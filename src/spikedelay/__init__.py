"""spikedelay: spiking neural networks that learn their synaptic delays (DCLS-delays)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names, imported lazily so `import spikedelay` (e.g. for the CLI's --help) stays light.
_LAZY = {
    "DelayedLinear": "spikedelay.delays",
    "LIF": "spikedelay.neurons",
    "LI": "spikedelay.neurons",
    "DelaySNN": "spikedelay.model",
    "load_exported": "spikedelay.deploy.export",
}

__all__ = ["DelaySNN", "DelayedLinear", "LI", "LIF", "__version__", "load_exported"]

if TYPE_CHECKING:
    from spikedelay.delays import DelayedLinear
    from spikedelay.deploy.export import load_exported
    from spikedelay.model import DelaySNN
    from spikedelay.neurons import LI, LIF


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikedelay' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
