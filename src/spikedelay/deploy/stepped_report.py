"""The report's cost and delay sections for recurrent and adaptive networks (``SteppedNet``).

Costs come from the frame-by-frame engine of :mod:`spikedelay.deploy.stepped_stream`, as for
feed-forward LIF networks: feed-forward SOPs are presynaptic events (non-zero input entries,
spikes of the layer below) × fan-out (non-zero synapses over every delay, copies merged);
recurrent SOPs are the layer's own valid spikes × recurrent fan-out (non-zero ``W_rec`` entries
of the presynaptic neuron). Dense MACs are ``out · in`` per step and delay value in use (a
dense product per tap), plus ``out · out`` for a recurrent layer. A one-tap dense count is not
given: the merged delay stack no longer says how many synapse copies a pair had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikedelay.deploy.stepped_stream import SteppedNet

NOT_COMPUTED = (
    "Not computed for recurrent or adaptive networks: the dense one-tap MAC count (the merged "
    "delay stack no longer says how many synapse copies a pair had) and per-kind delay tables "
    "of axonal or dendritic layers (these networks stream synaptic feed-forward delays only).")


@dataclass
class SteppedLayerCost:
    name: str
    in_features: int
    out_features: int
    synapses: int  # non-zero feed-forward (synapse, delay) pairs + non-zero recurrent weights
    spike_rate: float  # spikes per neuron per valid step (hidden layers); nan for the readout
    events: float  # feed-forward presynaptic events per sample
    sops: float  # feed-forward SOPs per sample
    rec_events: float  # the layer's own spikes reaching its recurrent synapses, per sample
    rec_sops: float  # recurrent SOPs per sample
    dense_macs: float  # per sample


def stepped_costs(net: SteppedNet, frames: np.ndarray,
                  lengths: np.ndarray) -> tuple[list[SteppedLayerCost], np.ndarray]:
    """Per-layer costs averaged over the samples (streamed, flushed) and their predictions."""
    n_layers = len(net.layers)
    totals = {k: np.zeros(n_layers) for k in ("events", "synops", "rec_events", "rec_synops",
                                              "spikes")}
    preds = np.zeros(len(lengths), dtype=np.int64)
    st = net.stream(1)
    for b, n in enumerate(lengths):
        st.reset()
        for t in range(int(n)):
            st.step(frames[b, t][None])
        st.finish()
        preds[b] = st.prediction
        for k, v in totals.items():
            v += getattr(st, k)[0]
    count = len(lengths)
    rows = []
    for i, layer in enumerate(net.layers):
        steps = lengths.astype(np.float64) + (i + 1) * net.tail  # this layer's valid steps
        n_in, n_out = int(layer.stack.shape[2]), layer.out_features
        taps = max(1, int(np.count_nonzero(layer.stack.any(axis=(1, 2)))))  # delays in use
        per_step = n_out * n_in * taps + (0 if layer.w_rec is None else n_out * n_out)
        hidden = layer.neuron != "li"
        rows.append(SteppedLayerCost(
            name=f"layer {i + 1} ({layer.neuron.upper()}"
                 + (", recurrent)" if layer.w_rec is not None else ")"),
            in_features=n_in, out_features=n_out,
            synapses=int(np.count_nonzero(layer.stack)
                         + (0 if layer.w_rec is None else np.count_nonzero(layer.w_rec))),
            spike_rate=float(totals["spikes"][i] / (n_out * steps.sum())) if hidden
            else float("nan"),
            events=totals["events"][i] / count, sops=totals["synops"][i] / count,
            rec_events=totals["rec_events"][i] / count,
            rec_sops=totals["rec_synops"][i] / count,
            dense_macs=per_step * float(steps.mean())))
    return rows, preds


def feedforward_delays(layer) -> np.ndarray:
    """One integer delay per non-zero feed-forward (synapse, delay) pair (copies merged)."""
    return np.nonzero(layer.stack)[0]


def recurrent_delays(layer) -> np.ndarray | None:
    """DelRec's per-presynaptic-neuron delays ``d_o`` (lag ``1 + d_o``); None if no recurrence."""
    return None if layer.rec_lags is None else layer.rec_lags - 1


def delay_lines(net: SteppedNet) -> list[str]:
    """Table rows: per layer, its feed-forward and (if any) recurrent integer delays."""
    def rng(d: np.ndarray) -> str:
        return f"{int(d.min())}–{int(d.max())} steps, mean {d.mean():.1f}" if d.size else "–"

    lines = []
    for i, layer in enumerate(net.layers, start=1):
        ff = feedforward_delays(layer)
        lines.append(f"| layer {i} | feed-forward (synaptic) | {ff.size:,} | {rng(ff)} |")
        rec = recurrent_delays(layer)
        if rec is not None:
            lines.append(f"| layer {i} | recurrent (per presynaptic neuron) | {rec.size:,} | "
                         f"{rng(rec)} |")
    return lines


def plot_delays(net: SteppedNet, path: Path) -> None:
    import matplotlib.pyplot as plt

    panels = []
    for i, layer in enumerate(net.layers, start=1):
        panels.append((f"layer {i}: feed-forward", feedforward_delays(layer)))
        rec = recurrent_delays(layer)
        if rec is not None:
            panels.append((f"layer {i}: recurrent", rec))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), squeeze=False)
    for ax, (title, d) in zip(axes[0], panels, strict=True):
        top = max(net.max_delay, int(d.max()) + 1 if d.size else 1)
        ax.hist(d, bins=np.arange(top + 1) - 0.5, color="C0")
        ax.set_title(f"{title} ({d.size:,})", fontsize=9)
        ax.set_xlabel(f"delay (steps of {net.bin_ms:g} ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cost_lines(costs: list[SteppedLayerCost], fmt) -> list[str]:
    """The cost table (``fmt`` formats a count) and its total line."""
    lines = ["| layer | in → out | synapses (incl. recurrent) | spike rate | events | SOPs | "
             "recurrent events | recurrent SOPs | dense MACs (delay taps in use + W_rec) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in costs:
        rate = "–" if c.spike_rate != c.spike_rate else f"{100 * c.spike_rate:.2f} %"
        rec = c.rec_sops or c.rec_events
        lines.append(f"| {c.name} | {c.in_features} → {c.out_features} | {c.synapses:,} | "
                     f"{rate} | {fmt(c.events)} | {fmt(c.sops)} | "
                     f"{fmt(c.rec_events) if rec else '–'} | {fmt(c.rec_sops) if rec else '–'} "
                     f"| {fmt(c.dense_macs)} |")
    total = sum(c.sops + c.rec_sops for c in costs)
    dense = sum(c.dense_macs for c in costs)
    lines += [f"| **total** | | | | | **{fmt(total)}** (feed-forward + recurrent) | | | "
              f"{fmt(dense)} |", "",
              f"Event-driven inference does {dense / max(total, 1):.0f}× fewer operations than "
              "the dense products (SOPs are additions; MACs multiply-adds). Rates are spikes "
              "per neuron per step over each layer's valid steps.", ""]
    return lines


def total_sops(costs: list[SteppedLayerCost]) -> float:
    """Feed-forward plus recurrent SOPs per sample, all layers."""
    return float(sum(c.sops + c.rec_sops for c in costs))


__all__ = ["NOT_COMPUTED", "SteppedLayerCost", "cost_lines", "delay_lines", "plot_delays",
           "stepped_costs", "total_sops"]
