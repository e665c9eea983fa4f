"""Efficiency report of a run: spike rates, synaptic operations, delays, curves → report.md.

Costs per test sample, measured by the streaming engine (so they are what event-driven
inference actually executes):

* **SOPs** (synaptic operations): Σ over presynaptic events of their fan-out (non-zero
  synapses after merging copies). An input frame entry counts as one event whatever its count.
* **dense MACs (conv)**: what the offline dense delay convolution does, ``out · in · K`` per
  output step of each layer.
* **dense MACs (1 tap)**: a dense matrix product per step with one tap per synapse copy,
  ``out · in · kc`` per output step: the best a non-event-driven integer-delay engine can do.

Axonal and dendritic layers: their dense cost is the linear map plus the depthwise ``(C, K)``
shift, ``out · in + C · K`` per step (conv), and ``out · in`` with integer shifts (1 tap). Their
SOPs are counted by the same engine (each event reaches ``out`` synapses at the channel's delay).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikedelay.deploy.net import DeployedNet, deployable_of, load_run_model
from spikedelay.errors import SpikeDelayError
from spikedelay.history import read_history


@dataclass
class LayerCost:
    name: str
    in_features: int
    out_features: int
    synapses: int  # non-zero (synapse, delay) pairs
    spike_rate: float  # spikes per neuron per step (hidden layers); nan for the readout
    events: float  # presynaptic events per sample
    sops: float  # per sample
    dense_conv_macs: float  # per sample
    dense_tap_macs: float  # per sample


def layer_costs(net: DeployedNet, frames: np.ndarray, lengths: np.ndarray) -> list[LayerCost]:
    """Per-layer costs averaged over the given samples (streamed and flushed)."""
    from spikedelay.deploy.stream import run_utterances

    _, _, state = run_utterances(net, frames, lengths)
    n = len(lengths)
    events, sops = state.events.sum(0) / n, state.synops.sum(0) / n
    rows = []
    steps = lengths.astype(np.float64)
    for idx, layer in enumerate(net.layers):
        steps = steps + net.tail  # this layer's output steps per sample
        mean_steps = float(steps.mean())
        kc = layer.weight.shape[2]
        per_step_conv = layer.out_features * layer.in_features * net.max_delay
        per_step_tap = layer.out_features * layer.in_features * kc
        if layer.kind != "synaptic":  # linear map + depthwise (C, K) shift / an integer gather
            per_step_conv = layer.out_features * layer.in_features + (
                layer.channel_delays.size * net.max_delay)
        rate = float("nan")
        if idx + 1 < len(net.layers):  # spikes of this layer = events of the next
            rate = float(state.events[:, idx + 1].sum() / (layer.out_features * steps.sum()))
        rows.append(LayerCost(
            name=f"layer {idx + 1} ({layer.neuron.upper()})",
            in_features=layer.in_features, out_features=layer.out_features,
            synapses=int(np.count_nonzero(layer.delay_stack(net.max_delay))),
            spike_rate=rate, events=float(events[idx]), sops=float(sops[idx]),
            dense_conv_macs=per_step_conv * mean_steps,
            dense_tap_macs=per_step_tap * mean_steps,
        ))
    return rows


def _plot_curves(history: list[dict], path: Path) -> bool:
    import matplotlib.pyplot as plt

    if not history:
        return False
    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("train_loss", "val_loss"):
        pts = [(e, r[key]) for e, r in zip(ep, history, strict=True) if key in r]
        if pts:
            a.plot(*zip(*pts, strict=True), label=key)
    for key in ("train_acc", "val_acc"):
        pts = [(e, r[key]) for e, r in zip(ep, history, strict=True) if key in r]
        if pts:
            b.plot(*zip(*pts, strict=True), label=key)
    a.set_xlabel("epoch"), a.set_title("loss"), a.legend()
    b.set_xlabel("epoch"), b.set_title("accuracy"), b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def delay_values(layer) -> np.ndarray:
    """The integer delays a layer's histogram shows: one per active channel (axonal,
    dendritic), or one per active synapse copy with a non-zero weight (synaptic)."""
    if layer.kind != "synaptic":
        return layer.active_delays()
    keep = layer.weight != 0
    if layer.active is not None:
        keep &= layer.active
    return layer.delays[keep]


def delay_summary(net: DeployedNet) -> list[str]:
    """One line per layer: delay kind, active delays and their range (for the report)."""
    lines = []
    for idx, layer in enumerate(net.layers, start=1):
        d = layer.active_delays()
        total = layer.native_delays().size
        rng = f"{int(d.min())}–{int(d.max())} steps, mean {d.mean():.1f}" if d.size else "–"
        lines.append(f"| layer {idx} | {layer.kind} | {d.size:,} / {total:,} | {rng} |")
    return lines


def _plot_delays(net: DeployedNet, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(net.layers), figsize=(3.2 * len(net.layers), 2.8),
                             squeeze=False)
    bins = np.arange(net.max_delay + 1) - 0.5
    for ax, (idx, layer) in zip(axes[0], enumerate(net.layers), strict=True):
        d = delay_values(layer)
        ax.hist(d, bins=bins, color="C0")
        ax.set_title(f"layer {idx + 1}: {layer.kind} delays ({d.size:,})", fontsize=9)
        ax.set_xlabel(f"delay (steps of {net.bin_ms:g} ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_raster(x: np.ndarray, spikes: list[np.ndarray], v_out: np.ndarray, title: str,
                 path: Path) -> None:
    import matplotlib.pyplot as plt

    panels = [("input (counts)", x)] + [(f"layer {i + 1} spikes", s)
                                        for i, s in enumerate(spikes)]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(8, 1.8 * (len(panels) + 1)),
                             sharex=True)
    for ax, (name, arr) in zip(axes, panels, strict=False):
        t, c = np.nonzero(arr)
        ax.scatter(t, c, s=1.5, c="k", marker="|")
        ax.set_ylabel(name, fontsize=8)
    axes[-1].plot(v_out)
    axes[-1].set_ylabel("readout V", fontsize=8)
    axes[-1].set_xlabel("step")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(x: float) -> str:
    if x != x:
        return "–"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.3g}"


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts, ``[label, prediction]``."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
    return out


def confusion_lines(labels: np.ndarray, preds: np.ndarray, class_names: list[str]) -> list[str]:
    """The report's confusion-matrix section (rows: label, columns: prediction)."""
    counts = confusion_matrix(labels, preds, len(class_names))
    head = "| label \\ prediction | " + " | ".join(f"{k}" for k in range(len(class_names)))
    lines = ["## Confusion matrix (streamed test samples)", "",
             "Rows are the true class, columns the predicted class (by index; names in the "
             "first column); the last column is the class's recall.", "",
             head + " | recall |", "|---" * (len(class_names) + 2) + "|"]
    for k, name in enumerate(class_names):
        row = counts[k]
        recall = f"{100 * row[k] / row.sum():.0f} %" if row.sum() else "–"
        lines.append(f"| {k} {name} | " + " | ".join(str(int(c)) if c else "·" for c in row)
                     + f" | {recall} |")
    return [*lines, ""]


