"""Capturing and restoring the random state a run's next epoch depends on (exact resume).

What is saved: the batch-order generator (the same on every process), torch's CPU RNG of every
process (dropout on CPU), and — only when the run trains on a GPU — the CUDA RNG of the GPU it
trains on (dropout on CUDA). Why not every visible GPU (``torch.cuda.get_rng_state_all``): it
initialises CUDA on every card even for a CPU run, and a run saved with one number of visible
GPUs could not be restored with another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from spikedelay.train.distributed import World

Reporter = Callable[[str], None]


def capture_rng(generator: torch.Generator, world: World | None,
                device: torch.device) -> dict[str, Any]:
    """The RNG state to store in ``last.safetensors``; a collective under torchrun."""
    own = torch.get_rng_state()
    state: dict[str, Any] = {"batches": generator.get_state(),
                             "torch": own if world is None else world.gather_cpu(own)}
    if device.type == "cuda":
        own_cuda = torch.cuda.get_rng_state(device)
        if world is None:
            state["cuda"] = own_cuda
        elif world.backend == "nccl":
            state["cuda"] = world.gather_cpu(own_cuda)
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator, world: World | None,
                device: torch.device, log: Reporter) -> None:
    """Put back what :func:`capture_rng` saved, as far as this run's processes and device allow.

    The batch order always continues exactly. Dropout masks continue exactly when the number
    of processes and the device type are those of the checkpoint; otherwise they are drawn
    afresh (with a note), since there is no state that would give the same masks.
    """
    generator.set_state(state["batches"])
    saved, saved_cuda = state["torch"], state.get("cuda")
    if world is None and isinstance(saved, torch.Tensor):
        torch.set_rng_state(saved)
        cuda = _own_cuda_state(saved_cuda, device)
    elif world is not None and isinstance(saved, list) and len(saved) == world.size:
        torch.set_rng_state(saved[world.rank])
        cuda = (saved_cuda[world.rank] if isinstance(saved_cuda, list)
                and len(saved_cuda) == world.size else None)
    else:
        log("note: resuming with a different number of processes; dropout masks will differ "
            "from an uninterrupted run")
        return
    if device.type != "cuda":
        # (a list in a single-process checkpoint is every visible GPU's state, which older
        # versions saved even for CPU runs: nothing was lost then)
        gpu_run = isinstance(saved_cuda, torch.Tensor) if world is None else saved_cuda is not None
        if gpu_run:
            log("note: resuming a GPU run on the CPU; dropout masks will differ from an "
                "uninterrupted run")
        return
    if cuda is None:
        log("note: the checkpoint has no CUDA random state for this GPU; dropout masks will "
            "differ from an uninterrupted run")
        return
    torch.cuda.set_rng_state(cuda, device)


def _own_cuda_state(saved: Any, device: torch.device) -> torch.Tensor | None:
    """This process's CUDA state: one tensor, or (older checkpoints) one per visible GPU."""
    if isinstance(saved, torch.Tensor):
        return saved
    if isinstance(saved, (list, tuple)) and saved:
        index = (device.index or 0) if device.type == "cuda" else 0
        return saved[index] if index < len(saved) else None
    return None
