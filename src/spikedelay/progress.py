"""The one progress bar (tqdm, imported only when a bar is shown)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable, *, total: int, desc: str, unit: str, enabled: bool,
                 initial: int = 0, leave: bool = True) -> Any:
    """``iterable`` itself when ``enabled`` is false, else a tqdm bar over it."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, leave=leave,
                dynamic_ncols=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_counter(*, total: int, desc: str, unit: str, enabled: bool) -> Any:
    """A bar advanced by hand (``.update(n)``, ``.close()``), for work done in chunks;
    one that shows nothing when ``enabled`` is false."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
