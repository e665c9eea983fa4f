"""What a run shows while it trains: a bar with the latest numbers, or one line per epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from spikedelay.progress import progress_bar

Reporter = Callable[[str], None]


class EpochProgress:
    """Iterate over the epochs still to run; :meth:`show` reports one finished epoch.

    With ``enabled`` a tqdm bar over all ``epochs`` (starting at ``start``), else ``log``
    gets one line per epoch (``--quiet``, non-interactive runs).
    """

    def __init__(self, start: int, stop: int, epochs: int, *, enabled: bool, log: Reporter):
        self.epochs, self.enabled, self.log = epochs, enabled, log
        self.bar = progress_bar(range(start, stop), total=epochs, initial=start, desc="train",
                                unit="epoch", enabled=enabled)

    def __iter__(self) -> Iterator[int]:
        return iter(self.bar)

    def show(self, row: dict[str, Any], best: dict[str, Any]) -> None:
        if self.enabled and hasattr(self.bar, "set_postfix"):
            self.bar.set_postfix(postfix(row, best))
        elif not self.enabled:
            self.log(epoch_line(row, self.epochs))

    def close(self) -> None:
        if hasattr(self.bar, "close"):
            self.bar.close()


def postfix(row: dict[str, Any], best: dict[str, Any]) -> dict[str, str]:
    out = {"loss": f"{row['train_loss']:.3f}", "train": f"{row['train_acc']:.1%}"}
    if "val_acc" in row:
        out["val"] = f"{row['val_acc']:.1%}"
    out["best"] = f"{best['val_acc']:.1%}@{best['epoch']}"
    out["σ"] = f"{row['sigma']:.2f}"
    return out


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = f" val {row['val_acc']:.1%}" if "val_acc" in row else ""
    return (f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.3f} "
            f"train {row['train_acc']:.1%}{val} σ {row['sigma']:.2f} ({row['time_s']:.1f}s)")
