"""What a run is built from: device, determinism, model, optimisers and their schedules.

Split from :mod:`spikedelay.train.run` (which runs, checkpoints and resumes) so that benchmarks
and tests can build the exact training setup without a run folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from spikedelay.config import RunConfig
from spikedelay.errors import ConfigError
from spikedelay.train.optim import Adam, OneCycleLR

TEST_SELECTED_LABEL = "test-selected (model chosen on the TEST set, as the reference code does)"


def protocol_label(protocol: str) -> str:
    return TEST_SELECTED_LABEL if protocol == "test-selected" else "validation (honest)"


def pick_device(name: str) -> torch.device:
    """``train.device`` as a device; also checks that ``SPIKEDELAY_KERNELS`` can run there."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r}: CUDA is not available on this machine")
    else:
        device = torch.device(name)
    check_kernel_backend(device)
    return device


def check_kernel_backend(device: torch.device) -> None:
    """A bad or impossible ``SPIKEDELAY_KERNELS`` as one clear error before training starts
    (not a traceback from inside the first step)."""
    from spikedelay.ops.dispatch import KernelBackendError, backend_name

    try:
        backend_name("lif", torch.empty(0, device=device))
    except KernelBackendError as err:
        raise ConfigError(str(err)) from None


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


@dataclass(frozen=True)
class TorchGlobals:
    """The process-wide torch (and numba) settings a run may change, captured to be put back.

    Why: ``train_run`` / ``eval_run`` are also called in-process (notebooks, tests, benchmarks);
    a run's thread count, deterministic mode or TF32 choice must not outlive it.
    """

    threads: int
    deterministic: bool
    deterministic_warn_only: bool
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    cudnn_allow_tf32: bool
    matmul_allow_tf32: bool
    numba_threads: int | None  # None: numba not imported yet
    environ: tuple[tuple[str, str | None], ...]

    _ENV = ("NUMBA_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")

    @classmethod
    def capture(cls) -> TorchGlobals:
        numba = sys.modules.get("numba")
        return cls(
            threads=torch.get_num_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            cudnn_deterministic=torch.backends.cudnn.deterministic,
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
            numba_threads=None if numba is None else numba.get_num_threads(),
            environ=tuple((k, os.environ.get(k)) for k in cls._ENV),
        )

    def restore(self) -> None:
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic,
                                           warn_only=self.deterministic_warn_only)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.allow_tf32 = self.cudnn_allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.matmul_allow_tf32
        numba = sys.modules.get("numba")
        if numba is not None and self.numba_threads is not None:
            numba.set_num_threads(self.numba_threads)
        for key, value in self.environ:
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def set_determinism(cfg: RunConfig) -> TorchGlobals:
    """Apply what the run asks for; return the settings from before (``.restore()`` them).

    Threads only when ``train.threads`` is set; deterministic algorithms only with
    ``train.deterministic``. Float32 stays float32 on CUDA unless ``train.allow_tf32`` (TF32 in
    matmuls and cuDNN convolutions, ≈5e-4 relative error in the DFT convolution, ~500× float32's:
    docs/gpu.md); cuDNN's autotuner (``benchmark``) is left as it is.
    """
    before = TorchGlobals.capture()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    limit_numba_threads(torch.get_num_threads())
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = cfg.train.allow_tf32
    torch.backends.cudnn.allow_tf32 = cfg.train.allow_tf32  # torch's own default is True
    return before


@contextmanager
def run_globals(cfg: RunConfig) -> Iterator[None]:
    """``set_determinism(cfg)`` for the duration of a ``with`` block, then the old settings."""
    before = set_determinism(cfg)
    try:
        yield
    finally:
        before.restore()


def build_model(cfg: RunConfig, device: torch.device):
    from spikedelay.model import DelaySNN

    return DelaySNN(cfg.model).to(device)


@dataclass
class Optimizers:
    """The paper's optimizers: weights (Adam + OneCycle per epoch), positions (Adam + cosine)."""

    weights: Adam
    schedule: OneCycleLR
    positions: Adam | None

    def all(self) -> list[Adam]:
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
    weights = Adam(
        [
            {"params": groups["weights"], "weight_decay": t.weight_decay},
            {"params": groups["norm"] + groups.get("mask_scores", []), "weight_decay": 0.0},
            *([{"params": groups["adaptive"], "weight_decay": 0.0}]
              if groups.get("adaptive") else []),
        ],
        lr=t.lr,
    )
    # Stepped once per *epoch*, as the reference does.
    schedule = OneCycleLR(weights, max_lr=t.lr, total_steps=t.epochs)
    # Positions and recurrent delays: one Adam, a group each with its own base lr ("base_lr",
    # which the per-epoch cosine of the run loop scales).
    delay_groups = [{"params": params, "lr": lr, "base_lr": lr, "weight_decay": 0.0}
                    for params, lr in ((groups["positions"], t.lr_positions),
                                       (groups.get("recurrent_delays", []),
                                        t.lr_recurrent_delays)) if params]
    positions = Adam(delay_groups) if delay_groups else None
    return Optimizers(weights, schedule, positions)
