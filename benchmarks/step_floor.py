"""The measured floor of the exact DFT training step: its dense BLAS work alone, in one run.

Issue 15 asks for 10× per step (SHD recipe, batch 256), 6× per epoch (quick recipe) and a
memory ratio ≤ 0.5 against the reference formulation (``dcls`` + SpikingJelly). This script
measures, in one run and each part in a fresh process:

* **ours**: the training step ``spikedelay train`` runs (``train_speed.build_spikedelay``) at the
  SHD recipe's shapes (batch 256) and at the quick recipe's (batch 64), σ = K//2 and 0.23;
* **the floor**: every dense matmul that step calls (``mm``, ``bmm``, ``addmm_``, ``baddbmm_``:
  the frequency products, the dense transforms and the kernel spectra/gradients), recorded with
  their exact shapes, strides and dtypes from one step and replayed alone, each one timed
  ``--replays`` times (min: cache-warm operands, an optimistic floor), with its multiply-adds
  and the achieved GFLOP/s. The rest of our step (the numba kernels: sparse transforms, Gaussian
  kernel, BatchNorm → LIF; Adam, dropout, glue) is on top of it;
* **the reference** step (``train_speed.build_reference``) on the same inputs, and with that
  ``floor_speedup = reference / floor``: the speedup an implementation would reach if it did
  nothing but these matmuls;
* the same for a whole epoch of the quick recipe on synthdigits-900 (13 training batches of 64
  + validation; ``epoch_speed``'s loops and batches);
* **memory**: the RSS of our process step by step up to the first training step (torch,
  numba, the kernels, model, data) against the reference's peak: ``memory_floor_ratio`` =
  our RSS before the first step / the reference's peak, and what ``malloc_trim`` gives back.

Clock: with ``--threads 1`` (default) every time is the process's CPU time with one torch and
one numba thread, which other processes on a shared machine disturb much less than the wall
clock; the ratios (ours / floor, reference / floor) are what matters. ``--threads 2`` times the
wall clock instead.

Usage::

    python benchmarks/step_floor.py --json          # everything, ~5 min on 2 cores
    python benchmarks/step_floor.py --no-epoch      # steps and memory only
    python benchmarks/step_floor.py --quick --json  # CI-sized smoke run (seconds)

Needs the ``bench`` extra for the reference (``dcls`` and SpikingJelly 0.0.0.0.14, see
train_speed.py) and ``../shared/data/synthdigits-900`` for the epoch (else ``--no-epoch``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIGMA_FINAL = 0.23
TARGET_STEP, TARGET_EPOCH, TARGET_MEMORY = 10.0, 6.0, 0.5

# Where each dense matmul of ops/delay_conv.py comes from: a piece of the source line of the
# outermost _DftConv.forward/backward frame → (part of the method, group).
SITES = [
    ("prod = torch.bmm(xf, hf", "frequency product", "products"),
    ("grad_hf = torch.bmm", "frequency product (kernel gradient)", "products"),
    ("grad_xf = torch.bmm", "frequency product (input gradient)", "products"),
    ("y = _inverse(", "inverse DFT", "transforms"),
    ("grad_prod =", "adjoint of the inverse DFT", "transforms"),
    ("grad_x = _inverse(", "inverse DFT of the input gradient", "transforms"),
    ("xf = _input_spectrum(", "DFT of a dense input", "transforms"),
    ("hf = _kernel_spectrum(", "kernel spectrum", "kernel side"),
    ("grad_k_tm.addmm_", "kernel gradient DFT", "kernel side"),
]
MATMULS = {"mm", "bmm", "addmm", "addmm_", "baddbmm", "baddbmm_"}


# -- clocks and memory -----------------------------------------------------------------------------
def clock(threads: int) -> float:
    return time.process_time() if threads == 1 else time.perf_counter()


def set_threads(threads: int) -> None:
    """Before torch or numba is imported: the thread pools of this (worker) process."""
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[key] = str(threads)


def rss_mb() -> dict:
    """VmRSS (now) and VmHWM (peak) of this process, MB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 1024.0
    return {"rss_mb": out.get("VmRSS"), "hwm_mb": out.get("VmHWM"),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def malloc_trim() -> bool:
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


# -- recording and replaying the matmuls -----------------------------------------------------------
def _spec(value):
    import torch

    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), tuple(value.stride()), value.storage_offset(),
                str(value.dtype))
    if isinstance(value, (list, tuple)):
        return tuple(_spec(v) for v in value)
    return value


