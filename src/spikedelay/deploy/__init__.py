"""Deployment: streaming inference with integer delays, NIR/safetensors export, reports.

``deploy`` never imports ``train``: run folders are read through :mod:`spikedelay.checkpoint`.
"""

from spikedelay.deploy.export import export, load_exported
from spikedelay.deploy.net import DeployedLayer, DeployedNet, from_model, from_run, load_deployable

__all__ = ["DeployedLayer", "DeployedNet", "export", "from_model", "from_run", "load_deployable",
           "load_exported"]
