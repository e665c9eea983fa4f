"""Figures of a delay study (PNG, matplotlib's Agg canvas; no pyplot, so no global state).

Each function takes the dict :func:`spikedelay.train.compare.collect_results` returns and one
output path; :func:`make_figures` writes those that have data and returns their paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COLOURS = {"none": "#7f7f7f", "fixed": "#1f77b4", "learned": "#d62728"}
FIGURE_NAMES = ("val_curves", "delay_histograms", "sigma", "delays_changed")
LABELS = {"none": "no delays", "fixed": "fixed random delays", "learned": "learned delays"}


def _figure(width: float = 6.4, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, format="png", bbox_inches="tight")
    tmp.replace(path)
    return path


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _runs_of(results: dict[str, Any], variant: str) -> list[str]:
    return [f"{r['variant']}-s{r['seed']}" for r in results["runs"] if r["variant"] == variant]


def _series(history: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {row["epoch"]: row[key] for row in history if row.get(key) is not None}


def plot_val_curves(results: dict[str, Any], path: Path) -> Path:
    """Validation accuracy per epoch: mean over seeds, band = ± one (sample) std."""
    fig = _figure()
    ax = fig.add_subplot()
    for v in results["variants"]:
        curves = [_series(results["_histories"][n], "val_acc") for n in _runs_of(results, v)]
        epochs = sorted(set.intersection(*(set(c) for c in curves)))
        acc = 100 * np.array([[c[e] for e in epochs] for c in curves])
        mean = acc.mean(axis=0)
        std = acc.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
        colour = COLOURS.get(v)
        ax.plot(epochs, mean, color=colour, label=f"{LABELS.get(v, v)} (n={len(curves)})")
        ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
    _integer_epochs(ax)
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_delay_histograms(results: dict[str, Any], path: Path, variant: str = "learned") -> Path:
    """Integer delays at init and in the selected model, one panel per delay layer, seeds pooled
    (of ``variant``, a variant with learned delays)."""
    names = [n for n in _runs_of(results, variant) if n in results["_delays"]]
    n_layers = len(results["_delays"][names[0]][0])
    max_delay = results["budget"]["model"]["max_delay"]
    fig = _figure(3.2 * n_layers, 3.2)
    bins = np.arange(max_delay + 1) - 0.5
    for i in range(n_layers):
        ax = fig.add_subplot(1, n_layers, i + 1)
        stages = ((0, "#7f7f7f", "init"), (1, COLOURS["learned"], "selected model"))
        for stage, colour, label in stages:
            d = np.concatenate([results["_delays"][n][stage][i].flatten().numpy() for n in names])
            ax.hist(d, bins=bins, histtype="step", color=colour, linewidth=1.5, label=label,
                    density=True)
        ax.set_title("readout" if i == n_layers - 1 else f"hidden layer {i + 1}")
        ax.set_xlabel("delay (steps)")
        if i == 0:
            ax.set_ylabel("share of delays")
            ax.legend()
    return _save(fig, path)


def plot_sigma(results: dict[str, Any], path: Path) -> Path:
    """σ per epoch (the schedule is the same for every run; drawn from the first one)."""
    first = next(iter(results["_histories"].values()))
    sigma = _series(first, "sigma")
    fig = _figure(5.0, 3.2)
    ax = fig.add_subplot()
    ax.plot(list(sigma), list(sigma.values()), marker=".", color=COLOURS["learned"])
    _integer_epochs(ax)
    ax.set_ylabel("σ (steps); σ_eff = |σ| + 0.27")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_delays_changed(results: dict[str, Any], path: Path) -> Path:
    """Share of synapses whose integer delay changed, per layer and variant (mean ± std)."""
    variants = [v for v in results["variants"]
                if all(r["delays_changed_per_layer"] for r in results["runs"] if r["variant"] == v)]
    per_layer = {v: np.array([r["delays_changed_per_layer"] for r in results["runs"]
                              if r["variant"] == v]) for v in variants}
    n_layers = next(iter(per_layer.values())).shape[1]
    fig = _figure(5.0, 3.2)
    ax = fig.add_subplot()
    width = 0.8 / len(variants)
    x = np.arange(n_layers)
    for j, v in enumerate(variants):
        data = 100 * per_layer[v]
        err = data.std(axis=0, ddof=1) if len(data) > 1 else None
        ax.bar(x + j * width, data.mean(axis=0), width, yerr=err, color=COLOURS.get(v),
               label=LABELS.get(v, v), capsize=3)
    ax.set_xticks(x + width * (len(variants) - 1) / 2,
                  [f"hidden {i + 1}" for i in range(n_layers - 1)] + ["readout"])
    ax.set_ylabel("delays changed (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    return _save(fig, path)


def make_figures(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Every figure the study has data for, as ``{key: path}`` in reading order."""
    folder = Path(folder)
    figures = {"val_curves": plot_val_curves(results, folder / "val_curves.png")}
    modes = results.get("delay_modes") or {v: v for v in results["variants"]}
    learned = [v for v in results["variants"] if modes.get(v) == "learned"]
    if learned:
        figures["delay_histograms"] = plot_delay_histograms(
            results, folder / "delay_histograms.png",
            "learned" if "learned" in learned else learned[0])
        figures["sigma"] = plot_sigma(results, folder / "sigma.png")
    if any(r["delays_changed_per_layer"] for r in results["runs"]):
        figures["delays_changed"] = plot_delays_changed(results, folder / "delays_changed.png")
    for name in FIGURE_NAMES:  # a study rerun with fewer variants must not keep stale figures
        if name not in figures:
            (folder / f"{name}.png").unlink(missing_ok=True)
    return figures
