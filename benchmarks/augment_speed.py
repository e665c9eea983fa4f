"""What each ``data.augment`` transform adds to a training epoch, as a ratio.

For each transform (its default parameters, ``p`` = 1, so every sample is augmented: the worst
case), the same epoch of training batches is augmented and timed, and set against one training
epoch of the ``quick`` model on the plain batches (``train_epoch``: forward, loss, backward,
optimiser steps) in the same process. ``overhead`` = augmentation seconds / training seconds:
the share it adds to an epoch when it runs on the batch's device in the training loop. Each
number is the median of ``--repeats`` passes.

Usage::

    python benchmarks/augment_speed.py --json                      # synthdigits-900, 2 x 128
    python benchmarks/augment_speed.py --data DIR --hidden 32 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from spikedelay.config import load_config  # noqa: E402
from spikedelay.data.augment import TRANSFORMS, Augmenter  # noqa: E402
from spikedelay.data.loaders import load_dataset  # noqa: E402
from spikedelay.train.loop import train_epoch  # noqa: E402
from spikedelay.train.setup import build_model, build_optimizers  # noqa: E402

EXTRA = {"band_limit": {"high_hz": [3000, 8000]}}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "../shared/data/synthdigits-900"))
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_config("quick", [f"data.root={args.data}",
                                f"model.hidden=[{args.hidden}, {args.hidden}]"])
    splits = load_dataset(cfg.data, seed=0, protocol="validation", progress=False)
    gen = torch.Generator().manual_seed(0)
    batches = list(splits.train.batches(args.batch, shuffle=True, generator=gen))
    model = build_model(cfg, torch.device("cpu"))
    optim = build_optimizers(model, cfg)
    model.set_sigma(cfg.model.max_delay // 2)
    train_epoch(model, batches[:1], optim.all())  # warm-up: kernel loading is not an epoch
    train_s = _median_time(lambda: train_epoch(model, batches, optim.all()), args.repeats)

    rows = {}
    for name in TRANSFORMS:
        aug = Augmenter.build([{"name": name, **EXTRA.get(name, {})}], splits.train,
                              splits.framing, seed=0)
        aug_s = _median_time(lambda a=aug: [b.x for b in a.batches(batches, 0)], args.repeats)
        rows[name] = {"augment_s": aug_s, "overhead": aug_s / train_s}
    out = {"train_epoch_s": train_s, "batches": len(batches), "hidden": args.hidden,
           "threads": torch.get_num_threads(), "transforms": rows}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"training epoch: {train_s:.2f} s ({len(batches)} batches, 2 x {args.hidden})")
    for name, r in rows.items():
        print(f"  {name:16s} {r['augment_s']:6.2f} s   overhead {r['overhead']:6.1%}")


if __name__ == "__main__":
    main()
