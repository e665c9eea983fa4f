"""Training-step time per delay kind, SSC-shaped network (issue 13): synaptic vs axonal vs
dendritic (vs plain linear layers, ``delays=none``), as ratios against synaptic in the same run.

Network 140-512-512-512-35, K = 31, kernel_count 1, BatchNorm, LIF τ 1.5, batch 128 (the
``*-ssc`` recipes); inputs are random spike counts of ``--steps`` frames (SSC words are ~100),
all of full length. One step = forward, the summed-softmax loss, backward, both Adam steps and
the position clamp — what ``train_epoch`` does per batch — through ``build_optimizers`` of the
recipe, with σ at its initial K//2. Two untimed warm-up steps per kind, then ``--repeats``
rounds that time one step of every kind in turn (so that load from other users of a shared
machine falls on all kinds alike); the median per kind is reported, as ratios against synaptic
and against plain linear layers, and the median over rounds of each round's ratio against plain
linear layers (``round_ratio_vs_plain``: steadier when the load changes between rounds).

``--op`` adds the per-channel delay op alone (forward + backward of one 512-channel layer on
spikes, batch 128, reference padding), per kernel backend that runs here, next to the
512 × 512 linear map's forward + backward on the same input, timed round robin the same way.

Usage::

    python benchmarks/kinds_speed.py                      # T 40, 3 repeats (~2-3 min, 2 cores)
    python benchmarks/kinds_speed.py --steps 100 --repeats 5 --json
    python benchmarks/kinds_speed.py --op                 # + the delay op alone, per backend
"""

from __future__ import annotations

import argparse
import json
import os
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


def op_steps(args) -> list[tuple[str, object]]:
    """(name, one_step) for the delay op per CPU backend and for the linear map beside it."""
    from spikedelay.ops.channel_delay import channel_delay

    channels, taps = 512, 31
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(args.batch, args.steps, channels, generator=g) < 0.1).float()
    kernel = torch.softmax(torch.randn(channels, taps, generator=g), 1)
    linear = torch.nn.Linear(channels, channels, bias=False)

    def delay_step(backend: str):
        def one_step() -> float:
            os.environ["SPIKEDELAY_KERNELS"] = backend
            xa, ka = x.clone().requires_grad_(), kernel.clone().requires_grad_()
            t0 = time.perf_counter()
            y = channel_delay(xa, ka, taps - 1, (taps - 1) // 2)
            y.backward(torch.ones_like(y))
            return time.perf_counter() - t0
        return one_step

    def linear_step() -> float:
        xa = x.clone().requires_grad_()
        t0 = time.perf_counter()
        y = linear(xa)
        y.backward(torch.ones_like(y))
        return time.perf_counter() - t0

    return [("delay op, numba", delay_step("numba")), ("delay op, torch (depthwise conv2d)",
            delay_step("torch")), ("linear 512x512", linear_step)]


def round_robin(steps: list, repeats: int) -> list[float]:
    """Median time per step function, two untimed warm-ups each, timed in turn."""
    for one_step in steps:
        one_step()
        one_step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for k, one_step in enumerate(steps):
            times[k].append(one_step())
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40, help="frames per word (default 40)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="timed steps per kind (median)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--op", action="store_true", help="also time the delay op alone")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    built = [build_step(kind, delays, args) for kind, delays in KINDS]
    # warm-up (allocations, compiled kernels, the fused ops' caches), then round robin, so that
    # load on a shared machine hits all kinds alike
    times = round_robin([one_step for _, one_step in built], args.repeats)
    rows = [{**info, "step_s": statistics.median(t), "steps_s": t}
            for (info, _), t in zip(built, times, strict=True)]
    base, plain = rows[0]["step_s"], rows[-1]["step_s"]
    for r in rows:
        r["ratio_vs_synaptic"] = r["step_s"] / base
        r["ratio_vs_plain"] = r["step_s"] / plain
        r["round_ratio_vs_plain"] = statistics.median(
            a / b for a, b in zip(r["steps_s"], rows[-1]["steps_s"], strict=True))
    op_rows = []
    if args.op:
        steps = op_steps(args)
        forced = os.environ.get("SPIKEDELAY_KERNELS")
        try:
            op_times = round_robin([one_step for _, one_step in steps], args.repeats)
        finally:
            if forced is None:
                os.environ.pop("SPIKEDELAY_KERNELS", None)
            else:
                os.environ["SPIKEDELAY_KERNELS"] = forced
        lin = statistics.median(op_times[-1])
        op_rows = [{"what": name, "fwd_bwd_s": statistics.median(t), "steps_s": t,
                    "ratio_vs_linear": statistics.median(t) / lin}
                   for (name, _), t in zip(steps, op_times, strict=True)]
    if args.json:
        print(json.dumps({"steps": args.steps, "batch": args.batch, "repeats": args.repeats,
                          "threads": torch.get_num_threads(), "rows": rows, "op": op_rows},
                         indent=2))
        return
    print(f"SSC shape 140-512-512-512-35, K 31, batch {args.batch}, T {args.steps}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'kind':<22}{'params':>11}{'delays':>9}{'step (s)':>10}{'vs synaptic':>13}"
          f"{'vs plain':>10}{'per round':>11}")
    for r in rows:
        print(f"{r['kind']:<22}{r['params']:>11,}{r['delays']:>9,}{r['step_s']:>10.3f}"
              f"{r['ratio_vs_synaptic']:>13.2f}{r['ratio_vs_plain']:>10.2f}"
              f"{r['round_ratio_vs_plain']:>11.2f}")
    for r in op_rows:
        print(f"{r['what']:<36}{r['fwd_bwd_s']:>10.4f} s{r['ratio_vs_linear']:>8.2f}× linear")


if __name__ == "__main__":
    main()
