"""spikedelay: spiking neural networks that learn their synaptic delays (DCLS-delays)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
