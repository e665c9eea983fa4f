"""spikedelay: spiking neural networks that learn their synaptic delays (DCLS-delays)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names, imported lazily so `import spikedelay` (e.g. for the CLI's --help) stays light.
# `train` is the package spikedelay.train, which is callable as spikedelay.api.train (see there).
_LAZY = {
    "load_config": "spikedelay.config",
    "ModelConfig": "spikedelay.config",
    "RunConfig": "spikedelay.config",
    "evaluate": "spikedelay.api",
    "load_dataset": "spikedelay.data.loaders",
    "DelayedLinear": "spikedelay.delays",
    "ChannelDelay": "spikedelay.channel_delays",
    "ChannelDelayedLinear": "spikedelay.channel_delays",
    "delay_layer": "spikedelay.channel_delays",
    "DelayMask": "spikedelay.delay_masks",
    "parameter_counts": "spikedelay.model",
    "LIF": "spikedelay.neurons",
    "LI": "spikedelay.neurons",
    "DelaySNN": "spikedelay.model",
    "summed_softmax_loss": "spikedelay.train.loss",
    "train_epoch": "spikedelay.train.loop",
    "sigma_at": "spikedelay.train.schedule",
    "load_exported": "spikedelay.deploy.export",
}

__all__ = ["ChannelDelay", "ChannelDelayedLinear", "DelayMask", "DelaySNN", "DelayedLinear", "LI",
           "LIF", "ModelConfig", "RunConfig", "__version__", "delay_layer", "evaluate",
           "load_config", "load_dataset", "load_exported", "parameter_counts", "sigma_at",
           "summed_softmax_loss", "train", "train_epoch"]

if TYPE_CHECKING:
    from spikedelay.api import evaluate
    from spikedelay.api import train as train
    from spikedelay.channel_delays import ChannelDelay, ChannelDelayedLinear, delay_layer
    from spikedelay.config import ModelConfig, RunConfig, load_config
    from spikedelay.data.loaders import load_dataset
    from spikedelay.delay_masks import DelayMask
    from spikedelay.delays import DelayedLinear
    from spikedelay.deploy.export import load_exported
    from spikedelay.model import DelaySNN, parameter_counts
    from spikedelay.neurons import LI, LIF
    from spikedelay.train.loop import train_epoch
    from spikedelay.train.loss import summed_softmax_loss
    from spikedelay.train.schedule import sigma_at


def __getattr__(name: str) -> Any:
    import importlib

    if name == "train":
        return importlib.import_module("spikedelay.train")  # binds itself here on import
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikedelay' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"train"})
