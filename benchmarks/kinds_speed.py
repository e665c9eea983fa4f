"""Training-step time per delay kind, SSC-shaped network (issue 13): synaptic vs axonal vs
dendritic (vs plain linear layers, ``delays=none``), as ratios against synaptic in the same run.

Network 140-512-512-512-35, K = 31, kernel_count 1, BatchNorm, LIF τ 1.5, batch 128 (the
``*-ssc`` recipes); inputs are random spike counts of ``--steps`` frames (SSC words are ~100),
all of full length. One step = forward, the summed-softmax loss, backward, both Adam steps and
the position clamp — what ``train_epoch`` does per batch — through ``build_optimizers`` of the
recipe, with σ at its initial K//2. Two untimed warm-up steps per kind, then ``--repeats``
rounds that time one step of every kind in turn (so that load from other users of a shared
machine falls on all kinds alike); the median per kind is reported.

Usage::

    python benchmarks/kinds_speed.py                      # T 40, 3 repeats (~2-3 min, 2 cores)
    python benchmarks/kinds_speed.py --steps 100 --repeats 5 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

KINDS = (("synaptic", "learned"), ("axonal", "learned"), ("dendritic", "learned"),
         ("none", "none"))


def build_step(kind: str, delays: str, args):
    """(info, one_step) for one kind: the model, its optimisers and a fixed batch."""
    from spikedelay.config import load_config
    from spikedelay.model import DelaySNN
    from spikedelay.train.loss import summed_softmax_loss
    from spikedelay.train.setup import build_optimizers

    over = [f"model.delays={delays}", f"train.batch_size={args.batch}"]
    if kind != "none":
        over.append(f"model.delay_kind={kind}")
    cfg = load_config("synaptic-ssc", over)
    torch.manual_seed(0)
    model = DelaySNN(cfg.model).train()
    optim = build_optimizers(model, cfg)
    g = torch.Generator().manual_seed(1)
    x = torch.poisson(torch.full((args.batch, args.steps, 140), 0.3), generator=g)
    lengths = torch.full((args.batch,), args.steps)
    labels = torch.randint(0, 35, (args.batch,), generator=g)

    def one_step() -> float:
        t0 = time.perf_counter()
        for o in optim.all():
            o.zero_grad(set_to_none=True)
        v, out_len = model(x, lengths)
        loss = summed_softmax_loss(v, labels, out_len)[0]
        loss.backward()
        for o in optim.all():
            o.step()
        model.clamp_positions_()
        return time.perf_counter() - t0

    info = {"kind": kind if kind != "none" else "none (plain linear)",
            "params": model.num_parameters(), "delays": model.num_delays()}
    return info, one_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40, help="frames per word (default 40)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="timed steps per kind (median)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    built = [build_step(kind, delays, args) for kind, delays in KINDS]
    for _, one_step in built:  # warm-up: allocations, compiled kernels, the fused ops' caches
        one_step()
        one_step()
    times: list[list[float]] = [[] for _ in built]
    for _ in range(args.repeats):  # round robin, so that load on a shared machine hits all kinds
        for k, (_, one_step) in enumerate(built):
            times[k].append(one_step())
    rows = [{**info, "step_s": statistics.median(t), "steps_s": t}
            for (info, _), t in zip(built, times, strict=True)]
    base = rows[0]["step_s"]
    for r in rows:
        r["ratio_vs_synaptic"] = r["step_s"] / base
    if args.json:
        print(json.dumps({"steps": args.steps, "batch": args.batch, "repeats": args.repeats,
                          "threads": torch.get_num_threads(), "rows": rows}, indent=2))
        return
    print(f"SSC shape 140-512-512-512-35, K 31, batch {args.batch}, T {args.steps}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'kind':<22}{'params':>11}{'delays':>9}{'step (s)':>10}{'vs synaptic':>13}")
    for r in rows:
        print(f"{r['kind']:<22}{r['params']:>11,}{r['delays']:>9,}{r['step_s']:>10.3f}"
              f"{r['ratio_vs_synaptic']:>13.2f}")


if __name__ == "__main__":
    main()
