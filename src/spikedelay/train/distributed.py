"""Data-parallel training on ``torch.distributed``: process group, batch shares, global statistics.

Launch the ordinary command under ``torchrun``::

    torchrun --standalone --nproc_per_node 2 -m spikedelay train --config quick --out runs/ddp

Every process draws the *same* sequence of global batches (same seeded generator) and takes a
contiguous share of each one, so the global batch is ``train.batch_size`` whatever the number
of processes. Gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel`;
the loss of each process is its *sum* over its share divided by ``global_batch / world_size``,
so after that average the gradient is the one of the mean over the global batch. BatchNorm
statistics are made global through ``MaskedBatchNorm1d.stats_all_reduce``, a differentiable
all-reduce on DDP's own process group (as ``nn.SyncBatchNorm`` does): no second communicator,
whose collectives could interleave with DDP's gradient buckets in different orders on different
ranks (a known NCCL deadlock). Every rank issues them in the same order — forward in layer
order, backward in the reverse order autograd walks the same graph — between DDP's bucket
all-reduces, which are queued on the same group in that same order. Only rank 0 writes files
or prints.

What is not identical to one process: dropout masks are drawn per process (same distribution,
other samples), and floating-point sums are grouped differently (differences ~1e-7).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from spikedelay.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel job (``size`` processes, this one ``rank``)."""

    rank: int
    size: int
    local_rank: int
    backend: str
    stats_group: Any = None  # process group of DDP and the BatchNorm statistics (None: default)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of ``n`` (sizes differ by at most 1)."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def sum(self, values: Tensor) -> Tensor:
        """Sum of ``values`` over every process (not differentiable; for counters and flags),
        returned on the device of ``values``."""
        out = values.detach().to(_collective_device(self), copy=True)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(values.device)

    def gather_cpu(self, value: Tensor) -> list[Tensor]:
        """``value`` (same shape and dtype on every rank) from every rank, rank order, on CPU."""
        device = _collective_device(self)
        parts = [torch.empty_like(value, device=device) for _ in range(self.size)]
        dist.all_gather(parts, value.to(device))
        return [p.cpu() for p in parts]

    def barrier(self) -> None:
        dist.barrier()


def _collective_device(world: World) -> torch.device:
    # NCCL only moves CUDA tensors; gloo only CPU ones.
    return torch.device("cuda", torch.cuda.current_device()) if world.backend == "nccl" \
        else torch.device("cpu")


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Any) -> Tensor:  # type: ignore[override]
        ctx.group = group
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def launched_distributed() -> bool:
    """True when started by torchrun (or any launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank from the launcher's environment (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def init_world(device_name: str) -> tuple[World | None, torch.device | None]:
    """Join the job torchrun started; returns ``(None, None)`` for a plain single process.

    Backend: NCCL with one GPU per process (``cuda:LOCAL_RANK``) when the device is CUDA,
    gloo on CPU. ``device_name`` is ``train.device``; ``cuda:N`` is refused (torchrun picks
    the GPU of each process).
    """
    if not launched_distributed():
        return None, None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name.startswith("cuda:"):
        raise ConfigError(
            f"train.device = {device_name!r}: under torchrun use 'cuda' or 'auto' "
            "(each process takes the GPU cuda:LOCAL_RANK)"
        )
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device = {device_name!r}: CUDA is not available")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s): "
                "use --nproc_per_node <= the number of GPUs"
            )
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    world = World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank,
                  backend=backend)
    return world, device


def shutdown(world: World | None) -> None:
    if world is not None and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, world: World,
               device: torch.device) -> torch.nn.parallel.DistributedDataParallel:
    """DDP over ``model`` with global-batch BatchNorm statistics (see the module docstring)."""
    from spikedelay.neurons import MaskedBatchNorm1d

    group = world.stats_group
    for module in model.modules():
        if isinstance(module, MaskedBatchNorm1d):
            module.stats_all_reduce = lambda x, g=group: _AllReduceSum.apply(x, g)
    # Buffers (BN running stats) are computed from global statistics, hence already equal on
    # every rank: no need to broadcast them before each forward.
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False, process_group=group,
    )
