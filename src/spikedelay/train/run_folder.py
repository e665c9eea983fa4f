"""Where a run's results go: a run folder on disk, or nowhere (``spikedelay.train(out=None)``).

Layout of a run folder::

    RUNDIR/config.yaml      the resolved config (what actually ran)
    RUNDIR/metrics.jsonl    one JSON line per epoch (and RUNDIR/tensorboard/ if installed)
    RUNDIR/last.safetensors every epoch: model, optimizers, schedulers, RNG (for resume)
    RUNDIR/best.safetensors the model selected on the validation set (or test, if asked)
    RUNDIR/metrics.json     final: val_acc, test_acc, params, epochs, protocol, ...

A run's *identity* is its config without where and how fast it runs (``train.device``,
``train.threads``, ``expected_params``) and with the data folder resolved, so the same command
on a GPU, with more threads, or with another spelling of the same data path resumes the same
run folder (and ``runs/<config>-<hash>`` names the same folder).

Every write is atomic; one that fails (disk full, read-only folder) is an :class:`OutputError`
and leaves the previous file as it was, so rerunning the command resumes.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml

from spikedelay.atomic import atomic_write_bytes, remove_stale_temporaries
from spikedelay.checkpoint import load_checkpoint, save_checkpoint
from spikedelay.config import RunConfig, build_config, dump_config
from spikedelay.errors import ConfigError, DataError, OutputError
from spikedelay.train.checkpoint import read_training_state
from spikedelay.train.distributed import World
from spikedelay.train.metrics_log import MetricsLog

RUN_FILES = ["last.safetensors", "best.safetensors", "metrics.jsonl", "metrics.json",
             "config.yaml"]
NOT_IDENTITY = {"train": ("device", "threads", "expected_params"),
                "data": ("expected_params",), "model": ("expected_params",)}

T = TypeVar("T")


# ------------------------------------------------------------------------------------- identity
def run_identity(cfg: RunConfig) -> dict[str, Any]:
    """The parts of ``cfg`` that make a run (see the module docstring)."""
    raw = copy.deepcopy(cfg.to_dict())
    raw.pop("expected_params", None)
    for section, keys in NOT_IDENTITY.items():
        for key in keys:
            raw.get(section, {}).pop(key, None)
    raw["data"]["root"] = _resolved_data_root(cfg)
    if raw["train"].get("init_from") is not None:
        raw["train"]["init_from"] = str(Path(raw["train"]["init_from"]).expanduser().resolve())
    return raw


def _resolved_data_root(cfg: RunConfig) -> str | None:
    """The data folder as an absolute path; the shipped SynthDigits release, however spelled,
    is ``None`` (its default)."""
    if cfg.data.root is None:
        return None
    root = Path(cfg.data.root).expanduser().resolve()
    if cfg.data.dataset == "synthdigits":
        from spikedelay.data.loaders import default_synthdigits_root

        try:
            if root == default_synthdigits_root().resolve():
                return None
        except DataError:  # no shipped release: nothing to compare with
            pass
    return str(root)


def run_hash(cfg: RunConfig) -> str:
    """8 hex digits of the run's identity: the ``<hash>`` of ``runs/<config>-<hash>``."""
    text = json.dumps(run_identity(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_run_dir(config_name: str, cfg: RunConfig) -> Path:
    """``runs/<config>-<hash>``: rerunning a command resumes its run."""
    return Path("runs") / f"{Path(config_name).stem}-{run_hash(cfg)}"


def _saved_identity(path: Path) -> dict[str, Any] | None:
    """The identity of the config saved in a run folder, ``None`` if it cannot be read."""
    try:
        raw = yaml.safe_load(path.read_text())
        root = raw["data"]["root"]
        raw["data"]["root"] = None  # validated without the folder; resolved below
        cfg = build_config(raw)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ConfigError):
        return None
    cfg.data.root = root
    return run_identity(cfg)


# ----------------------------------------------------------------------------------- the stores
class RunFolder:
    """A run folder on disk (only rank 0 writes under ``torchrun``)."""

    def __init__(self, path: Path, world: World | None = None):
        self.path = Path(path)
        self.world = world
        self.main = world is None or world.is_main
        self.last_path = self.path / "last.safetensors"
        self.best_path = self.path / "best.safetensors"

    def open(self, cfg: RunConfig) -> dict[str, Any] | None:
        """Make the folder and save the config; the final metrics if the run already ended."""
        self._write(self.path, lambda: self.path.mkdir(parents=True, exist_ok=True))
        saved = self.path / "config.yaml"
        if saved.exists() and _saved_identity(saved) != run_identity(cfg):
            raise ConfigError(
                f"{self.path} already holds a run with a different config (see {saved}); "
                "choose another --out, or delete that folder to start over"
            )
        final_path = self.path / "metrics.json"
        if final_path.exists():
            return json.loads(final_path.read_text()) if self.main else {}
        if self.world is not None:
            self.world.barrier()  # every rank has read config.yaml/metrics.json before rank 0
        if self.main:
            remove_stale_temporaries(self.path, RUN_FILES)
            self._write(saved, lambda: atomic_write_bytes(saved, dump_config(cfg).encode()))
        return None

    def describe(self) -> str:
        return str(self.path)

    def load_last(self) -> dict[str, Any] | None:
        return read_training_state(self.last_path) if self.last_path.exists() else None

    def metrics_log(self, keep_epochs: int) -> MetricsLog:
        return self._write(self.path / "metrics.jsonl",
                           lambda: MetricsLog(self.path, keep_epochs, enabled=self.main))

    def write_metrics(self, metrics: MetricsLog, row: dict[str, Any]) -> None:
        self._write(metrics.path, lambda: metrics.write(row))

    def save_best(self, state: dict[str, Any]) -> None:
        if self.main:
            self._write(self.best_path, lambda: save_checkpoint(self.best_path, state))

    def save_last(self, state: dict[str, Any]) -> None:
        if self.main:
            self._write(self.last_path, lambda: save_checkpoint(self.last_path, state))

    def kept_after_divergence(self, epoch: int) -> str:
        return (f"{self.last_path} (after epoch {epoch}) is unchanged" if epoch > 0
                else "no checkpoint had been written yet")

    def best_model_state(self) -> dict[str, torch.Tensor]:
        return load_checkpoint(self.best_path)["model"]

    def write_final(self, final: dict[str, Any]) -> None:
        path = self.path / "metrics.json"
        self._write(path, lambda: atomic_write_bytes(
            path, (json.dumps(final, indent=2) + "\n").encode()))

    def _write(self, path: Path, write: Callable[[], T]) -> T:
        try:
            return write()
        except OSError as err:
            why = err.strerror or str(err)
            raise OutputError(
                f"{path}: could not write it ({why}); the previous version, if any, is "
                "unchanged. Free some space (or make the folder writable, or pick another "
                "--out), then rerun the same command to resume."
            ) from None


class NoFolder:
    """Results kept in memory only: nothing is written (``spikedelay.train(out=None)``)."""

    main = True
    last_path = Path("last.safetensors")  # never read: there is nothing to resume from

    def __init__(self) -> None:
        self._best: dict[str, torch.Tensor] | None = None

    def open(self, cfg: RunConfig) -> None:
        return None

    def describe(self) -> str:
        return "(in memory)"

    def load_last(self) -> None:
        return None

    def metrics_log(self, keep_epochs: int) -> MetricsLog:
        return MetricsLog(Path("."), keep_epochs, enabled=False)

    def write_metrics(self, metrics: MetricsLog, row: dict[str, Any]) -> None:
        metrics.write(row)

    def save_best(self, state: dict[str, Any]) -> None:
        self._best = {k: v.detach().clone() for k, v in state["model"].items()}

    def save_last(self, state: dict[str, Any]) -> None:
        pass

    def kept_after_divergence(self, epoch: int) -> str:
        return "nothing was written (out=None)"

    def best_model_state(self) -> dict[str, torch.Tensor]:
        assert self._best is not None, "no epoch was evaluated"
        return self._best

    def write_final(self, final: dict[str, Any]) -> None:
        pass


RunStore = RunFolder | NoFolder