def write_report(run_dir: str | Path, *, data_root: str | None = None, samples: int = 100,
                 checkpoint: str = "best.safetensors") -> Path:
    """Write ``RUNDIR/report.md`` and its PNGs (``RUNDIR/report/``); returns the .md path.

    The cost sections stream the first ``samples`` test samples (``data_root`` overrides the
    data folder saved in the run's config); without data they are left out, with a note.
    """
    import matplotlib

    matplotlib.use("Agg")
    from spikedelay.checkpoint import checkpoint_config
    from spikedelay.deploy import stepped_report, stepped_stream

    run_dir = Path(run_dir)
    model, state = load_run_model(run_dir, checkpoint)
    net = deployable_of(model, state, str(run_dir))
    stepped = isinstance(net, stepped_stream.SteppedNet)  # recurrent or adaptive
    fig_dir = run_dir / "report"
    fig_dir.mkdir(parents=True, exist_ok=True)
    # validated without the data folder, which may have moved (checked when the data loads)
    cfg = checkpoint_config(state, run_dir / checkpoint, check_data=False)
    if data_root is not None:
        cfg.data.root = data_root
    lines = [f"# Report: `{run_dir.name}`", ""]
    final = {}
    if (run_dir / "metrics.json").is_file():
        final = json.loads((run_dir / "metrics.json").read_text())
    params = model.num_parameters()
    lines += [
        f"- checkpoint: `{checkpoint}` (epoch {state.get('epoch')}), delays: "
        f"{cfg.model.delays}, K = {cfg.model.max_delay} ({cfg.model.max_delay * net.bin_ms:g} "
        f"ms), padding: {cfg.model.padding}",
        f"- delay kind: {cfg.model.delay_kind}, interpolation: {cfg.model.interpolation}, "
        f"delay sparsity: {cfg.model.delay_sparsity:g} ({cfg.model.delay_mask} mask)",
        f"- trainable parameters: {params:,} ({model.num_delays():,} delays, "
        f"{model.num_active_delays():,} active); deployed synapses (non-zero, after merging "
        f"copies): {net.synapse_count():,}",
    ]
    for key in ("val_acc", "test_acc"):
        if final.get(key) is not None:
            lines.append(f"- {key.replace('_', ' ')}: {100 * final[key]:.2f} %")
    if stepped:
        lines += [f"- neurons: {cfg.model.neuron} (reset: {cfg.model.reset}), recurrence: "
                  f"{cfg.model.recurrent}; measured by the frame-by-frame engine of recurrent "
                  "and adaptive networks", "", stepped_report.NOT_COMPUTED]
    lines.append("")
    if _plot_curves(read_history(run_dir), fig_dir / "curves.png"):
        lines += ["## Training curves", "", "![training curves](report/curves.png)", ""]
    if stepped:
        stepped_report.plot_delays(net, fig_dir / "delays.png")
        lines += ["## Delays (integer; feed-forward: one per non-zero synapse and delay, "
                  "recurrent: one per presynaptic neuron, delivered at lag 1 + d)", "",
                  "| layer | connections | delays | range |", "|---|---|---|---|",
                  *stepped_report.delay_lines(net), "",
                  "![delay histograms](report/delays.png)", ""]
    else:
        _plot_delays(net, fig_dir / "delays.png")
        kind = cfg.model.delay_kind
        what = ("per synapse with a non-zero weight" if kind == "synaptic" else
                f"one per {'input' if kind == 'axonal' else 'output'} channel")
        lines += [f"## Learned delays ({kind}: integer, {what}; switched-off delays left out)",
                  "", "| layer | kind | active delays | active delays' range |",
                  "|---|---|---|---|", *delay_summary(net), "",
                  "![delay histograms](report/delays.png)", ""]

    frames = lengths = labels = None
    try:
        from spikedelay.data.loaders import load_dataset

        if cfg.data.root is not None and not Path(cfg.data.root).expanduser().is_dir():
            raise SpikeDelayError(f"data folder {cfg.data.root} does not exist")
        splits = load_dataset(cfg.data, seed=cfg.train.seed, protocol=cfg.train.protocol,
                              progress=False)
        test = splits.test.subset(np.arange(min(samples, len(splits.test))))
        frames = test.frames.float().numpy()
        lengths, labels = test.lengths.numpy(), test.labels.numpy()
        if labels.size and int(labels.max()) >= net.n_classes:
            raise SpikeDelayError(f"its labels go up to {int(labels.max())}, the model has "
                                  f"{net.n_classes} classes: not this run's data")
        if frames.shape[2] != net.in_features:
            raise SpikeDelayError(f"its frames have {frames.shape[2]} features, the model "
                                  f"takes {net.in_features}")
    except SpikeDelayError as err:
        frames = None
        lines += ["## Costs", "", f"Not computed: the test data could not be loaded ({err}). "
                  "Pass `--data DIR`.", ""]
    if frames is not None and stepped:
        costs, preds = stepped_report.stepped_costs(net, frames, lengths)
        lines += [f"## Costs per test sample (mean over {len(lengths)} samples, "
                  f"{lengths.mean():.1f} input frames)", "",
                  f"Streamed accuracy on these samples: {100 * np.mean(preds == labels):.2f} %.",
                  "", *stepped_report.cost_lines(costs, _fmt)]
    elif frames is not None:
        costs = layer_costs(net, frames, lengths)
        preds = net.predict(frames, lengths)
        lines += [f"## Costs per test sample (mean over {len(lengths)} samples, "
                  f"{lengths.mean():.1f} input frames)", "",
                  f"Streamed accuracy on these samples: {100 * np.mean(preds == labels):.2f} %.",
                  "", "| layer | in → out | synapses | spike rate | events | SOPs | "
                  "dense MACs (conv, K taps) | dense MACs (1 tap) |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in costs:
            rate = "–" if c.spike_rate != c.spike_rate else f"{100 * c.spike_rate:.2f} %"
            lines.append(f"| {c.name} | {c.in_features} → {c.out_features} | {c.synapses:,} | "
                         f"{rate} | {_fmt(c.events)} | {_fmt(c.sops)} | "
                         f"{_fmt(c.dense_conv_macs)} | {_fmt(c.dense_tap_macs)} |")
        tot = [sum(getattr(c, k) for c in costs)
               for k in ("sops", "dense_conv_macs", "dense_tap_macs")]
        lines += [f"| **total** | | | | | **{_fmt(tot[0])}** | {_fmt(tot[1])} | "
                  f"{_fmt(tot[2])} |", "",
                  f"Event-driven inference does {tot[1] / max(tot[0], 1):.0f}× fewer operations "
                  f"than the dense convolution and {tot[2] / max(tot[0], 1):.1f}× fewer than a "
                  "dense one-tap product (SOPs are additions; MACs multiply-adds). Rates are "
                  "spikes per neuron per step over each layer's valid steps.", ""]
    if frames is not None:
        lines += confusion_lines(labels, preds, net.class_names or
                                 [str(k) for k in range(net.n_classes)])
        import torch

        with torch.no_grad():
            n = int(lengths[0])
            rec = model.forward_recording(torch.from_numpy(frames[:1, :n]),
                                          torch.tensor([n]))
        name = net.class_names[int(labels[0])] if net.class_names else str(labels[0])
        _plot_raster(frames[0, :n], [s[0].numpy() for s in rec.spikes], rec.v_out[0].numpy(),
                     f"test sample 0 (label {name})", fig_dir / "raster.png")
        lines += ["## One sample through the layers", "", "![raster](report/raster.png)", ""]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines))
    return out
