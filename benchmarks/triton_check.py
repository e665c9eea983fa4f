"""Every Triton kernel against the torch backend, on one device: max error and time per call.

On a GPU the kernels are compiled for real (what CI cannot do); ``--device cpu`` runs them in
Triton's interpreter (small sizes: a dry run of this script). Each op's forward and backward get
the same inputs in both backends; errors are relative to the reference output's peak, spikes
count as mismatches. TF32 is off (float32 against float32). The recurrent engine's rows time the
run's dtype but compare a float64 run: in float32 the mat-vec's summation order can flip a spike
near the threshold, and the recurrence then spreads it, so float32 outputs of two correct
backends differ. Their backward rows time forward + backward (the reference's backward is
autograd through its own forward).

    python benchmarks/triton_check.py --device cuda          # SHD-sized tensors
    python benchmarks/triton_check.py --device cpu --json    # interpreted, tiny
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=5, help="timed calls per kernel (median)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    if args.device == "cpu":  # Triton reads this when it is imported: before anything else
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from spikedelay.ops import (
        _batchnorm_torch,
        _batchnorm_triton,
        _channel_delay_torch,
        _channel_delay_triton,
        _gaussian_torch,
        _gaussian_triton,
        _lif_torch,
        _lif_triton,
        _recurrent_torch,
        _recurrent_triton,
    )

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --device cpu for the interpreted dry run)")
    small = device.type == "cpu"
    batch, steps, channels = (3, 12, 10) if small else (256, 112, 256)
    n_out, n_in, copies, taps = (6, 5, 2, 25) if small else (256, 256, 1, 25)
    repeats = 1 if small else args.repeats
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + shift).to(
            device=device, dtype=dtype)

    x = rand(batch, steps, channels, scale=1.4)
    gy = rand(batch, steps, channels, scale=2.0, shift=-1.0)
    lengths = torch.randint(steps // 2, steps + 1, (batch,), generator=g)
    lengths[0] = steps
    mask = (torch.arange(steps)[None] < lengths[:, None]).to(device=device, dtype=torch.uint8)
    w_bn, b_bn = rand(channels, shift=0.5), rand(channels, scale=0.5)
    w_g = rand(n_out, n_in, copies, scale=2.0, shift=-1.0)
    p_g = rand(n_out, n_in, copies, scale=taps - 1.0, shift=-(taps // 2))
    g_tm = rand(taps, n_in, n_out, scale=2.0, shift=-1.0)
    tau, thr, alpha, eps, sigma = 1.005, 1.0, 5.0, 1e-5, 1.77
    left, right = taps - 1, (taps - 1) // 2  # the per-channel delay, reference padding
    k_cd = torch.softmax(rand(channels, taps, scale=4.0), 1)
    gy_cd = rand(batch, steps + left + right - taps + 1, channels, scale=2.0, shift=-1.0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        out = fn()  # the first call compiles (untimed)
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return out, sorted(times)[len(times) // 2]

    def compare(name, tri, ref, spikes=(), exact=None):
        """``exact``: (tri, ref) in float64, compared instead (the timing stays tri's, ref's)."""
        tri_out, t_tri = timed(tri)
        ref_out, t_ref = timed(ref)
        if exact is not None:
            tri_out, ref_out = exact[0](), exact[1]()
        tri_out = tri_out if isinstance(tri_out, tuple) else (tri_out,)
        ref_out = ref_out if isinstance(ref_out, tuple) else (ref_out,)
        err, mismatch = 0.0, 0
        for i, (a, b) in enumerate(zip(tri_out, ref_out, strict=True)):
            a, b = a.double(), b.double()
            if i in spikes:
                mismatch += int((a != b).sum())
            else:
                err = max(err, float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30))
        tol = 1e-10 if dtype == torch.float64 or exact is not None else 1e-4
        return {"kernel": name, "max_rel_err": err, "spike_mismatches": mismatch,
                "ok": err <= tol and mismatch <= max(1, x.numel() // 100_000),
                "triton_ms": 1e3 * t_tri, "torch_ms": 1e3 * t_ref,
                "speedup": t_ref / t_tri if t_tri > 0 else math.inf}

    n_rec, lags = (7, 5) if small else (256, 32)

    def recurrent_problem(neuron, dt):
        """DelRec's layer (LIF, triangle-delayed recurrence) or SE-adLIF (plain recurrence)."""
        r = torch.Generator().manual_seed(1)

        def draw(*shape, scale=1.0, shift=0.0):
            return (torch.rand(*shape, generator=r, dtype=torch.float64) * scale + shift).to(
                device=device, dtype=dt)

        adaptive = neuron == "se-adlif"
        xr = draw(batch, steps, n_rec, scale=20.0 if adaptive else 1.4)  # q = 120 adapts hard
        w_rec = (torch.randn(n_rec, n_rec, generator=r, dtype=torch.float64)
                 / math.sqrt(n_rec)).to(device=device, dtype=dt)
        if adaptive:  # one step of lag
            m = torch.zeros(n_rec, 2, device=device, dtype=dt)
            m[:, 1] = 1.0
        else:  # triangle of half-width 1.5 around lag 1 + d, d in [0, L - 4)
            d = draw(n_rec, 1, scale=lags - 4.0)
            k = torch.arange(lags, device=device, dtype=dt)
            m = ((1.5 - (k - 1 - d).abs()).clamp_min(0) / 1.5**2) * (k > 0)
        drop = (draw(batch, n_rec) > 0.2).to(dt) / 0.8
        coeffs = [draw(n_rec, scale=hi - lo, shift=lo) for lo, hi in
                  ((math.exp(-1 / 5), math.exp(-1 / 25)), (math.exp(-1 / 60),
                   math.exp(-1 / 300)), (0.0, 1.0), (0.0, 2.0))]
        kw = (dict(neuron="se-adlif", reset="hard", tau=2.0, q=120.0, threshold=1.0,
                   surrogate="slayer", p1=5.0, p2=0.4) if adaptive else
              dict(neuron="lif", reset="hard", tau=1.05, q=1.0, threshold=1.0,
                   surrogate="atan", p1=5.0, p2=0.0))
        leaves = [t.requires_grad_() for t in (xr, w_rec, m, *(coeffs if adaptive else []))]
        cot = [draw(batch, steps, n_rec, scale=2.0, shift=-1.0) for _ in range(2)]
        return (xr, w_rec, m, drop, *coeffs), kw, leaves, cot

    def recurrent_rows(name, neuron):
        def forward(mod, dt):
            args, kw, _, _ = problems[dt]
            return lambda: tuple(o.detach() for o in mod.recurrent_sequence(*args, **kw))

        def backward(mod, dt):
            args, kw, leaves, (cs, ch) = problems[dt]

            def run():
                s, h = mod.recurrent_sequence(*args, **kw)
                return torch.autograd.grad((s * cs).sum() + (h * ch).sum(), leaves)
            return run

        problems = {dt: recurrent_problem(neuron, dt) for dt in {dtype, torch.float64}}
        f64 = torch.float64
        return [
            compare(f"{name}_forward", forward(_recurrent_triton, dtype),
                    forward(_recurrent_torch, dtype), spikes=(0,),
                    exact=(forward(_recurrent_triton, f64), forward(_recurrent_torch, f64))),
            compare(f"{name}_backward", backward(_recurrent_triton, dtype),
                    backward(_recurrent_torch, dtype),
                    exact=(backward(_recurrent_triton, f64), backward(_recurrent_torch, f64))),
        ]

    h_ref, _ = _lif_torch.lif_forward(x, tau, thr)
    mean, var, n = _batchnorm_torch.stats(x, mask)
    rstd = torch.rsqrt(var + eps)
    rows = [
        compare("lif_forward", lambda: _lif_triton.lif_forward(x, tau, thr),
                lambda: _lif_torch.lif_forward(x, tau, thr), spikes=(1,)),
        compare("lif_backward", lambda: _lif_triton.lif_backward(gy, h_ref, tau, thr, alpha),
                lambda: _lif_torch.lif_backward(gy, h_ref, tau, thr, alpha)),
        compare("li_forward", lambda: _lif_triton.li_forward(x, tau),
                lambda: _lif_torch.li_forward(x, tau)),
        compare("li_backward", lambda: _lif_triton.li_backward(gy, tau),
                lambda: _lif_torch.li_backward(gy, tau)),
        compare("masked_bn_forward",
                lambda: _batchnorm_triton.masked_bn_forward(x, mask, w_bn, b_bn, eps),
                lambda: _batchnorm_torch.masked_bn_forward(x, mask, w_bn, b_bn, eps)),
        compare("masked_bn_backward",
                lambda: _batchnorm_triton.masked_bn_backward(gy, x, mask, w_bn, mean, var, eps),
                lambda: _batchnorm_torch.masked_bn_backward(gy, x, mask, w_bn, mean, var, eps)),
        compare("bn_lif_forward",
                lambda: _batchnorm_triton.bn_lif_forward(x, mask, w_bn, b_bn, eps, tau, thr)[:3],
                lambda: _batchnorm_torch.bn_lif_forward(x, mask, w_bn, b_bn, eps, tau, thr)[:3],
                spikes=(0,)),
        compare("bn_lif_backward",
                lambda: _batchnorm_triton.bn_lif_backward(gy, x, mask, w_bn, b_bn, mean, rstd,
                                                          tau, thr, alpha, n),
                lambda: _batchnorm_torch.bn_lif_backward(gy, x, mask, w_bn, b_bn, mean, rstd,
                                                         tau, thr, alpha, n)),
        compare("gaussian_forward",
                lambda: _gaussian_triton.gaussian_forward(w_g, p_g, sigma, taps, 1e-7),
                lambda: _gaussian_torch.gaussian_forward(w_g, p_g, sigma, taps, 1e-7)),
        compare("gaussian_backward",
                lambda: _gaussian_triton.gaussian_backward(w_g, p_g, sigma, g_tm, 1e-7),
                lambda: _gaussian_torch.gaussian_backward(w_g, p_g, sigma, g_tm, 1e-7)),
        compare("channel_delay_forward",
                lambda: _channel_delay_triton.channel_delay_forward(x, k_cd, left, right),
                lambda: _channel_delay_torch.channel_delay_forward(x, k_cd, left, right)),
        compare("channel_delay_backward",
                lambda: _channel_delay_triton.channel_delay_backward(x, k_cd, gy_cd, left, right,
                                                                     True, True),
                lambda: _channel_delay_torch.channel_delay_backward(x, k_cd, gy_cd, left, right,
                                                                    True, True)),
        *recurrent_rows("recurrent", "lif"),
        *recurrent_rows("adaptive", "se-adlif"),
    ]
    result = {"device": str(device), "dtype": args.dtype,
              "interpreted": device.type == "cpu",
              "sizes": {"lif": [batch, steps, channels], "gaussian": [n_out, n_in, copies, taps],
                        "channel_delay": [batch, steps, channels, taps],
                        "recurrent": [batch, steps, n_rec, lags]},
              "kernels": rows, "ok": all(r["ok"] for r in rows)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for r in rows:
            print(f"{r['kernel']:>20}: max rel err {r['max_rel_err']:.1e}, spike mismatches "
                  f"{r['spike_mismatches']}, triton {r['triton_ms']:.2f} ms vs torch "
                  f"{r['torch_ms']:.2f} ms ({r['speedup']:.1f}x) {'OK' if r['ok'] else 'FAIL'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
