"""What a training checkpoint holds besides the model, and how a run starts from one.

The file format (and rebuilding a model from a file) is :mod:`spikedelay.checkpoint`, shared
with evaluation and deployment. This module is the training side: the contents of
``last.safetensors`` (weights, optimizers and schedules, RNG, epoch, best-so-far), putting them
back for an exact resume, and ``train.init_from`` (start from another run's weights).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spikedelay.checkpoint import load_checkpoint
from spikedelay.errors import CheckpointError
from spikedelay.train.distributed import World
from spikedelay.train.rng import restore_rng
from spikedelay.train.setup import Optimizers

Reporter = Callable[[str], None]


def training_state(common: dict[str, Any], model: torch.nn.Module, optim: Optimizers,
                   rng: dict[str, Any], epoch: int, best: dict[str, Any]) -> dict[str, Any]:
    """The contents of ``last.safetensors`` after ``epoch`` (1-based) epochs."""
    return {**common, "model": model.state_dict(), "optimizers": optim.state_dict(),
            "rng": rng, "epoch": epoch, "best": best}


def resume_error(path: Path, why: object) -> CheckpointError:
    return CheckpointError(
        f"{path}: cannot resume from it: {why}. Nothing was changed; to start this run over, "
        f"move {path.name} away (or pick another --out)."
    )


def read_training_state(path: Path) -> dict[str, Any]:
    """``last.safetensors`` read for a resume; damage is a :func:`resume_error`."""
    try:
        return load_checkpoint(path)
    except CheckpointError as err:
        raise resume_error(path, str(err).removeprefix(f"{path}: ")) from None


def restore_training_state(state: dict[str, Any], path: Path, model: torch.nn.Module,
                           optim: Optimizers, generator: torch.Generator, world: World | None,
                           device: torch.device, log: Reporter) -> tuple[int, dict[str, Any]]:
    """Load ``state`` into the run's objects; returns ``(epochs done, best-so-far record)``."""
    try:
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optimizers"])
        restore_rng(state["rng"], generator, world, device, log)
        return int(state["epoch"]), dict(state["best"])
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise resume_error(path, f"{type(err).__name__}: {err}") from None


def init_from_run(model: torch.nn.Module, source: str | Path) -> Path:
    """Copy the weights of another run (its ``best.safetensors``, or a checkpoint file) into
    ``model``; every tensor must exist with the same shape. Returns the file read."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "best.safetensors"
    if not path.exists():
        raise CheckpointError(f"train.init_from = {str(source)!r}: {path} not found "
                              "(give a run folder or a checkpoint file)")
    state = load_checkpoint(path)
    theirs = state.get("model")
    if not isinstance(theirs, dict):
        raise CheckpointError(f"{path}: holds no model weights")
    ours = model.state_dict()
    problems = [f"{k}: {tuple(theirs[k].shape)} there, {tuple(v.shape)} here"
                for k, v in ours.items() if k in theirs and tuple(theirs[k].shape) != v.shape]
    problems += [f"{k}: missing there" for k in ours if k not in theirs]
    problems += [f"{k}: not in this model" for k in theirs if k not in ours]
    if problems:
        shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise CheckpointError(f"--init-from {path}: its weights do not fit this model "
                              "(another architecture?):\n  " + "\n  ".join(shown))
    model.load_state_dict(theirs)
    return path