def _site() -> tuple[str, str]:
    """(part, group) of the matmul being called, from the call stack."""
    line = ""
    for frame in traceback.extract_stack():
        if frame.filename.endswith("delay_conv.py") and frame.name in ("forward", "backward"):
            line = frame.line or ""
    for needle, part, group in SITES:
        if needle in line:
            return part, group
    return ("other: " + line.strip()[:60]) if line else "other", "other"


def recorder():
    """A dispatch mode that counts every dense matmul by (op, operand specs, site)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls: Counter = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = func.overloadpacket.__name__
            if name in MATMULS:
                key = (str(func), _spec(args), _spec(tuple(sorted(kwargs.items()))), *_site())
                self.calls[key] += 1
            return func(*args, **kwargs)

    return Record()


def _materialise(spec, gen):
    import torch

    if isinstance(spec, tuple) and spec and spec[0] == "T":
        _, shape, stride, offset, dtype = spec
        extent = offset + 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True) if n)
        dt = getattr(torch, dtype.removeprefix("torch."))
        buf = torch.randn(max(extent, 1), generator=gen, dtype=dt)
        return buf.as_strided(shape, stride, offset)
    if isinstance(spec, tuple):
        return tuple(_materialise(s, gen) for s in spec)
    return spec


def _resolve(op_name: str):
    import torch

    packet, _, overload = op_name.removeprefix("aten.").partition(".")
    return getattr(getattr(torch.ops.aten, packet), overload or "default")


def multiply_adds(op_name: str, args_spec) -> int:
    """m·k·n (× batch) of one matmul from its operand shapes."""
    name = op_name.removeprefix("aten.").split(".")[0]
    shapes = [s[1] for s in args_spec if isinstance(s, tuple) and s and s[0] == "T"]
    a, b = shapes[-2], shapes[-1]  # addmm/baddbmm: (self, a, b); mm/bmm: (a, b)
    if name in ("mm", "addmm", "addmm_"):
        return a[0] * a[1] * b[1]
    return a[0] * a[1] * a[2] * b[2]


def replay(calls: Counter, threads: int, replays: int) -> dict:
    """Time each recorded matmul alone (``replays`` times, min and median), scale by its count."""
    import torch

    gen = torch.Generator().manual_seed(0)
    parts: dict = defaultdict(lambda: {"s_min": 0.0, "s_median": 0.0, "macs": 0, "calls": 0})
    for (op_name, args_spec, kwargs_spec, part, group), count in calls.items():
        func = _resolve(op_name)
        args = _materialise(args_spec, gen)
        kwargs = dict(_materialise(kwargs_spec, gen))
        func(*args, **kwargs)  # first touch of the operands and of BLAS's buffers
        times = []
        for _ in range(replays):
            t0 = clock(threads)
            func(*args, **kwargs)
            times.append(clock(threads) - t0)
        times.sort()
        row = parts[(group, part)]
        row["s_min"] += times[0] * count
        row["s_median"] += times[len(times) // 2] * count
        row["macs"] += multiply_adds(op_name, args_spec) * count
        row["calls"] += count
        del args, kwargs
    total = {k: sum(r[k] for r in parts.values()) for k in ("s_min", "s_median", "macs", "calls")}
    by_part = [{"group": g, "part": p, **r, "gflops": 2 * r["macs"] / max(r["s_min"], 1e-12) / 1e9}
               for (g, p), r in sorted(parts.items())]
    return {"floor_s": total["s_min"], "floor_median_s": total["s_median"],
            "macs": total["macs"], "matmul_calls": total["calls"],
            "gflops": 2 * total["macs"] / max(total["s_min"], 1e-12) / 1e9, "parts": by_part}


def profile_step(step) -> list[dict]:
    """Self CPU time of one step by operator (torch.profiler), the top entries, ms."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows) or 1.0
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3,
             "share": e.self_cpu_time_total / total} for e in rows[:12]]


