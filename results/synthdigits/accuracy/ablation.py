"""The issue-16 accuracy ablation on SynthDigits-900: from today's model to ``synthdigits-best``,
one change at a time, 3 seeds each, validation and test.

Every choice in these rows was made on validation only (``tune.py`` prints nothing else; its
pilots are in ``tuning/``). Each row adds its change to every row above it; the last row is
exactly the shipped recipe ``synthdigits-best`` (checked before anything runs). Each run is an
ordinary ``spikedelay train`` run folder under ``runs/<row>-s<seed>/``: rerunning resumes
unfinished runs and only reads finished ones, and the test set is read once per finished run,
by the trainer, at its validation-selected epoch.

Usage (repository root)::

    python results/synthdigits/accuracy/ablation.py --dry-run      # print the commands
    python results/synthdigits/accuracy/ablation.py --jobs 2       # run (resumable) + table
    python results/synthdigits/accuracy/ablation.py --table        # only rewrite results.md

The table goes to ``results.md`` next to this script, with the command that made it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

from jobs import run_commands

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DATA = "../shared/data/synthdigits-900"
RECIPE = "synthdigits-best"

# What every row shares: the quick recipe's budget (batch 64, 10 ms frames, 2 x 256) with
# 9 of the 45 training speakers for validation (the split study: 5 speakers are too few).
SHARED = ["data.dataset=synthdigits", "data.max_frames=null", "model.n_classes=20",
          "train.batch_size=64", "model.hidden=[256,256]", "data.val_fraction=0.2",
          "data.bin_ms=10.0", "train.epochs=30"]
VOICE = ["{name: channel_shift, max_shift: 6.0, p: 0.7}",
         "{name: time_stretch, max_factor: 1.25, p: 0.7}"]
TIMING = ["{name: time_shift, max_shift: 4, p: 0.5}",
          "{name: event_drop, rate: [0.0, 0.3], p: 0.5}",
          "{name: class_blend, keep: 0.5, p: 0.3}"]

# (row, config, overrides this row adds, what it tests). Rows after the first inherit the
# overrides of the rows above (a later value of a key replaces the earlier one).
ROWS: list[tuple[str, str, list[str], str]] = [
    ("lif-delays", "quick", [], "today's model: LIF + learned synaptic delays (recipe `quick`)"),
    ("se-adlif", "se-adlif-shd", [],
     "SE-adLIF neurons with plain recurrence, no delays (the models study's winner)"),
    ("+4ms", "se-adlif-shd", ["data.bin_ms=4.0"], "4 ms frames (SE-adLIF's own), 2.5x the steps"),
    ("+epochs", "se-adlif-shd", ["train.epochs=60"], "60 epochs instead of 30"),
    ("+voice-aug", "se-adlif-shd", ["data.augment=[" + ", ".join(VOICE) + "]"],
     "channel (pitch/formant) shifts and time stretch (speaking rate)"),
    ("+timing-aug", "se-adlif-shd", ["data.augment=[" + ", ".join(VOICE + TIMING) + "]"],
     "per-channel time shifts, event drop and DelRec's same-class blends"),
]


def row_spec(upto: str) -> tuple[str, list[str]]:
    """(config, merged overrides) of row ``upto``: SHARED plus every row's overrides to it."""
    merged: dict[str, str] = {}
    for o in SHARED:
        merged[o.partition("=")[0]] = o
    for name, config, extra, _ in ROWS:
        for o in extra:
            merged[o.partition("=")[0]] = o
        if name == upto:
            return config, list(merged.values())
    raise SystemExit(f"unknown row {upto!r}: use one of {', '.join(r[0] for r in ROWS)}")


def command(row: str, seed: int, threads: int = 0) -> list[str]:
    config, overrides = row_spec(row)
    args = ["spikedelay", "train", "--config", config, "--data", DATA, "--quiet",
            "--out", str((HERE / "runs" / f"{row}-s{seed}").relative_to(ROOT))]
    for o in overrides + [f"train.seed={seed}", f"train.threads={threads}"]:
        args += ["--set", o]
    return args


