"""Training-step speed and memory: spikedelay vs the reference formulation, same inputs, same run.

(a) ``reference``: what the paper's code runs — ``DCLS.construct.modules.Dcls1d(version="gauss")``
    delay layers with its padding (left K-1, right (K-1)//2), SpikingJelly multi-step
    ``LIFNode`` (torch backend; tau 1.005, decay_input False, v_reset 0, detach_reset, ATan α=5),
    ``layer.BatchNorm1d`` / ``layer.Dropout`` in multi-step mode, the readout an LIF node with an
    unreachable threshold read through ``v_seq``, the loss CE of the time-summed softmax, Adam
    for weights (+BN) and a separate Adam for positions, positions clamped after each step.
(b) ``spikedelay``: ``DelaySNN`` + ``build_optimizers`` + ``train_epoch`` on one batch, i.e.
    exactly the step the training CLI runs.

Each implementation is timed in its own fresh subprocess (peak RSS of that process on CPU,
``torch.cuda.max_memory_allocated`` on GPU), at the initial σ (K//2: every tap of the kernel is
significant) and at the final σ (0.23). A third subprocess builds both networks with the same
weights and compares loss and every gradient (float64 by default, so that float32 rounding
cannot flip a spike at the threshold; ``--check-dtype float32`` shows the float32 picture).

Usage::

    python benchmarks/train_speed.py                 # SHD recipe: batch 256, 2 x 256, K 25
    python benchmarks/train_speed.py --json          # one JSON object on stdout
    python benchmarks/train_speed.py --quick         # CI-sized (seconds)
    python benchmarks/train_speed.py --device cuda --batch 256

Needs the ``bench`` extra for (a): ``pip install dcls==0.1.1`` and
``pip install --no-deps spikingjelly==0.0.0.0.14`` (the 2.0 release pulls a CUDA torch and
needs loguru; 0.0.0.0.14 imports next to any torch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

N_IN = 140  # SHD after grouping 700 channels by 5
N_CLASSES = 20
TAU = 1.005  # SHD: 10.05 ms at 10 ms steps (REFERENCE §1)
SIGMA_FINAL = 0.23


# -- inputs ----------------------------------------------------------------------------------------
def make_batch(args, dtype, device):
    """Deterministic SHD-like input: counts of 5 grouped channels (binomial), labels, lengths."""
    import torch

    gen = torch.Generator().manual_seed(1234)
    x = torch.zeros(args.batch, args.frames, N_IN)
    for _ in range(5):  # five cochlea channels per input feature, each spiking with p = 4 %
        x += (torch.rand(args.batch, args.frames, N_IN, generator=gen) < 0.04).float()
    labels = torch.randint(0, N_CLASSES, (args.batch,), generator=gen)
    lengths = torch.full((args.batch,), args.frames, dtype=torch.int64)
    return x.to(device=device, dtype=dtype), labels.to(device), lengths.to(device)


# -- (a) the reference formulation -----------------------------------------------------------------
def build_reference(args, sigma, dropout):
    import torch
    import torch.nn.functional as F
    from DCLS.construct.modules import Dcls1d
    from spikingjelly.activation_based import functional, layer, neuron, surrogate
    from torch import nn

    k = args.max_delay
    left, right = k - 1, (k - 1) // 2

    def lif(threshold):
        return neuron.LIFNode(
            tau=TAU, v_threshold=threshold, v_reset=0.0, surrogate_function=surrogate.ATan(5.0),
            detach_reset=True, step_mode="m", decay_input=False, store_v_seq=True,
            backend="torch",
        )

    def dcls(n_in, n_out):
        conv = Dcls1d(n_in, n_out, kernel_count=1, groups=1, dilated_kernel_size=k, bias=False,
                      version="gauss")
        nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
        with torch.no_grad():
            conv.P.uniform_(-(k // 2), k // 2)
            conv.SIG.fill_(sigma)
        conv.SIG.requires_grad = False
        return conv

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [N_IN, *args.hidden_sizes]
            self.blocks = nn.ModuleList(
                nn.ModuleList([dcls(a, b), layer.BatchNorm1d(b, step_mode="m"), lif(1.0),
                               layer.Dropout(dropout, step_mode="m")])
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            )
            self.readout = dcls(sizes[-1], N_CLASSES)
            self.readout_lif = lif(1e9)

        def forward(self, x):  # x (B, T, C), as the reference permutes it to (T, B, C)
            x = x.permute(1, 0, 2)
            for conv, bn, lif_node, drop in self.blocks:
                x = F.pad(x.permute(1, 2, 0), (left, right))
                x = conv(x).permute(2, 0, 1)
                x = bn(x.unsqueeze(3)).squeeze(3)  # the reference's squeeze() breaks B=1
                x = drop(lif_node(x))
            x = F.pad(x.permute(1, 2, 0), (left, right))
            out = self.readout(x).permute(2, 0, 1)
            self.readout_lif(out)
            return self.readout_lif.v_seq  # (T', B, classes)

        def convs(self):
            return [b[0] for b in self.blocks] + [self.readout]

    net = Reference()

    def step_fn(model, optimizers):
        def step(x, labels, lengths):
            functional.reset_net(model)
            out = model(x)
            loss = F.cross_entropy(torch.softmax(out, 2).sum(0), labels)
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            for opt in optimizers:
                opt.step()
            for conv in model.convs():
                conv.clamp_parameters()
            return loss

        return step

    return net, step_fn


def reference_optimizers(net):
    import torch

    weights = [c.weight for c in net.convs()]
    bn = [p for b in net.blocks for p in b[1].parameters()]
    return [
        torch.optim.Adam([{"params": weights, "weight_decay": 1e-5},
                          {"params": bn, "weight_decay": 0.0}], lr=5e-3),
        torch.optim.Adam([c.P for c in net.convs()], lr=0.1, weight_decay=0.0),
    ]


# -- (b) spikedelay --------------------------------------------------------------------------------
def spikedelay_config(args, dropout):
    from importlib import resources

    from spikedelay.config import load_config

    hidden = "[" + ",".join(str(h) for h in args.hidden_sizes) + "]"
    recipe = resources.files("spikedelay") / "configs" / "shd.yaml"  # not a ./shd in the cwd
    return load_config(str(recipe), [
        f"model.hidden={hidden}", f"model.max_delay={args.max_delay}",
        f"model.dropout={dropout}", f"train.batch_size={args.batch}",
    ])


def build_spikedelay(args, sigma, dropout):
    from spikedelay.model import DelaySNN

    cfg = spikedelay_config(args, dropout)
    net = DelaySNN(cfg.model)
    net.set_sigma(sigma)

    def step_fn(model, optimizers):
        from spikedelay.train.loop import train_epoch

        def step(x, labels, lengths):
            stats = train_epoch(model, [(x, lengths, labels)], optimizers,
                                masked_loss=cfg.train.masked_loss,
                                after_step=model.clamp_positions_)
            return stats.loss

        return step

    return net, step_fn, cfg


# -- worker: time one implementation in this (fresh) process ---------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def float32_only() -> None:
    """TF32 off for both sides (cuDNN's convolutions, which dcls runs on, default to TF32):
    the comparison is float32 against float32, as our runs train by default. A worker process
    of its own, so the process-wide flags are ours to set."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def run_worker(args) -> dict:
    import torch

    torch.manual_seed(0)
    device = torch.device(args.device)
    dropout = 0.4
    float32_only()
    if args.worker == "reference":
        net, step_fn = build_reference(args, args.sigma, dropout)
        net = net.to(device)
        optimizers = reference_optimizers(net)
    else:
        from spikedelay.train.setup import build_optimizers

        net, step_fn, cfg = build_spikedelay(args, args.sigma, dropout)
        net = net.to(device)
        optimizers = build_optimizers(net, cfg).all()
        try:
            from spikedelay.ops.lif import warmup

            warmup()  # numba: load the compiled kernels (or compile once) before timing
        except ImportError:
            pass
    net.train()
    step = step_fn(net, optimizers)
    x, labels, lengths = make_batch(args, torch.float32, device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    rss_before = peak_rss_mb()
    for _ in range(args.warmup):
        step(x, labels, lengths)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step(x, labels, lengths)
        sync()
        times.append(time.perf_counter() - t0)
    result = {
        "impl": args.worker,
        "sigma": args.sigma,
        "step_s_median": sorted(times)[len(times) // 2],
        "step_s_min": min(times),
        "step_s_all": times,
        "samples_per_s": args.batch / sorted(times)[len(times) // 2],
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_steps_mb": rss_before,
        "tf32": torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32,
    }
    if device.type == "cuda":
        result["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# -- numerics: same weights, same inputs, compare loss and gradients -------------------------------
def copy_weights(ref, ours) -> None:
    """Give the reference network exactly the weights, positions and BN parameters of ours."""
    import torch

    with torch.no_grad():
        for conv, layer in zip(ref.convs(), ours.delay_layers(), strict=True):
            conv.weight.copy_(layer.weight)
            conv.P.copy_(layer.position.unsqueeze(0))
        for block, hidden in zip(ref.blocks, ours.hidden, strict=True):
            block[1].weight.copy_(hidden.norm.weight)
            block[1].bias.copy_(hidden.norm.bias)


def run_check(args) -> dict:
    import torch
    import torch.nn.functional as F
    from spikingjelly.activation_based import functional

    from spikedelay.train.loss import summed_softmax_loss

    dtype = getattr(torch, args.check_dtype)
    device = torch.device(args.device)
    float32_only()  # TF32 would make both sides differ at 1e-3
    out = {"dtype": args.check_dtype, "dropout": 0.0, "per_sigma": []}
    x, labels, lengths = make_batch(args, dtype, device)
    for sigma in args.sigmas:
        torch.manual_seed(0)
        ours, _, cfg = build_spikedelay(args, sigma, 0.0)  # dropout off: masks cannot be shared
        ref, _ = build_reference(args, sigma, 0.0)
        ours, ref = ours.to(device, dtype), ref.to(device, dtype)
        copy_weights(ref, ours)
        ours.train()
        ref.train()
        v_out, out_len = ours(x, lengths)
        loss_b, _ = summed_softmax_loss(v_out, labels, out_len, masked=cfg.train.masked_loss)
        loss_b.backward()
        functional.reset_net(ref)
        loss_a = F.cross_entropy(torch.softmax(ref(x), 2).sum(0), labels)
        loss_a.backward()
        pairs = [("loss", loss_a.detach().reshape(1), loss_b.detach().reshape(1))]
        for i, (conv, layer) in enumerate(zip(ref.convs(), ours.delay_layers(), strict=True)):
            pairs.append((f"layer{i}.weight.grad", conv.weight.grad, layer.weight.grad))
            pairs.append((f"layer{i}.position.grad", conv.P.grad[0], layer.position.grad))
        for i, (block, hidden) in enumerate(zip(ref.blocks, ours.hidden, strict=True)):
            pairs.append((f"bn{i}.weight.grad", block[1].weight.grad, hidden.norm.weight.grad))
            pairs.append((f"bn{i}.bias.grad", block[1].bias.grad, hidden.norm.bias.grad))
        rows = []
        for name, a, b in pairs:
            diff = (a - b).abs().max().item()
            scale = a.abs().max().item()
            rows.append({"name": name, "max_abs_diff": diff, "max_abs": scale,
                         "ok": diff <= args.tol * max(1.0, scale)})
        out["per_sigma"].append({"sigma": sigma, "loss": loss_a.item(), "tensors": rows,
                                 "ok": all(r["ok"] for r in rows)})
    out["ok"] = all(s["ok"] for s in out["per_sigma"])
    out["tol"] = f"max |a - b| <= {args.tol} * max(1, max |a|) per tensor"
    return out


# -- driver ----------------------------------------------------------------------------------------
def _subprocess(args, extra: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *_forwarded(args), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed: {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _forwarded(args) -> list[str]:
    return ["--batch", str(args.batch), "--hidden", str(args.hidden), "--layers", str(args.layers),
            "--max-delay", str(args.max_delay), "--frames", str(args.frames),
            "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--check-dtype", args.check_dtype, "--tol", str(args.tol)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256, help="samples per step (SHD recipe: 256)")
    p.add_argument("--hidden", type=int, default=256, help="neurons per hidden layer")
    p.add_argument("--layers", type=int, default=2, help="hidden layers")
    p.add_argument("--max-delay", type=int, default=25, help="K, delay taps")
    p.add_argument("--frames", type=int, default=100, help="time steps per sample (10 ms bins)")
    p.add_argument("--sigma", default="both",
                   help="'initial' (K//2), 'final' (0.23), 'both', or numbers (comma-separated)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3, help="timed steps per implementation")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--check-dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--no-check", action="store_true", help="skip the numerics comparison")
    p.add_argument("--only", choices=["reference", "spikedelay"], help="time one side only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true",
                   help="CI size: batch 16, hidden 64, 40 frames, 2 steps")
    p.add_argument("--worker", choices=["reference", "spikedelay"], help=argparse.SUPPRESS)
    p.add_argument("--check-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--sigma-value", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.hidden, args.frames, args.steps = 16, 64, 40, 2
    args.hidden_sizes = [args.hidden] * args.layers
    initial = float(args.max_delay // 2)
    args.sigmas = {"initial": [initial], "final": [SIGMA_FINAL],
                   "both": [initial, SIGMA_FINAL]}.get(args.sigma)
    if args.sigmas is None:
        args.sigmas = [float(v) for v in args.sigma.split(",")]
    args.sigma = args.sigma_value
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    if args.check_worker:
        print(json.dumps(run_check(args)))
        return 0
    sigmas = args.sigmas
    impls = [args.only] if args.only else ["reference", "spikedelay"]
    runs = []
    for sigma in sigmas:
        row = {"sigma": sigma}
        for impl in impls:
            row[impl] = _subprocess(args, ["--worker", impl, "--sigma-value", str(sigma)])
        if len(impls) == 2:
            a, b = row["reference"], row["spikedelay"]
            row["speedup"] = b["samples_per_s"] / a["samples_per_s"]
            key = "max_memory_allocated_mb" if args.device.startswith("cuda") else "peak_rss_mb"
            row["memory_ratio"] = b[key] / a[key]
        runs.append(row)
    result = {
        "device": args.device,
        "torch_threads": _torch_threads(),
        "config": {"batch": args.batch, "hidden": args.hidden_sizes, "max_delay": args.max_delay,
                   "frames": args.frames, "in": N_IN, "classes": N_CLASSES,
                   "steps": args.steps, "warmup": args.warmup},
        "runs": runs,
    }
    if len(impls) == 2:
        # The headline numbers are the worst case over the σ values measured.
        result["speedup"] = min(r["speedup"] for r in runs)
        result["memory_ratio"] = max(r["memory_ratio"] for r in runs)
        weighted = schedule_weighted(runs, args.max_delay)
        if weighted is not None:
            result["schedule_weighted"] = weighted
    if not args.no_check:
        check_sigmas = ",".join(str(s) for s in sigmas)
        result["numerics"] = _subprocess(args, ["--check-worker", "--sigma", check_sigmas])
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
    return 0


def schedule_weighted(runs: list[dict], max_delay: int, epochs: int = 150) -> dict | None:
    """Epoch-averaged speedup over the paper's σ schedule (SHD: 150 epochs, σ annealed over the
    first quarter), interpolating each side's step time linearly in log σ between the initial and
    the final σ measured. ``None`` unless both were measured."""
    import math

    from spikedelay.train.schedule import sigma_at

    by_sigma = {r["sigma"]: r for r in runs}
    lo, hi = SIGMA_FINAL, float(max_delay // 2)
    if lo not in by_sigma or hi not in by_sigma or lo == hi:
        return None
    totals = {}
    for impl in ("reference", "spikedelay"):
        t_lo = by_sigma[lo][impl]["step_s_median"]
        t_hi = by_sigma[hi][impl]["step_s_median"]
        total = 0.0
        for epoch in range(epochs):
            s = sigma_at(epoch, max_delay=max_delay, epochs=epochs)
            a = (math.log(s) - math.log(lo)) / (math.log(hi) - math.log(lo))
            total += t_lo + a * (t_hi - t_lo)
        totals[impl] = total / epochs
    return {"epochs": epochs, "step_s": totals,
            "speedup": totals["reference"] / totals["spikedelay"],
            "note": "step time interpolated in log sigma between the two measured sigmas"}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def print_table(result: dict) -> None:
    c = result["config"]
    print(f"device {result['device']} ({result['torch_threads']} torch threads), batch "
          f"{c['batch']}, hidden {c['hidden']}, K {c['max_delay']}, {c['frames']} frames")
    mem_key = "max_memory_allocated_mb" if result["device"].startswith("cuda") else "peak_rss_mb"
    for r in result["runs"]:
        for impl in ("reference", "spikedelay"):
            if impl in r:
                v = r[impl]
                print(f"  σ={r['sigma']:<6g} {impl:<10} {v['step_s_median'] * 1e3:9.1f} ms/step "
                      f"{v['samples_per_s']:9.1f} samples/s  peak {v[mem_key]:7.0f} MB")
        if "speedup" in r:
            print(f"  σ={r['sigma']:<6g} speedup {r['speedup']:.1f}x, "
                  f"memory ratio {r['memory_ratio']:.2f}")
    if "speedup" in result:
        print(f"worst case: speedup {result['speedup']:.1f}x, "
              f"memory_ratio {result['memory_ratio']:.2f}")
    if "schedule_weighted" in result:
        print(f"σ-schedule-weighted epoch average ({result['schedule_weighted']['epochs']} "
              f"epochs): speedup {result['schedule_weighted']['speedup']:.1f}x")
    num = result.get("numerics")
    if num:
        for s in num["per_sigma"]:
            worst = max(s["tensors"], key=lambda t: t["max_abs_diff"] / max(1.0, t["max_abs"]))
            print(f"  numerics ({num['dtype']}, σ={s['sigma']:g}): "
                  f"{'OK' if s['ok'] else 'MISMATCH'}, loss {s['loss']:.6f}, worst "
                  f"{worst['name']} |Δ| {worst['max_abs_diff']:.2e} (max |g| "
                  f"{worst['max_abs']:.2e})")


if __name__ == "__main__":
    sys.exit(main())
