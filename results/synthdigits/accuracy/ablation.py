"""Skeleton of the issue-16 accuracy ablation on SynthDigits-900 (item 3): each change added
one at a time on top of the previous rows, 3 seeds each, validation and test.

NOT RUN YET: the rows below are a starting point (their augmentation parameters are untuned
guesses), to be chosen **on validation only** and run on a quiet machine. Each row is a list
of ``--set`` overrides added to everything above it; rows for the model kinds (delay kinds,
recurrent, adaptive) are to be added when their config keys land.

Usage (repository root)::

    python results/synthdigits/accuracy/ablation.py --dry-run      # print the commands
    python results/synthdigits/accuracy/ablation.py                # run (resumable) + table
    python results/synthdigits/accuracy/ablation.py --rows base,+time_shift --seeds 1

Every run is an ordinary ``spikedelay train`` run folder under ``runs/<row>-s<seed>/``;
rerunning resumes unfinished runs and only reads finished ones. The table goes to
``results.md`` next to this script, with the command that made it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DATA = "../shared/data/synthdigits-900"

# The protocol every row shares (the split study recommends more validation speakers; the
# choice between split designs waits for its own runs, split_study/report.md §3).
BASE = ["model.hidden=[128, 128]", "data.val_fraction=0.2"]

# (row name, overrides added by this row, what it tests)
ROWS: list[tuple[str, list[str], str]] = [
    ("base", [], "quick recipe, learned delays, 2 x 128, 30 epochs"),
    ("+time_shift", ["data.augment=[{name: time_shift, max_shift: 5, p: 0.5}]"],
     "DelRec's per-channel time shifts (5 frames; DelRec used 100 on SHD)"),
    ("+class_blend", ["data.augment=[{name: time_shift, max_shift: 5, p: 0.5}, "
                      "{name: class_blend, keep: 0.5, p: 0.33}]"],
     "DelRec's same-class blends"),
    ("+event_drop", ["data.augment=[{name: time_shift, max_shift: 5, p: 0.5}, "
                     "{name: class_blend, keep: 0.5, p: 0.33}, "
                     "{name: event_drop, rate: [0.0, 0.3], p: 0.5}]"],
     "binomial event drop"),
    ("+stretch", ["data.augment=[{name: time_shift, max_shift: 5, p: 0.5}, "
                  "{name: class_blend, keep: 0.5, p: 0.33}, "
                  "{name: event_drop, rate: [0.0, 0.3], p: 0.5}, "
                  "{name: time_stretch, max_factor: 1.15, p: 0.5}, "
                  "{name: channel_shift, max_shift: 2.0, p: 0.5}]"],
     "speed and pitch/formant changes"),
    ("+width", ["model.hidden=[256, 256]"], "the reference's width"),
    ("+epochs", ["train.epochs=60"], "twice the epochs"),
]


def row_overrides(upto: str) -> list[str]:
    """BASE plus every row's overrides up to and including ``upto`` (a later value of the
    same key replaces the earlier one)."""
    merged: dict[str, str] = {}
    for o in BASE:
        merged[o.partition("=")[0]] = o
    for name, extra, _ in ROWS:
        for o in extra:
            merged.pop(o.partition("=")[0], None)
            merged[o.partition("=")[0]] = o
        if name == upto:
            return list(merged.values())
    raise SystemExit(f"unknown row {upto!r}: use one of {', '.join(r[0] for r in ROWS)}")


def command(row: str, seed: int) -> list[str]:
    args = ["spikedelay", "train", "--config", "quick", "--data", DATA, "--quiet",
            "--out", str((HERE / "runs" / f"{row}-s{seed}").relative_to(ROOT))]
    for o in row_overrides(row) + [f"train.seed={seed}"]:
        args += ["--set", o]
    return args


def summarise(rows: list[str], seeds: int) -> str:
    lines = ["| row | change | runs | val acc. | test acc. | params | train time |",
             "|---|---|---|---|---|---|---|"]
    what = {name: text for name, _, text in ROWS}
    for row in rows:
        found = [json.loads(p.read_text()) for s in range(seeds)
                 if (p := HERE / "runs" / f"{row}-s{s}" / "metrics.json").is_file()]
        if not found:
            lines.append(f"| {row} | {what[row]} | 0 | – | – | – | – |")
            continue

        def ms(key: str, scale: float = 100.0, unit: str = " %", found=found) -> str:
            vals = [f[key] * scale for f in found]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.1f} ± {sd:.1f}{unit}"

        lines.append(f"| {row} | {what[row]} | {len(found)} | {ms('val_acc')} | "
                     f"{ms('test_acc')} | {found[0]['params']:,} | "
                     f"{ms('train_time_s', 1.0, ' s')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="issue-16 ablation on SynthDigits-900")
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    rows = args.rows.split(",")
    for row in rows:
        for seed in range(args.seeds):
            cmd = command(row, seed)
            print(shlex.join(cmd), flush=True)
            if not args.dry_run:
                subprocess.run(cmd, cwd=ROOT, check=True)
    if args.dry_run:
        return
    made_by = shlex.join(["python", "results/synthdigits/accuracy/ablation.py", *sys.argv[1:]])
    text = (f"# SynthDigits-900 accuracy ablation (issue 16)\n\n**Command:** `{made_by}`\n\n"
            f"**Shared overrides:** `{' '.join(BASE)}` on `--config quick --data {DATA}`; each "
            f"row adds its change to all rows above it. Mean ± sample std over seeds 0–"
            f"{args.seeds - 1}; the model of each run is selected on validation, test is read "
            f"once per finished run.\n\n{summarise(rows, args.seeds)}\n")
    (HERE / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
