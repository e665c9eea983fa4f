"""Scaling study: training-step time and peak memory as ``max_delay`` and the hidden size grow.

Both implementations of ``train_speed.py`` (the dcls + SpikingJelly reference and spikedelay),
each point timed in its own fresh subprocess (so peak RSS is per implementation and per point),
at the initial σ (K//2, every tap significant). Two sweeps:

* ``max_delay`` K ∈ {25, 50, 100, 250} at hidden 256 (2 layers),
* hidden ∈ {256, 512, 1024} at K = 25.

Usage::

    python benchmarks/scaling.py                      # full sweeps, batch 32 (slow: the reference)
    python benchmarks/scaling.py --quick              # K ∈ {25, 100}, hidden ∈ {256, 512}, batch 8
    python benchmarks/scaling.py --plot-only          # redraw docs/figures/scaling.png from JSON

Writes ``docs/figures/scaling.json`` (all numbers) and ``docs/figures/scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEED = Path(__file__).resolve().parent / "train_speed.py"
FIGURES = ROOT / "docs" / "figures"


def run_point(impl: str, batch: int, hidden: int, max_delay: int, frames: int, steps: int,
              warmup: int, timeout: float) -> dict:
    """One implementation at one size, in a fresh subprocess; ``{"error": ...}`` on failure."""
    sigma = float(max_delay // 2)
    cmd = [sys.executable, str(SPEED), "--worker", impl, "--sigma-value", str(sigma),
           "--batch", str(batch), "--hidden", str(hidden), "--max-delay", str(max_delay),
           "--frames", str(frames), "--steps", str(steps), "--warmup", str(warmup)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sweep(args) -> dict:
    if args.quick:
        ks, hiddens = [25, 100], [256, 512]
    else:
        ks, hiddens = [25, 50, 100, 250], [256, 512, 1024]
    points = [("max_delay", k, 256, k) for k in ks] + [("hidden", h, h, 25) for h in hiddens]
    rows = []
    for axis, value, hidden, k in points:
        row = {"axis": axis, "value": value, "hidden": hidden, "max_delay": k}
        for impl in ("reference", "spikedelay"):
            r = run_point(impl, args.batch, hidden, k, args.frames, args.steps, args.warmup,
                          args.timeout)
            row[impl] = r
            status = r.get("error") or (f"{r['step_s_median'] * 1e3:.0f} ms/step, "
                                        f"peak {r['peak_rss_mb']:.0f} MB")
            print(f"{axis}={value:<5} {impl:<10} {status}", flush=True)
        rows.append(row)
    return {"batch": args.batch, "frames": args.frames, "steps": args.steps,
            "warmup": args.warmup, "sigma": "initial (K//2)", "rows": rows}


def plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for col, axis in enumerate(("max_delay", "hidden")):
        rows = [r for r in result["rows"] if r["axis"] == axis]
        for impl, style in (("reference", "o-"), ("spikedelay", "s-")):
            pts = [(r["value"], r[impl]) for r in rows if "error" not in r[impl]]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            axes[0, col].plot(xs, [p[1]["step_s_median"] for p in pts], style, label=impl)
            axes[1, col].plot(xs, [p[1]["peak_rss_mb"] for p in pts], style, label=impl)
        for row in (0, 1):
            axes[row, col].set_xscale("log")
            axes[row, col].xaxis.set_minor_formatter(NullFormatter())
            axes[row, col].set_xticks([r["value"] for r in rows])
            axes[row, col].set_xticklabels([str(r["value"]) for r in rows])
            axes[row, col].grid(True, which="both", alpha=0.3)
            axes[row, col].legend()
        axes[0, col].set_yscale("log")
        axes[0, col].set_ylabel("s per training step")
        axes[1, col].set_ylabel("peak RSS (MB)")
        label = "max_delay K (hidden 256)" if axis == "max_delay" else "hidden size (K = 25)"
        axes[1, col].set_xlabel(label)
    fig.suptitle(f"Training step, batch {result['batch']}, {result['frames']} frames, "
                 f"2 hidden layers, σ = K//2, CPU")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per point")
    p.add_argument("--quick", action="store_true", help="small sweeps at batch 8")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--out", type=Path, default=FIGURES)
    args = p.parse_args(argv)
    if args.quick:
        args.batch = 8
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "scaling.json"
    if args.plot_only:
        result = json.loads(data.read_text())
    else:
        result = sweep(args)
        data.write_text(json.dumps(result, indent=1))
    plot(result, args.out / "scaling.png")
    print(f"wrote {data} and {args.out / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
