"""Validation-only pilots for the ``synthdigits-best`` recipe (issue 16, item 3).

Why a separate script: the recipe's choices (model, augmentation, width, epochs) must come
from validation alone. Each pilot is an ordinary ``spikedelay train`` run (the trainer also
scores test at the end, as every finished run does), but this script reads and prints **only**
``val_acc`` and the validation curve, so no choice here sees a test number. The pilots use the
seeds' own validation speakers with ``data.val_fraction = 0.2`` (9 of 45 speakers, 180 words:
the split study showed 5 speakers move validation by ≈ 9 points).

Usage (repository root)::

    python results/synthdigits/accuracy/tune.py --list
    python results/synthdigits/accuracy/tune.py --pilots se-adlif,se-adlif+pitch --seeds 0,1
    python results/synthdigits/accuracy/tune.py --summary      # every finished pilot, val only

Runs go to ``results/synthdigits/accuracy/tuning/<pilot>-s<seed>/``; finished runs are only
read back, unfinished ones resume. ``--jobs 2`` runs two pilots at once, one thread each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from jobs import run_commands

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DATA = "../shared/data/synthdigits-900"
OUT = HERE / "tuning"

# The models study's budget (results/synthdigits/models/run_study.sh), with more validation
# speakers. Every pilot starts from the se-adlif-shd recipe at 2 x 256 unless it says otherwise.
BUDGET = ["data.dataset=synthdigits", "data.bin_ms=10.0", "data.val_fraction=0.2",
          "data.max_frames=null", "model.n_classes=20", "train.batch_size=64",
          "model.hidden=[256,256]", "train.epochs=30"]

PITCH = "{name: channel_shift, max_shift: 3.0, p: 0.5}"
SPEED = "{name: time_stretch, max_factor: 1.15, p: 0.5}"
SHIFT = "{name: time_shift, max_shift: 4, p: 0.5}"
DROP = "{name: event_drop, rate: [0.0, 0.3], p: 0.5}"
BLEND = "{name: class_blend, keep: 0.5, p: 0.3}"
PITCH2 = "{name: channel_shift, max_shift: 6.0, p: 0.7}"
SPEED2 = "{name: time_stretch, max_factor: 1.25, p: 0.7}"
FSTRETCH = "{name: channel_stretch, max_factor: 1.1, p: 0.5}"


def aug(*specs: str) -> str:
    return "data.augment=[" + ", ".join(specs) + "]"


# name -> (config, overrides added to BUDGET)
PILOTS: dict[str, tuple[str, list[str]]] = {
    "se-adlif": ("se-adlif-shd", []),
    "lif-synaptic": ("quick", []),
    "se-adlif+pitch": ("se-adlif-shd", [aug(PITCH)]),
    "se-adlif+speed": ("se-adlif-shd", [aug(SPEED)]),
    "se-adlif+shift": ("se-adlif-shd", [aug(SHIFT)]),
    "se-adlif+drop": ("se-adlif-shd", [aug(DROP)]),
    "se-adlif+blend": ("se-adlif-shd", [aug(BLEND)]),
    "se-adlif+fstretch": ("se-adlif-shd", [aug(FSTRETCH)]),
    "se-adlif+pitch+speed": ("se-adlif-shd", [aug(PITCH, SPEED)]),
    "se-adlif+all": ("se-adlif-shd", [aug(PITCH, SPEED, SHIFT, DROP, BLEND)]),
    "se-adlif-4ms": ("se-adlif-shd", ["data.bin_ms=4.0"]),
    "se-adlif-e60": ("se-adlif-shd", ["train.epochs=60"]),
    "se-adlif-w512": ("se-adlif-shd", ["model.hidden=[512,512]"]),
    "se-adlif+all-e60": ("se-adlif-shd", [aug(PITCH, SPEED, SHIFT, DROP, BLEND),
                                          "train.epochs=60"]),
    "se-adlif+all-4ms-e60": ("se-adlif-shd", [aug(PITCH, SPEED, SHIFT, DROP, BLEND),
                                              "data.bin_ms=4.0", "train.epochs=60"]),
    "se-adlif+strong-4ms-e60": ("se-adlif-shd", [aug(PITCH2, SPEED2, SHIFT, DROP, BLEND),
                                                 "data.bin_ms=4.0", "train.epochs=60"]),
    # after the ablation: one more transform on top of synthdigits-best (seeds 1, 2)
    "best+fstretch": ("synthdigits-best", ["data.bin_ms=4.0", "train.epochs=60", aug(
        PITCH2, SPEED2, SHIFT, DROP, BLEND, "{name: channel_stretch, max_factor: 1.15, p: 0.5}")]),
    "best+bandlimit": ("synthdigits-best", ["data.bin_ms=4.0", "train.epochs=60", aug(
        PITCH2, SPEED2, SHIFT, DROP, BLEND, "{name: band_limit, high_hz: [3000, 8000], p: 0.3}")]),
}


def command(pilot: str, seed: int, threads: int) -> list[str]:
    config, extra = PILOTS[pilot]
    args = ["spikedelay", "train", "--config", config, "--data", DATA, "--quiet",
            "--out", str((OUT / f"{pilot}-s{seed}").relative_to(ROOT))]
    for o in BUDGET + extra + [f"train.seed={seed}", f"train.threads={threads}"]:
        args += ["--set", o]
    return args


def val_only(run: Path) -> dict | None:
    """A finished pilot's validation numbers (nothing of test is read into the result)."""
    path = run / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    curve = [json.loads(line).get("val_acc") for line in (run / "metrics.jsonl").open()]
    curve = [v for v in curve if v is not None]
    return {"val_acc": m["val_acc"], "best_epoch": m["best_epoch"], "epochs": m["epochs"],
            "last5_val": statistics.fmean(curve[-5:]) if curve else None,
            "train_time_s": m["train_time_s"], "params": m["params"]}


