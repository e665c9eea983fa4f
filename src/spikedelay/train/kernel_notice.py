"""The CPU kernels' start-up: a notice the first time on a machine, loading them in the background.

Why: numba compiles our CPU kernels on first use (~30 s) and caches them on disk; without a
word, the first run looks hung before its first step. Whether they are cached is read from
numba's own cache locations for the ``ops`` sources (in-tree ``__pycache__``,
``NUMBA_CACHE_DIR``, the user-wide cache), without importing or compiling any kernel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from spikedelay.config import RunConfig

COMPILE_NOTICE = "compiling CPU kernels (once per machine, ~30 s)…"


def kernel_sources() -> list[Path]:
    """The ``ops`` modules that define numba kernels."""
    ops = Path(__file__).resolve().parents[1] / "ops"
    return sorted(p for p in ops.rglob("*.py") if "numba.njit" in p.read_text())


def cache_dirs(source: Path) -> list[Path]:
    """Where numba may keep the compiled kernels of ``source``, in its lookup order."""
    from numba.core import config
    from numba.core.caching import _CacheLocator
    from numba.misc.appdirs import AppDirs

    sub = _CacheLocator.get_suitable_cache_subpath(str(source))
    dirs = [Path(config.CACHE_DIR) / sub] if config.CACHE_DIR else []
    dirs.append(source.parent / "__pycache__")
    dirs.append(Path(AppDirs(appname="numba", appauthor=False).user_cache_dir) / sub)
    return dirs


def kernels_cached() -> bool:
    """True when numba has a cache index for any of our kernel modules.

    (Any, not all: a kernel that a model never uses is never compiled, and the notice must not
    then appear on every run.)
    """
    try:
        return any(next(d.glob(f"{src.stem}.*.nbi"), None) is not None
                   for src in kernel_sources() for d in cache_dirs(src))
    except (ImportError, AttributeError, OSError):  # another numba layout: say nothing
        return True


def announce_kernel_compile(device_type: str, log: Callable[[str], None],
                            cached: bool | None = None) -> None:
    """Print :data:`COMPILE_NOTICE` before a CPU run's first step if nothing is cached yet.

    ``cached``: what :func:`preload_kernels` found before it started (it may have compiled some
    kernels since); ``None`` looks now.
    """
    if device_type == "cpu" and not (kernels_cached() if cached is None else cached):
        log(COMPILE_NOTICE)

PRELOAD_STEPS = 30  # time steps of the preload's tiny batch (longer than K//2 + 1: every path)


def preload_kernels(cfg: RunConfig, device: torch.device) -> bool:
    """Load (or compile) the CPU kernels this run's model uses, in a background thread.

    Why: each process spends ≈ 1.5 s loading numba and the cached kernels (≈ 30 s compiling
    them the first time) before its first step. A tiny copy of the run's model (same kinds and
    K, 4 features, no dropout) does one training forward/backward and one evaluation pass
    while the main thread loads the data, so only the kernels this model's paths use are
    loaded and the wait overlaps the data loading. The copy is built under a forked RNG and uses
    no random numbers afterwards: the run's results do not change. numba's compiler lock makes
    a first step that overtakes the thread wait for it. Errors are left to the real step.
    """
    if device.type != "cpu":
        return True
    cached = kernels_cached()
    from spikedelay.train.setup import build_model

    tiny = replace(cfg.model, in_features=4, hidden=[4] * len(cfg.model.hidden), n_classes=2,
                   dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        net = build_model(replace(cfg, model=tiny), device)
    thread = threading.Thread(target=_exercise, args=(net,), name="preload-kernels", daemon=True)
    thread.start()
    return cached


def _exercise(net: torch.nn.Module) -> None:
    try:
        dtype = next(net.parameters()).dtype
        steps = torch.arange(2 * PRELOAD_STEPS * 4, dtype=dtype).view(2, PRELOAD_STEPS, 4)
        x = (steps % 11 == 0).to(dtype)  # 9 % spikes (the sparse paths), no random numbers
        lengths = torch.tensor([PRELOAD_STEPS, PRELOAD_STEPS - 3])
        net.train()
        out, _ = net(x, lengths)
        out.sum().backward()
        net.eval()
        with torch.no_grad():
            net(x, lengths)
    except Exception:  # noqa: BLE001 - the real step reports it with its own context
        pass
