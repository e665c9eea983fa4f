"""The final evaluation of a run (the test set, once) and re-evaluating a finished run.

Both go through :func:`~spikedelay.train.loop.evaluate` with the run's own batch size and loss,
so ``spikedelay eval`` reproduces exactly what training reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from spikedelay.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
from spikedelay.config import RunConfig
from spikedelay.data.sets import DataSplits, FramedSet
from spikedelay.errors import CheckpointError, ConfigError
from spikedelay.train.data_checks import check_data_matches_model
from spikedelay.train.loop import EpochStats, evaluate
from spikedelay.train.setup import build_model, pick_device, protocol_label, run_globals

Split = Literal["val", "test"]


def evaluate_set(model: torch.nn.Module, dataset: FramedSet, cfg: RunConfig,
                 device: torch.device, *, n_classes: int | None = None) -> EpochStats:
    """Loss and accuracy of ``model`` on a whole split, in the run's batches."""
    batches = dataset.to(device).batches(cfg.train.batch_size, shuffle=False)
    return evaluate(model, batches, masked_loss=cfg.train.masked_loss, n_classes=n_classes)


def final_metrics(cfg: RunConfig, splits: DataSplits, device: torch.device,
                  best_model: dict[str, torch.Tensor], best: dict[str, Any],
                  history: list[dict[str, Any]], *, train_time_s: float) -> dict[str, Any]:
    """Evaluate the selected model on the test set, once; the run's ``metrics.json``."""
    model = build_model(cfg, device)
    model.load_state_dict(best_model)
    test = evaluate_set(model, splits.test, cfg, device)
    last = history[-1] if history else {}
    return {
        "protocol": cfg.train.protocol,
        "protocol_label": protocol_label(cfg.train.protocol),
        "val_acc": best["val_acc"],
        "test_acc": test.accuracy,
        "test_loss": test.loss,
        "best_epoch": best["epoch"],
        "epochs": cfg.train.epochs,
        "params": model.num_parameters(),
        "delays": cfg.model.delays,
        "last_train_acc": last.get("train_acc"),
        "last_val_acc": last.get("val_acc"),
        "train_samples": len(splits.train),
        "val_samples": len(splits.val),
        "test_samples": len(splits.test),
        "train_time_s": train_time_s,
        "seed": cfg.train.seed,
        "checkpoint": "best.safetensors",
    }


def eval_run(run_dir: Path, *, data_root: str | None = None, progress: bool = False,
             checkpoint: str = "best.safetensors", split: Split = "test",
             device: str | None = None) -> dict[str, Any]:
    """Evaluate a run's checkpoint on its ``test`` (or ``val``) split, exactly as training did.

    Returns accuracy, loss, sample count and ``confusion[label][prediction]`` with the
    ``class_names`` it is indexed by. ``val`` is the split the model was selected on (the test
    set itself under ``train.protocol=test-selected``).
    """
    if split not in ("val", "test"):
        raise ConfigError(f"split {split!r}: use 'val' or 'test'")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    path = run_dir / checkpoint
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path, data_root=data_root)
    result = eval_model(model_from_checkpoint(state, path, cfg), cfg, split=split,
                        device=device, progress=progress)
    return {**result, "checkpoint": str(path), "epoch": state.get("epoch")}


def eval_model(model: torch.nn.Module, cfg: RunConfig, *, split: Split = "test",
               device: str | None = None, progress: bool = False,
               cache_writes: bool = True) -> dict[str, Any]:
    """:func:`eval_run` for a model in memory, on the data of ``cfg`` (``device`` overrides
    ``cfg.train.device``; ``cache_writes=False`` leaves the frame cache as it is)."""
    from spikedelay.data.loaders import load_dataset

    if split not in ("val", "test"):
        raise ConfigError(f"split {split!r}: use 'val' or 'test'")
    with run_globals(cfg):  # the run's settings, and torch's previous ones afterwards
        where = pick_device(device or cfg.train.device)
        splits = load_dataset(cfg.data, seed=cfg.train.seed, protocol=cfg.train.protocol,
                              progress=progress, cache_writes=cache_writes)
        check_data_matches_model(cfg, splits)
        dataset = splits.test if split == "test" else splits.val
        stats = evaluate_set(model.to(where), dataset, cfg, where,
                             n_classes=len(splits.class_names))
    return {f"{split}_acc": stats.accuracy, f"{split}_loss": stats.loss,
            f"{split}_samples": stats.samples, "split": split,
            "protocol": protocol_label(cfg.train.protocol),
            "class_names": list(splits.class_names), "confusion": stats.confusion}
