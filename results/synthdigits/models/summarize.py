"""Summarise the model study of run_study.sh: OUT/runs/<model>-s<seed>/ -> OUT/results.md.

Per model: validation and test accuracy (mean ± sample std over seeds), trainable parameters,
seconds per epoch (mean of every epoch's wall time, training + validation) and the seeds found.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def summarize(out: Path, command: str) -> str:
    groups: dict[str, list[Path]] = {}
    for run in sorted((out / "runs").glob("*-s*")):
        if (run / "metrics.json").is_file():
            groups.setdefault(run.name.rsplit("-s", 1)[0], []).append(run)
    rows = []
    for name, runs in groups.items():
        metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
        times = [json.loads(line)["time_s"] for r in runs
                 for line in (r / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rows.append((name, _mean_std([m["val_acc"] for m in metrics]),
                     _mean_std([m["test_acc"] for m in metrics]), metrics[0]["params"],
                     statistics.fmean(times) if times else float("nan"), len(runs),
                     statistics.fmean(m["test_acc"] for m in metrics)))
    lines = [
        "# Recurrent and adaptive models on SynthDigits (issue 14)",
        "",
        f"Command: `{command}` (then this file is written by `summarize.py`).",
        "Protocol: validation on 10 % of the training speakers selects the epoch; test once.",
        "",
        "| model | val acc % | test acc % | params | s / epoch (CPU) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name, val, test, params, sec, n, _ in rows:
        lines.append(f"| {name} | {val} | {test} | {params:,} | {sec:.1f} | {n} |")
    if len(rows) > 1:
        best = max(rows, key=lambda r: r[6])
        second = max((r for r in rows if r is not best), key=lambda r: r[6])
        lines += ["", f"Best mean test accuracy: **{best[0]}**, "
                  f"{100 * (best[6] - second[6]):.1f} points ahead of {second[0]}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--command", default="bash results/synthdigits/models/run_study.sh")
    args = parser.parse_args()
    text = summarize(args.out, args.command)
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
