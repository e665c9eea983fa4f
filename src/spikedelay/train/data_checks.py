"""Checks that a run's data exists and fits its model, before any work or any file.

Why before: a typo in ``--data`` or a model built for another data set should cost a second and
leave no run folder behind, not fail after minutes of framing or an epoch of training.
"""

from __future__ import annotations

from pathlib import Path

from spikedelay.config import RunConfig
from spikedelay.data.sets import DataSplits
from spikedelay.errors import ConfigError


def check_data_location(cfg: RunConfig) -> None:
    """The data must be findable before a run folder is made (its layout is checked later)."""
    d = cfg.data
    if d.root is None and d.dataset != "synthdigits":
        raise ConfigError(f"data.dataset = {d.dataset!r} has no default location: "
                          "pass --data DIR (the folder holding its files)")
    if d.dataset == "gsc" and d.root is not None:
        missing = [n for n in ("validation_list.txt", "testing_list.txt")
                   if not (Path(d.root).expanduser() / n).is_file()]
        if missing:
            raise ConfigError(f"data.root = {d.root!r}: not a Speech Commands v0.02 folder "
                              f"(missing {', '.join(missing)})")


def check_data_matches_model(cfg: RunConfig, splits: DataSplits) -> None:
    """The model's input width and class count are the data's."""
    problems = []
    if splits.in_features != cfg.model.in_features:
        problems.append(
            f"model.in_features = {cfg.model.in_features} but the data has {splits.in_features} "
            f"features per frame: use --set model.in_features={splits.in_features}"
        )
    n_classes = len(splits.class_names)
    if n_classes != cfg.model.n_classes:
        problems.append(
            f"model.n_classes = {cfg.model.n_classes} but the data has {n_classes} classes: "
            f"use --set model.n_classes={n_classes}"
        )
    if problems:
        raise ConfigError("config does not match the data:\n  " + "\n  ".join(problems))
