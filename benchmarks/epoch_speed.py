"""One whole epoch (train + validation) of the ``quick`` recipe: spikedelay vs the reference.

What a user runs is an epoch, not a step: batches of uneven length, a validation pass, the
optimisers, the σ of the schedule. This script times exactly that, on the same files, the same
split and the same batches for both sides, each side in its own fresh process:

(a) ``reference``: the paper's formulation (``dcls`` ``Dcls1d(version="gauss")`` layers with the
    reference padding, SpikingJelly multi-step LIF, BatchNorm and Dropout, Adam for weights and
    positions; built by :func:`train_speed.build_reference`) in a plain epoch loop: pad each
    batch to its longest word, step, then one ``no_grad`` pass over the validation words.
(b) ``spikedelay``: ``DelaySNN`` + ``build_optimizers`` + ``train_epoch`` + ``evaluate`` — the
    loop ``spikedelay train`` runs (masked loss, integer-delay validation).

Both sides see the ``quick`` recipe's shapes (2 × 256, K 25, batch 64, dropout 0.4) on the
speaker-disjoint split spikedelay trains with (the default data is REFERENCE §7's
``synthdigits-900``: 800 training + 100 validation words). One warm-up batch (training and
validation) is untimed on each side (kernel loading is start-up, not an epoch). ``speedup`` is
training words per second of the whole epoch, ours over the reference's; ``speedup_cpu_time``
the same from the CPU time of each process (steadier on a busy machine); ``memory_ratio`` the
peak RSS ratio.

Usage::

    python benchmarks/epoch_speed.py --json                 # both σ, synthdigits-900
    python benchmarks/epoch_speed.py --sigma initial        # σ = K//2 only (epoch 1)
    python benchmarks/epoch_speed.py --data DIR --max-batches 2 --hidden 32   # smoke test

Needs the ``bench`` extra for (a) (``dcls`` and SpikingJelly 0.0.0.0.14, see train_speed.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "synthdigits-900"
SIGMA_FINAL = 0.23


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def cpu_seconds() -> float:
    """CPU time of this process (all threads): on a busy shared machine the wall clock also
    counts the time other processes held the cores, CPU time much less so."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_splits(args):
    """The split spikedelay trains on (seeded, speaker-disjoint); the same for both sides."""
    from spikedelay.data.loaders import load_dataset

    cfg = quick_config(args)
    return cfg, load_dataset(cfg.data, seed=cfg.train.seed, protocol=cfg.train.protocol,
                             progress=False)


def quick_config(args):
    from spikedelay.config import load_config

    hidden = "[" + ",".join([str(args.hidden)] * 2) + "]"
    return load_config("quick", [f"data.root={args.data}", f"model.hidden={hidden}",
                                 "data.cache=false"])


def batch_lists(splits, cfg, args):
    """Training batches in one seeded order, validation batches in file order (lists of
    ``(x, lengths, labels)``), cut to ``--max-batches`` if given."""
    import torch

    gen = torch.Generator().manual_seed(1234)
    train = list(splits.train.batches(cfg.train.batch_size, shuffle=True, generator=gen))
    val = list(splits.val.batches(cfg.train.batch_size, shuffle=False))
    if args.max_batches:
        train, val = train[: args.max_batches], val[: args.max_batches]
    return train, val


def run_worker(args) -> dict:
    import torch

    torch.manual_seed(0)
    cfg, splits = load_splits(args)
    train, val = batch_lists(splits, cfg, args)
    rss_data = peak_rss_mb()
    if args.worker == "reference":
        epoch = reference_epoch(args, cfg)
    else:
        epoch = spikedelay_epoch(args, cfg)
    epoch(train[:1], val[:1])  # untimed warm-up batch each way (kernel loading is start-up)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    train_s, val_s = epoch(train, val)
    total, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    words = sum(int(b[2].shape[0]) for b in train)
    return {
        "impl": args.worker,
        "sigma": args.sigma_value,
        "epoch_s": total,
        "train_s": train_s,
        "val_s": val_s,
        "train_words": words,
        "val_words": sum(int(b[2].shape[0]) for b in val),
        "train_words_per_s": words / total,
        "cpu_s": cpu,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_data_mb": rss_data,
        "torch_threads": torch.get_num_threads(),
    }


