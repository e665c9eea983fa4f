"""Deployment: streaming inference with integer delays, NIR/safetensors export, reports.

``deploy`` never imports ``train`` (except ``train/checkpoint.py`` to read run folders).
"""

from spikedelay.deploy.export import export, load_exported
from spikedelay.deploy.net import DeployedLayer, DeployedNet, from_model, from_run

__all__ = ["DeployedLayer", "DeployedNet", "export", "from_model", "from_run", "load_exported"]
