"""Errors that the CLI turns into one clear message and a non-zero exit.

Why a hierarchy: the CLI catches ``SpikeDelayError`` once and prints ``str(err)``; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class SpikeDelayError(Exception):
    """Base class for every user-facing error (bad input, bad config, missing dependency)."""


class DataError(SpikeDelayError):
    """A data file or folder is missing, truncated, corrupt or inconsistent."""


class ConfigError(SpikeDelayError):
    """A configuration is invalid; the message lists every problem at once."""


class CheckpointError(SpikeDelayError):
    """A checkpoint or exported model is missing, corrupt or incompatible."""


class DependencyError(SpikeDelayError):
    """An external program or optional package is missing; the message says how to install it."""


class TrainingDiverged(SpikeDelayError):
    """Loss or gradient became NaN/Inf; the message names the epoch and step."""


class OutputError(SpikeDelayError):
    """A result could not be written (disk full, read-only folder); what was there is kept."""