def check_last_row_is_recipe() -> None:
    """The table's last row must be the shipped recipe, or the table describes something else."""
    import spikedelay

    config, overrides = row_spec(ROWS[-1][0])
    ours = spikedelay.load_config(config, overrides + [f"data.root={DATA}"]).to_dict()
    shipped = spikedelay.load_config(RECIPE, [f"data.root={DATA}"]).to_dict()
    if ours != shipped:
        diff = {f"{s}.{k}": (v, shipped[s][k]) for s in ours for k, v in ours[s].items()
                if shipped[s][k] != v}
        raise SystemExit(f"the last row is not the recipe {RECIPE}: {diff}")


def summarise(seeds: int) -> tuple[str, list[tuple[int, float, float]]]:
    lines = ["| row | change (added to the rows above) | runs | val acc. | test acc. | params |"
             " s / run |", "|---|---|---|---|---|---|---|"]
    pairs: list[tuple[int, float, float]] = []  # (seed, val, test) of every finished run
    for row, _, _, what in ROWS:
        found = [json.loads(p.read_text()) for s in range(seeds)
                 if (p := HERE / "runs" / f"{row}-s{s}" / "metrics.json").is_file()]
        pairs += [(f["seed"], f["val_acc"], f["test_acc"]) for f in found]
        if not found:
            lines.append(f"| `{row}` | {what} | 0 | – | – | – | – |")
            continue

        def ms(key: str, scale: float = 100.0, digits: int = 1, found=found) -> str:
            vals = [f[key] * scale for f in found]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"

        lines.append(f"| `{row}` | {what} | {len(found)} | {ms('val_acc')} % | "
                     f"{ms('test_acc')} % | {found[0]['params']:,} | "
                     f"{ms('train_time_s', 1.0, 0)} |")
    return "\n".join(lines), pairs


def write_table(seeds: int, argv: list[str]) -> str:
    table, pairs = summarise(seeds)
    # --table only rewrites this file from the runs; the command that made them is the run
    args = [a for a in argv if a != "--table"] or ["--jobs", "2"]
    made_by = shlex.join(["python", "results/synthdigits/accuracy/ablation.py", *args])
    corr = ""
    if len(pairs) >= 3:
        r = statistics.correlation([v for _, v, _ in pairs], [t for _, _, t in pairs])
        # the same after removing each seed's mean: how well validation ranks the rows on a
        # fixed split (the seed draws the validation speakers)
        mean = {s: (statistics.fmean(v for k, v, _ in pairs if k == s),
                    statistics.fmean(t for k, _, t in pairs if k == s)) for s, _, _ in pairs}
        r_within = statistics.correlation([v - mean[s][0] for s, v, _ in pairs],
                                          [t - mean[s][1] for s, _, t in pairs])
        gap = statistics.fmean(v - t for _, v, t in pairs)
        corr = (f"\n\nValidation against test over these {len(pairs)} runs: Pearson r = "
                f"{r:.2f} across runs; r = {r_within:.2f} within a split (each seed's mean "
                f"removed: how validation ranks the rows when its speakers are fixed). "
                f"Validation is {100 * gap:.1f} points above test on average.")
    text = (f"# SynthDigits-900 accuracy ablation (issue 16)\n\n**Command:** `{made_by}` "
            f"(repository root; data `{DATA}`).\n\nShared by every row: "
            f"`{' '.join(SHARED)}`. Each row adds its change to all rows above it; the last "
            f"row is the recipe `{RECIPE}`. Mean ± sample std over seeds 0–{seeds - 1} "
            f"(the seed also draws the 9 validation speakers). Each run's epoch is selected "
            f"on validation; test is read once per finished run. The choices came from "
            f"validation-only pilots: [tuning.md](tuning.md); the remaining errors: "
            f"[errors.md](errors.md)."
            f"\n\n{table}{corr}\n")
    (HERE / "results.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description="issue-16 ablation on SynthDigits-900")
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (one thread each if > 1)")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--table", action="store_true", help="only write results.md")
    args = ap.parse_args()
    check_last_row_is_recipe()
    if not args.table:
        threads = 1 if args.jobs > 1 else 0
        todo = [command(row, seed, threads) for row in args.rows.split(",")
                for seed in range(args.seeds)]
        if args.dry_run:
            for cmd in todo:
                print(shlex.join(cmd))
            return
        if run_commands([(cmd, None) for cmd in todo], args.jobs, ROOT):
            raise SystemExit("some runs failed (above); the table is not written")
    print(write_table(args.seeds, sys.argv[1:]))


if __name__ == "__main__":
    main()
