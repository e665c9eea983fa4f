"""The Python entry points beside the CLI: ``load_config``, ``train``, ``evaluate``.

Why a module of its own: the CLI is argument parsing around exactly these calls, so a script or
a notebook gets the same runs, the same checks and the same numbers as ``spikedelay train`` /
``spikedelay eval`` (see docs/python.md), and ``train(..., out=None)`` trains without writing
anything at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikedelay.config import RunConfig, load_config, with_overrides
from spikedelay.errors import ConfigError

if TYPE_CHECKING:
    from spikedelay.model import DelaySNN

__all__ = ["evaluate", "load_config", "train"]


def train(cfg: RunConfig | str, *, data: str | Path | None = None, out: str | Path | None = None,
          progress: bool = False, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train a run and return its final metrics (``val_acc``, ``test_acc``, ``params``, ...).

    ``cfg`` is a :class:`RunConfig` or a recipe name; ``data`` a data folder (default: the
    recipe's, e.g. the shipped SynthDigits). With ``out`` a run folder (rerun to resume, as
    ``spikedelay train --out``); with ``out=None`` nothing is written — no folder, no
    checkpoint, no frame-cache entry — and the selected model is kept in memory for the final
    test. ``log=None`` keeps it quiet.
    """
    from spikedelay.train.run import train_run

    if isinstance(cfg, str):
        cfg = load_config(cfg)
    if data is not None:
        cfg = with_overrides(cfg, {"data.root": str(data)})
    return train_run(cfg, None if out is None else Path(out), progress=progress,
                     log=log if log is not None else _quiet)


def evaluate(run: str | Path | DelaySNN, cfg: RunConfig | None = None, *, split: str = "test",
             data: str | Path | None = None, checkpoint: str = "best.safetensors",
             device: str | None = None) -> dict[str, Any]:
    """Accuracy, loss and confusion matrix of a run folder's checkpoint on ``split``.

    The numbers are those of ``spikedelay eval RUNDIR --split SPLIT``: ``{split}_acc``,
    ``{split}_loss``, ``{split}_samples``, ``confusion[label][prediction]``, ``class_names``.
    A model (``DelaySNN``, e.g. from a loop of your own) can be given instead of a folder, with
    the ``cfg`` its data comes from; then nothing is written (not even frame-cache entries)
    and the model is moved to ``device`` (default ``cfg.train.device``).
    """
    from spikedelay.train.evaluation import eval_model, eval_run

    if isinstance(run, (str, Path)):
        return eval_run(Path(run), data_root=None if data is None else str(data),
                        checkpoint=checkpoint, split=split, device=device)  # type: ignore[arg-type]
    if cfg is None:
        raise ConfigError("evaluate(model): pass the RunConfig its data comes from as cfg")
    if data is not None:
        cfg = with_overrides(cfg, {"data.root": str(data)})
    return eval_model(run, cfg, split=split, device=device,  # type: ignore[arg-type]
                      cache_writes=False)


def _quiet(_: str) -> None:
    pass
