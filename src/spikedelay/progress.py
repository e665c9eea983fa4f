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
