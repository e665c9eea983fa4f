"""What a run is built from: device, determinism, model, optimisers and their schedules.

Split from :mod:`spikedelay.train.run` (which runs, checkpoints and resumes) so that benchmarks
and tests can build the exact training setup without a run folder.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

from spikedelay.config import RunConfig
from spikedelay.errors import ConfigError

TEST_SELECTED_LABEL = "test-selected (model chosen on the TEST set, as the reference code does)"


def protocol_label(protocol: str) -> str:
    return TEST_SELECTED_LABEL if protocol == "test-selected" else "validation (honest)"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r}: CUDA is not available on this machine")
    return torch.device(name)


def limit_numba_threads(n: int) -> None:
    """Give numba's thread pool (our CPU kernels) at most torch's thread count.

    Why: numba keeps its own pool, sized to every core, so ``train.threads=1`` or ``torchrun``
    ranks sharing a machine (``OMP_NUM_THREADS``) would still oversubscribe the cores. Before
    numba is imported this sets ``NUMBA_NUM_THREADS`` for it, so that it is not imported here.
    """
    numba = sys.modules.get("numba")
    if numba is None:
        current = os.environ.get("NUMBA_NUM_THREADS")
        if current is None or not current.isdigit() or int(current) > n:
            os.environ["NUMBA_NUM_THREADS"] = str(n)
    else:
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def set_determinism(cfg: RunConfig) -> None:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    limit_numba_threads(torch.get_num_threads())
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def build_model(cfg: RunConfig, device: torch.device):
    from spikedelay.model import DelaySNN

    return DelaySNN(cfg.model).to(device)


@dataclass
class Optimizers:
    """The paper's optimizers: weights (Adam + OneCycle per epoch), positions (Adam + cosine)."""

    weights: torch.optim.Adam
    schedule: torch.optim.lr_scheduler.OneCycleLR
    positions: torch.optim.Adam | None

    def all(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.weights, self.positions) if o is not None]

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.state_dict(),
            "schedule": self.schedule.state_dict(),
            "positions": None if self.positions is None else self.positions.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state["weights"])
        self.schedule.load_state_dict(state["schedule"])
        if self.positions is not None:
            self.positions.load_state_dict(state["positions"])


def build_optimizers(model, cfg: RunConfig) -> Optimizers:
    groups = model.param_groups()
    t = cfg.train
    weights = torch.optim.Adam(
        [
            {"params": groups["weights"], "weight_decay": t.weight_decay},
            {"params": groups["norm"] + groups.get("mask_scores", []), "weight_decay": 0.0},
        ],
        lr=t.lr,
    )
    # Stepped once per *epoch*, as the reference does.
    schedule = torch.optim.lr_scheduler.OneCycleLR(weights, max_lr=t.lr, total_steps=t.epochs)
    positions = None
    if groups["positions"]:
        positions = torch.optim.Adam(groups["positions"], lr=t.lr_positions, weight_decay=0.0)
    return Optimizers(weights, schedule, positions)
