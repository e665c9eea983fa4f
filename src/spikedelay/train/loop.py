"""One epoch of training and one evaluation pass; no file I/O, no printing.

Why no host syncs per batch: ``.item()`` stalls a GPU pipeline, so running sums, the first
non-finite step and accuracy stay on the device and are read once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from spikedelay.errors import TrainingDiverged
from spikedelay.train.loss import summed_softmax, summed_softmax_loss


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    samples: int


def _grads_finite(params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    norms = torch._foreach_norm(grads)
    return torch.isfinite(torch.stack(norms).sum())


def train_epoch(
    model: torch.nn.Module,
    batches: Iterable,
    optimizers: list[torch.optim.Optimizer],
    *,
    masked_loss: bool = True,
    epoch: int = 0,
    after_step: Callable[[], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> EpochStats:
    """Train for one pass over ``batches`` of ``(x, lengths, labels)``.

    ``after_step`` runs after every optimizer step (position clamping). Raises TrainingDiverged
    naming the epoch and step when the loss or a gradient is NaN/Inf; the caller keeps the last
    good checkpoint because nothing is written here.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = correct = None
    seen = 0
    for step, (x, lengths, labels) in enumerate(batches):
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        # Unmasked = the reference: no lengths anywhere (BatchNorm and loss see padding too).
        v_out, out_lengths = model(x, lengths if masked_loss else None)
        loss, m = summed_softmax_loss(v_out, labels, out_lengths, masked=masked_loss)
        loss.backward()
        finite = torch.isfinite(loss.detach()) & _grads_finite(params)
        # One sync per step on CPU is free; it is what lets us stop *before* a bad update.
        if not bool(finite):
            raise TrainingDiverged(
                f"non-finite loss or gradient at epoch {epoch + 1}, step {step + 1} "
                f"(loss = {loss.item():.4g}); stopped before applying it, the last good "
                "checkpoint is kept. Try a lower train.lr or check the input data for NaNs."
            )
        for opt in optimizers:
            opt.step()
        if after_step is not None:
            after_step()
        batch_loss = loss.detach() * labels.shape[0]
        batch_correct = (m.argmax(-1) == labels).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        seen += labels.shape[0]
        if on_batch is not None:
            on_batch(step)
    if seen == 0:
        return EpochStats(float("nan"), float("nan"), 0)
    return EpochStats(float(loss_sum) / seen, float(correct) / seen, seen)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable, *, masked_loss: bool = True) -> EpochStats:
    """Loss and accuracy of the integer-delay model (``model.eval()``: rounded positions)."""
    model.eval()
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.long)
    seen = 0
    for x, lengths, labels in batches:
        v_out, out_lengths = model(x, lengths if masked_loss else None)
        loss, m = summed_softmax_loss(v_out, labels, out_lengths, masked=masked_loss)
        loss_sum = loss_sum.to(loss.device) + loss * labels.shape[0]
        correct = correct.to(labels.device) + (m.argmax(-1) == labels).sum()
        seen += labels.shape[0]
    if seen == 0:
        return EpochStats(float("nan"), float("nan"), 0)
    return EpochStats(float(loss_sum) / seen, float(correct) / seen, seen)


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-summed softmax ``m`` (N, C) and labels (N,) of the integer-delay model."""
    model.eval()
    outs, labs = [], []
    for x, lengths, labels in batches:
        v_out, out_lengths = model(x, lengths)
        outs.append(summed_softmax(v_out, out_lengths).cpu())
        labs.append(labels.cpu())
    return torch.cat(outs), torch.cat(labs)