def reference_epoch(args, cfg):
    """The reference formulation's plain epoch loop (no lengths: it pads and masks nothing)."""
    import torch
    import torch.nn.functional as F
    from spikingjelly.activation_based import functional

    sys.path.insert(0, str(HERE))
    import train_speed

    ref_args = argparse.Namespace(max_delay=cfg.model.max_delay, hidden_sizes=cfg.model.hidden)
    net, step_fn = train_speed.build_reference(ref_args, args.sigma_value, cfg.model.dropout)
    step = step_fn(net, train_speed.reference_optimizers(net))

    def epoch(train, val):
        t0 = time.perf_counter()
        net.train()
        for x, lengths, labels in train:
            step(x, labels, lengths)
        t1 = time.perf_counter()
        net.eval()
        with torch.no_grad():
            for x, _, labels in val:
                functional.reset_net(net)
                m = torch.softmax(net(x), 2).sum(0)
                F.cross_entropy(m, labels)
                (m.argmax(-1) == labels).sum().item()
        return t1 - t0, time.perf_counter() - t1

    return epoch


def spikedelay_epoch(args, cfg):
    """What ``spikedelay train`` runs per epoch: train_epoch, then the integer-delay evaluate."""
    from spikedelay.model import DelaySNN
    from spikedelay.train.loop import evaluate, train_epoch
    from spikedelay.train.setup import build_optimizers

    net = DelaySNN(cfg.model)
    net.set_sigma(args.sigma_value)
    optimizers = build_optimizers(net, cfg).all()

    def epoch(train, val):
        t0 = time.perf_counter()
        train_epoch(net, train, optimizers, masked_loss=cfg.train.masked_loss,
                    after_step=net.clamp_positions_)
        t1 = time.perf_counter()
        if val:
            evaluate(net, val, masked_loss=cfg.train.masked_loss)
        return t1 - t0, time.perf_counter() - t1

    return epoch


def _subprocess(args, impl: str, sigma: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--data", str(args.data),
           "--hidden", str(args.hidden), "--max-batches", str(args.max_batches),
           "--worker", impl, "--sigma-value", str(sigma)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed: {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="SHD-layout folder (default: ../shared/data/synthdigits-900)")
    p.add_argument("--sigma", default="both", choices=["initial", "final", "both"],
                   help="σ of the epoch timed: initial (K//2, epoch 1), final (0.23), both")
    p.add_argument("--hidden", type=int, default=256, help="neurons per hidden layer (quick: 256)")
    p.add_argument("--max-batches", type=int, default=0,
                   help="cut each split to this many batches (0 = the whole epoch; smoke tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--worker", choices=["reference", "spikedelay"], help=argparse.SUPPRESS)
    p.add_argument("--sigma-value", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (args.data / "shd_train.h5").exists() and not (args.data / "shd_train.h5.gz").exists():
        print(f"epoch_speed: no SHD-layout files in {args.data} (pass --data DIR)", file=sys.stderr)
        return 2
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    k = 25  # the quick recipe's K; σ starts at K//2
    sigmas = {"initial": [float(k // 2)], "final": [SIGMA_FINAL],
              "both": [float(k // 2), SIGMA_FINAL]}[args.sigma]
    runs = []
    for sigma in sigmas:
        row = {"sigma": sigma}
        for impl in ("reference", "spikedelay"):
            row[impl] = _subprocess(args, impl, sigma)
        a, b = row["reference"], row["spikedelay"]
        row["speedup"] = b["train_words_per_s"] / a["train_words_per_s"]
        row["memory_ratio"] = b["peak_rss_mb"] / a["peak_rss_mb"]
        row["speedup_cpu_time"] = a["cpu_s"] / b["cpu_s"]
        runs.append(row)
    result = {"data": str(args.data), "hidden": [args.hidden] * 2, "batch": 64,
              "max_batches": args.max_batches, "runs": runs,
              "speedup": min(r["speedup"] for r in runs),
              "memory_ratio": max(r["memory_ratio"] for r in runs)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for r in runs:
            for impl in ("reference", "spikedelay"):
                v = r[impl]
                print(f"σ={r['sigma']:<5g} {impl:<10} epoch {v['epoch_s']:6.2f} s (train "
                      f"{v['train_s']:.2f} s, val {v['val_s']:.2f} s), "
                      f"{v['train_words_per_s']:6.1f} words/s, peak {v['peak_rss_mb']:.0f} MB")
            print(f"σ={r['sigma']:<5g} speedup {r['speedup']:.2f}x (CPU time "
                  f"{r['speedup_cpu_time']:.2f}x), memory ratio {r['memory_ratio']:.2f}")
        print(f"worst case: speedup {result['speedup']:.2f}x, "
              f"memory_ratio {result['memory_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