def summary() -> str:
    groups: dict[str, dict[int, dict]] = {}
    for run in sorted(OUT.glob("*-s*")):
        name, _, seed = run.name.rpartition("-s")
        if (v := val_only(run)) is not None:
            groups.setdefault(name, {})[int(seed)] = v
    lines = ["| pilot | seeds | val acc. per seed (best epoch) | mean best val | mean last-5 val |"
             " params | train s |", "|---|---|---|---|---|---|---|"]
    for name, by_seed in groups.items():
        per = ", ".join(f"s{s}: {100 * v['val_acc']:.1f} ({v['best_epoch']})"
                        for s, v in sorted(by_seed.items()))
        best = statistics.fmean(v["val_acc"] for v in by_seed.values())
        last5 = statistics.fmean(v["last5_val"] for v in by_seed.values())
        secs = statistics.fmean(v["train_time_s"] for v in by_seed.values())
        params = next(iter(by_seed.values()))["params"]
        lines.append(f"| {name} | {len(by_seed)} | {per} | {100 * best:.1f} | {100 * last5:.1f} |"
                     f" {params:,} | {secs:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="validation-only pilots for synthdigits-best")
    ap.add_argument("--pilots", default="")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    if args.list:
        for name, (config, extra) in PILOTS.items():
            print(f"{name}: --config {config} {' '.join(extra)}")
        return
    todo = [(p, int(s)) for p in filter(None, args.pilots.split(","))
            for s in args.seeds.split(",")]
    unknown = sorted({p for p, _ in todo} - PILOTS.keys())
    if unknown:
        raise SystemExit(f"unknown pilot(s) {', '.join(unknown)}: see --list")
    threads = 1 if args.jobs > 1 else 0
    failed = run_commands([(command(p, s, threads), OUT / f"{p}-s{s}.log") for p, s in todo],
                          args.jobs, ROOT)
    if args.summary or todo:
        print(summary())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