# -- workers (each in a fresh process) -------------------------------------------------------------
def _train_speed_args(batch: int, frames: int, hidden: int):
    sys.path.insert(0, str(HERE))
    import train_speed

    return train_speed, train_speed.parse_args(
        ["--batch", str(batch), "--frames", str(frames), "--hidden", str(hidden)])


def worker_step(opts) -> dict:
    """Our step or the reference's: CPU time per step; ours also its matmuls replayed alone."""
    import torch

    torch.set_num_threads(opts.threads)
    ts, args = _train_speed_args(opts.batch, opts.frames, opts.hidden)
    torch.manual_seed(0)
    if opts.impl == "reference":
        net, step_fn = ts.build_reference(args, opts.sigma_value, 0.4)
        optimizers = ts.reference_optimizers(net)
    else:
        from spikedelay.train.setup import build_optimizers

        net, step_fn, cfg = ts.build_spikedelay(args, opts.sigma_value, 0.4)
        optimizers = build_optimizers(net, cfg).all()
    net.train()
    step = step_fn(net, optimizers)
    x, labels, lengths = ts.make_batch(args, torch.float32, torch.device("cpu"))
    rss_before = rss_mb()
    for _ in range(opts.warmup):
        step(x, labels, lengths)
    times = []
    for _ in range(opts.steps):
        t0 = clock(opts.threads)
        step(x, labels, lengths)
        times.append(clock(opts.threads) - t0)
    times.sort()
    out = {"impl": opts.impl, "batch": opts.batch, "sigma": opts.sigma_value,
           "step_s": times[len(times) // 2], "step_s_all": times,
           "rss_before_steps": rss_before, "peak": rss_mb()}
    if opts.impl == "spikedelay":
        rec = recorder()
        with rec:
            step(x, labels, lengths)
        out["floor"] = replay(rec.calls, opts.threads, opts.replays)
        out["profile"] = profile_step(lambda: step(x, labels, lengths))
    return out


def worker_epoch(opts) -> dict:
    """One epoch (epoch_speed's loops, batches and data) in CPU time; ours also its matmuls."""
    import torch

    torch.set_num_threads(opts.threads)
    sys.path.insert(0, str(HERE))
    import epoch_speed

    torch.manual_seed(0)
    eargs = argparse.Namespace(data=opts.data, hidden=opts.hidden, max_batches=opts.max_batches,
                               sigma_value=opts.sigma_value)
    cfg, splits = epoch_speed.load_splits(eargs)
    train, val = epoch_speed.batch_lists(splits, cfg, eargs)
    make = epoch_speed.reference_epoch if opts.impl == "reference" else \
        epoch_speed.spikedelay_epoch
    epoch = make(eargs, cfg)
    epoch(train[:1], val[:1])  # untimed warm-up batch each way, as epoch_speed
    t0 = clock(opts.threads)
    train_s, val_s = epoch(train, val)
    out = {"impl": opts.impl, "sigma": opts.sigma_value, "epoch_s": clock(opts.threads) - t0,
           "train_wall_s": train_s, "val_wall_s": val_s, "train_batches": len(train),
           "train_words": sum(int(b[2].shape[0]) for b in train),
           "val_words": sum(int(b[2].shape[0]) for b in val)}
    if opts.impl == "spikedelay":
        rec = recorder()
        with rec:
            epoch(train, val)
        out["floor"] = replay(rec.calls, opts.threads, opts.replays)
    return out


def worker_memory(opts) -> dict:
    """RSS after each stage of our start-up, up to and after the first training steps."""
    stages = [("python", rss_mb())]
    import torch

    torch.set_num_threads(opts.threads)
    stages.append(("import torch", rss_mb()))
    import numba  # noqa: F401

    stages.append(("import numba", rss_mb()))
    from spikedelay.ops import dispatch
    from spikedelay.train.loop import train_epoch
    from spikedelay.train.setup import build_optimizers

    stages.append(("import spikedelay (model, train)", rss_mb()))
    ts, args = _train_speed_args(opts.batch, opts.frames, opts.hidden)
    torch.manual_seed(0)
    net, _, cfg = ts.build_spikedelay(args, opts.sigma_value, 0.4)
    optimizers = build_optimizers(net, cfg).all()
    stages.append(("model + optimizers", rss_mb()))
    x, labels, lengths = ts.make_batch(args, torch.float32, torch.device("cpu"))
    stages.append((f"batch ({opts.batch} × {opts.frames} × 140)", rss_mb()))
    modules = {}
    for op in ("gaussian", "delay_conv", "batchnorm", "lif"):
        modules[op] = dispatch.select(op, x)
    stages.append(("import the numba backends (no kernel loaded)", rss_mb()))
    # The kernels of each path, loaded by a tiny copy of the model (as the preload does).
    from dataclasses import replace

    from spikedelay.train.setup import build_model

    tiny_cfg = replace(cfg.model, in_features=4, hidden=[4] * len(cfg.model.hidden), n_classes=2,
                       dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        tiny = build_model(replace(cfg, model=tiny_cfg), torch.device("cpu"))
    tx = (torch.arange(2 * 30 * 4, dtype=torch.float32).view(2, 30, 4) % 11 == 0).float()
    tl = torch.tensor([30, 27])
    tiny.train()
    out, _ = tiny(tx, tl)
    stages.append(("kernels of the training forward", rss_mb()))
    out.sum().backward()
    stages.append(("kernels of the training backward", rss_mb()))
    tiny.eval()
    with torch.no_grad():
        tiny(tx, tl)
    stages.append(("kernels of the evaluation", rss_mb()))
    loaded = _loaded_kernels(modules.values())
    trimmed = malloc_trim()
    stages.append(("malloc_trim(0)" if trimmed else "malloc_trim unavailable", rss_mb()))
    before_first = stages[-1][1]["rss_mb"]
    for i in range(2):
        train_epoch(net, [(x, lengths, labels)], optimizers, masked_loss=cfg.train.masked_loss,
                    after_step=net.clamp_positions_)
        stages.append((f"after training step {i + 1}", rss_mb()))
    malloc_trim()
    stages.append(("malloc_trim(0) after the steps", rss_mb()))
    return {"batch": opts.batch, "sigma": opts.sigma_value, "loaded_kernels": loaded,
            "stages": [{"stage": s, **m} for s, m in stages], "rss_before_first_step_mb":
            before_first, "peak_mb": stages[-1][1]["hwm_mb"]}


def _loaded_kernels(modules) -> dict:
    """Compiled/loaded numba kernels per backend module (dispatchers with an overload)."""
    import numba.core.registry

    out = {}
    for mod in modules:
        names = [n for n, v in vars(mod).items()
                 if isinstance(v, numba.core.registry.CPUDispatcher) and v.overloads]
        out[mod.__name__.rsplit(".", 1)[-1]] = sorted(names)
    return out


# -- driver ----------------------------------------------------------------------------------------
def _run(opts, worker: str, impl: str, sigma: float, batch: int | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--impl", impl,
           "--sigma-value", str(sigma), "--threads", str(opts.threads),
           "--batch-value", str(batch or 0), "--frames", str(opts.frames),
           "--hidden", str(opts.hidden), "--steps", str(opts.steps), "--warmup",
           str(opts.warmup), "--replays", str(opts.replays), "--data", str(opts.data),
           "--max-batches", str(opts.max_batches)]
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[key] = str(opts.threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed: {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _group_totals(floor: dict) -> dict:
    totals: dict = defaultdict(lambda: {"s_min": 0.0, "macs": 0})
    for row in floor["parts"]:
        totals[row["group"]]["s_min"] += row["s_min"]
        totals[row["group"]]["macs"] += row["macs"]
    return dict(totals)


def measure_steps(opts) -> list[dict]:
    rows = []
    for recipe, batch in opts.recipes:
        for sigma in opts.sigmas:
            ours = _run(opts, "step", "spikedelay", sigma, batch)
            ref = _run(opts, "step", "reference", sigma, batch)
            floor = ours["floor"]["floor_s"]
            rows.append({
                "recipe": recipe, "batch": batch, "sigma": sigma,
                "ours_s": ours["step_s"], "floor_s": floor,
                "reference_s": ref["step_s"],
                "ours_over_floor": ours["step_s"] / floor,
                "speedup": ref["step_s"] / ours["step_s"],
                "floor_speedup": ref["step_s"] / floor,
                "target": TARGET_STEP if recipe == "shd" else None,
                "macs": ours["floor"]["macs"], "gflops": ours["floor"]["gflops"],
                "groups": _group_totals(ours["floor"]),
                "ours": ours, "reference": ref,
            })
    return rows


def measure_epochs(opts) -> list[dict]:
    rows = []
    for sigma in opts.sigmas:
        ours = _run(opts, "epoch", "spikedelay", sigma)
        ref = _run(opts, "epoch", "reference", sigma)
        floor = ours["floor"]["floor_s"]
        rows.append({"sigma": sigma, "ours_s": ours["epoch_s"], "floor_s": floor,
                     "reference_s": ref["epoch_s"], "ours_over_floor": ours["epoch_s"] / floor,
                     "speedup": ref["epoch_s"] / ours["epoch_s"],
                     "floor_speedup": ref["epoch_s"] / floor, "target": TARGET_EPOCH,
                     "macs": ours["floor"]["macs"], "gflops": ours["floor"]["gflops"],
                     "groups": _group_totals(ours["floor"]), "ours": ours, "reference": ref})
    return rows


def measure_memory(opts, steps: list[dict]) -> dict:
    batch = opts.recipes[0][1]
    ours = _run(opts, "memory", "spikedelay", opts.sigmas[-1], batch)
    refs = [r["reference"]["peak"]["ru_maxrss_mb"] for r in steps if r["batch"] == batch]
    if not refs:
        return {"ours": ours}
    ref_peak = min(refs)
    return {"batch": batch, "ours": ours, "reference_peak_mb": ref_peak,
            "memory_floor_ratio": ours["rss_before_first_step_mb"] / ref_peak,
            "memory_ratio": ours["peak_mb"] / ref_peak, "target": TARGET_MEMORY}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1,
                   help="torch and numba threads per worker (1: CPU time; more: wall clock)")
    p.add_argument("--sigma", default="both", choices=["initial", "final", "both"])
    p.add_argument("--steps", type=int, default=3, help="timed steps per worker (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--replays", type=int, default=3, help="timings of each recorded matmul")
    p.add_argument("--frames", type=int, default=100, help="time steps of the step's batch")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" /
                   "synthdigits-900", help="the epoch's data (quick recipe)")
    p.add_argument("--max-batches", type=int, default=0, help="cut the epoch (smoke tests)")
    p.add_argument("--no-epoch", action="store_true", help="skip the epoch")
    p.add_argument("--no-memory", action="store_true", help="skip the memory stages")
    p.add_argument("--quick", action="store_true",
                   help="smoke size: hidden 32, 30 frames, batches 16/8, 2-batch epoch")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--worker", choices=["step", "epoch", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=["reference", "spikedelay"], help=argparse.SUPPRESS)
    p.add_argument("--sigma-value", type=float, help=argparse.SUPPRESS)
    p.add_argument("--batch-value", type=int, default=0, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    opts.recipes = [("shd", 256), ("quick", 64)]
    if opts.quick:
        opts.hidden, opts.frames, opts.max_batches = 32, 30, 2
        opts.steps, opts.replays = 1, 1
        opts.recipes = [("shd", 16), ("quick", 8)]
    k = 25
    opts.sigmas = {"initial": [float(k // 2)], "final": [SIGMA_FINAL],
                   "both": [float(k // 2), SIGMA_FINAL]}[opts.sigma]
    opts.batch = opts.batch_value
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    if opts.worker:
        set_threads(opts.threads)
        fn = {"step": worker_step, "epoch": worker_epoch, "memory": worker_memory}
        print(json.dumps(fn[opts.worker](opts)))
        return 0
    if not opts.no_epoch and not (opts.data / "shd_train.h5").exists() and \
            not (opts.data / "shd_train.h5.gz").exists():
        print(f"step_floor: no SHD-layout files in {opts.data} (pass --data DIR or --no-epoch)",
              file=sys.stderr)
        return 2
    result = {"load_average_start": os.getloadavg(), "threads": opts.threads,
              "clock": "process CPU time" if opts.threads == 1 else "wall clock",
              "hidden": opts.hidden, "frames": opts.frames}
    result["steps"] = measure_steps(opts)
    if not opts.no_epoch:
        result["epochs"] = measure_epochs(opts)
    if not opts.no_memory:
        result["memory"] = measure_memory(opts, result["steps"])
    result["load_average_end"] = os.getloadavg()
    if opts.json:
        print(json.dumps(result, indent=1))
    else:
        print_report(result)
    return 0


def print_report(result: dict) -> None:
    print(f"{result['clock']}, {result['threads']} thread(s); load average "
          f"{result['load_average_start'][0]:.1f} → {result['load_average_end'][0]:.1f}")
    rows = result["steps"] + result.get("epochs", [])
    for r in rows:
        what = f"step {r['recipe']} B={r['batch']}" if "recipe" in r else "epoch quick"
        print(f"{what:<18} σ={r['sigma']:<5g} ours {r['ours_s']:.3f} s, floor {r['floor_s']:.3f} s"
              f" ({r['macs'] / 1e9:.2f} G multiply-adds, {r['gflops']:.0f} GFLOP/s), reference "
              f"{r['reference_s']:.3f} s: ours/floor {r['ours_over_floor']:.2f}, speedup "
              f"{r['speedup']:.2f}x, floor speedup {r['floor_speedup']:.2f}x"
              + (f" (target {r['target']:g}x)" if r.get("target") else ""))
        for group, g in sorted(r["groups"].items()):
            print(f"    {group:<12} {g['s_min'] * 1e3:8.1f} ms  {g['macs'] / 1e9:6.2f} G")
    mem = result.get("memory")
    if mem:
        for s in mem["ours"]["stages"]:
            print(f"  {s['stage']:<46} RSS {s['rss_mb']:7.0f} MB (peak {s['hwm_mb']:7.0f})")
        if "reference_peak_mb" in mem:
            base = mem["ours"]["rss_before_first_step_mb"]
            print(f"memory: ours before the first step {base:.0f} MB, reference peak "
                  f"{mem['reference_peak_mb']:.0f} MB: floor ratio "
                  f"{mem['memory_floor_ratio']:.2f} (ratio {mem['memory_ratio']:.2f}, "
                  f"target {mem['target']:g})")


if __name__ == "__main__":
    sys.exit(main())
