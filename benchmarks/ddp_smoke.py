"""One-process DDP smoke run: NCCL (GPU) or gloo (``--device cpu``) through our wrapper.

Joins a process group of one, wraps the quick-recipe model with
:func:`spikedelay.train.distributed.wrap_model` (DDP plus BatchNorm statistics all-reduced on
DDP's own group) and takes two training steps; the loss and every gradient must equal those
of the same model without DDP (a sum over one process is the identity), and the collectives
must complete. ``torchrun --nproc_per_node 1`` would not do: a world of one trains without DDP.

    python benchmarks/ddp_smoke.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import json
import socket
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args(argv)
    import torch
    import torch.distributed as dist

    from spikedelay.config import load_config
    from spikedelay.train.distributed import World, wrap_model
    from spikedelay.train.loss import summed_softmax_loss
    from spikedelay.train.setup import build_model

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --device cpu for gloo)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    backend = "nccl" if device.type == "cuda" else "gloo"
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)
    try:
        cfg = load_config("quick", ["model.dropout=0.0"])
        torch.manual_seed(0)
        plain = build_model(cfg, device).train()
        ddp = wrap_model(copy.deepcopy(plain), World(0, 1, 0, backend), device)
        g = torch.Generator().manual_seed(1)
        frames = 60
        worst = 0.0
        for _ in range(2):
            x = (torch.rand(args.batch, frames, cfg.model.in_features, generator=g) < 0.05)
            x = x.float().to(device)
            lengths = torch.randint(frames // 2, frames + 1, (args.batch,), generator=g).to(device)
            labels = torch.randint(0, cfg.model.n_classes, (args.batch,), generator=g).to(device)
            losses = []
            for net in (plain, ddp):
                net.zero_grad()
                v, out_len = net(x, lengths)
                loss, _ = summed_softmax_loss(v, labels, out_len)
                loss.backward()
                losses.append(float(loss))
            worst = max(worst, abs(losses[0] - losses[1]) / abs(losses[0]))
            for a, b in zip(plain.parameters(), ddp.module.parameters(), strict=True):
                if a.grad is not None:
                    scale = max(float(a.grad.abs().max()), 1e-30)
                    worst = max(worst, float((a.grad - b.grad).abs().max()) / scale)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    result = {"backend": backend, "device": str(device), "steps": 2, "max_rel_diff": worst,
              "ok": worst <= 1e-5}
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
