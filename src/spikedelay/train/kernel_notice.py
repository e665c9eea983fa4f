"""Saying on screen that the CPU kernels are being compiled, the first time on a machine.

Why: numba compiles our CPU kernels on first use (~30 s) and caches them on disk; without a
word, the first run looks hung before its first step. Whether they are cached is read from
numba's own cache locations for the ``ops`` sources (in-tree ``__pycache__``,
``NUMBA_CACHE_DIR``, the user-wide cache), without importing or compiling any kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


def announce_kernel_compile(device_type: str, log: Callable[[str], None]) -> None:
    """Print :data:`COMPILE_NOTICE` before a CPU run's first step if nothing is cached yet."""
    if device_type == "cpu" and not kernels_cached():
        log(COMPILE_NOTICE)
