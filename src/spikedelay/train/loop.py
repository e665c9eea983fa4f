"""One epoch of training and one evaluation pass; no file I/O, no printing.

Why no host syncs per batch: ``.item()`` stalls a GPU pipeline, so running sums and accuracy
stay on the device and are read once per epoch (the finiteness check is the one sync per step).

Data-parallel (``world`` given, see :mod:`spikedelay.train.distributed`): every process gets
the same global batches and keeps its share; the loss of a share is its sum divided by
``global_batch / world.size`` so that DDP's gradient average is the gradient of the mean over
the global batch; epoch statistics are summed over processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from spikedelay.errors import TrainingDiverged
from spikedelay.train.distributed import World
from spikedelay.train.loss import summed_softmax_loss
from spikedelay.train.optim import Adam


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    samples: int
    confusion: list[list[int]] | None = None  # [label][prediction] counts, if asked for


def _grads_finite(params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    norms = torch._foreach_norm(grads)
    return torch.isfinite(torch.stack(norms).sum())


def _my_share(batch, world: World | None):
    if world is None:
        return batch
    part = world.share(int(batch[2].shape[0]))
    return tuple(t[part] for t in batch)


def _epoch_stats(loss_sum, correct, seen: int, world: World | None) -> EpochStats:
    if loss_sum is None:
        loss_sum, correct = torch.zeros(()), torch.zeros(())
    totals = torch.stack([loss_sum.double().cpu(), correct.double().cpu(),
                          torch.tensor(float(seen), dtype=torch.float64)])
    if world is not None:
        totals = world.sum(totals)
    loss, right, n = totals.tolist()
    if n == 0:
        return EpochStats(float("nan"), float("nan"), 0)
    return EpochStats(loss / n, right / n, int(n))


def train_epoch(
    model: torch.nn.Module,
    batches: Iterable,
    optimizers: list[Adam],
    *,
    masked_loss: bool = True,
    epoch: int = 0,
    after_step: Callable[[], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    world: World | None = None,
) -> EpochStats:
    """Train for one pass over global ``batches`` of ``(x, lengths, labels)``.

    ``after_step`` runs after every optimizer step (position clamping). Raises TrainingDiverged
    naming the epoch and step when the loss or a gradient is NaN/Inf (on any process); the
    caller keeps the last good checkpoint because nothing is written here. With ``world``,
    ``model`` is the DDP-wrapped model and this process trains on its share of each batch.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = correct = None
    seen = 0
    size = 1 if world is None else world.size
    for step, batch in enumerate(batches):
        n_global = int(batch[2].shape[0])
        x, lengths, labels = _my_share(batch, world)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        # Unmasked = the reference: no lengths anywhere (BatchNorm and loss see padding too).
        v_out, out_lengths = model(x, lengths if masked_loss else None)
        batch_loss, m = summed_softmax_loss(
            v_out, labels, out_lengths, masked=masked_loss, reduction="sum")
        loss = batch_loss / (n_global / size)  # = the mean over the global batch, after DDP
        loss.backward()
        finite = torch.isfinite(loss.detach()) & _grads_finite(params)
        # One sync per step on CPU is free; it is what lets us stop *before* a bad update.
        if world is not None:
            finite = world.sum((~finite).to(torch.int32)) == 0
        if not bool(finite):
            raise TrainingDiverged(
                f"non-finite loss or gradient at epoch {epoch + 1}, step {step + 1} "
                f"(loss = {loss.item():.4g}); stopped before applying it. Try a lower "
                "train.lr or check the input data for NaNs."
            )
        for opt in optimizers:
            opt.step()
        if after_step is not None:
            after_step()
        batch_loss = batch_loss.detach()
        batch_correct = (m.argmax(-1) == labels).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        seen += int(labels.shape[0])
        if on_batch is not None:
            on_batch(step)
    return _epoch_stats(loss_sum, correct, seen, world)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable, *, masked_loss: bool = True,
             world: World | None = None, n_classes: int | None = None) -> EpochStats:
    """Loss and accuracy of the integer-delay model (``model.eval()``: rounded positions).

    ``model`` is the plain module (not DDP); with ``world`` each process evaluates its share
    of every batch and the sums are combined (the same numbers on every process). With
    ``n_classes``, ``confusion[label][prediction]`` counts the samples as well.
    """
    model.eval()
    loss_sum = correct = counts = None
    seen = 0
    for batch in batches:
        x, lengths, labels = _my_share(batch, world)
        if labels.shape[0] == 0:
            continue
        v_out, out_lengths = model(x, lengths if masked_loss else None)
        batch_loss, m = summed_softmax_loss(
            v_out, labels, out_lengths, masked=masked_loss, reduction="sum")
        pred = m.argmax(-1)
        batch_correct = (pred == labels).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        if n_classes is not None:
            pairs = torch.bincount(labels * n_classes + pred, minlength=n_classes * n_classes)
            counts = pairs if counts is None else counts + pairs
        seen += int(labels.shape[0])
    stats = _epoch_stats(loss_sum, correct, seen, world)
    if n_classes is not None:
        if counts is None:
            counts = torch.zeros(n_classes * n_classes, dtype=torch.int64)
        if world is not None:
            counts = world.sum(counts)
        stats.confusion = counts.cpu().reshape(n_classes, n_classes).tolist()
    return stats
