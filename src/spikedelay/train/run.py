"""One training run, top to bottom: data, model, resume, the epoch loop, the final test.

Honest by default: the model is selected on a validation split held out from the training data
and the test set is evaluated once, at the end. ``train.protocol=test-selected`` reproduces the
reference (selection on test) and every output says so.

Exact resume: ``last.safetensors`` holds everything the next epoch depends on (weights,
optimizer and scheduler state, the batch-order generator and torch's RNG, the best-so-far
record). Each epoch writes, in order: ``best.safetensors`` (if improved), the epoch's line of
``metrics.jsonl``, then ``last.safetensors``. A kill anywhere in between resumes from the
previous ``last``: metrics lines past it are dropped and the epoch is redone (with the same RNG
state, so in deterministic mode it rewrites the same ``best``). Under ``torchrun`` only rank 0
writes (see :mod:`spikedelay.train.distributed`).

The jobs around the loop live in their own modules: the run folder and its identity
(:mod:`~spikedelay.train.run_folder`), RNG capture (:mod:`~spikedelay.train.rng`), the training
checkpoint (:mod:`~spikedelay.train.checkpoint`), data checks
(:mod:`~spikedelay.train.data_checks`), the final evaluation
(:mod:`~spikedelay.train.evaluation`) and what is shown (:mod:`~spikedelay.train.progress`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spikedelay.config import RunConfig
from spikedelay.data.augment import Augmenter
from spikedelay.data.sets import DataSplits
from spikedelay.errors import TrainingDiverged
from spikedelay.recurrent import recurrent_sigma_at
from spikedelay.train.checkpoint import init_from_run, restore_training_state, training_state
from spikedelay.train.data_checks import check_data_location, check_data_matches_model
from spikedelay.train.distributed import World, init_world, shutdown, wrap_model
from spikedelay.train.evaluation import final_metrics
from spikedelay.train.kernel_notice import announce_kernel_compile, preload_kernels
from spikedelay.train.loop import evaluate, train_epoch
from spikedelay.train.progress import EpochProgress
from spikedelay.train.rng import capture_rng
from spikedelay.train.run_folder import NoFolder, RunFolder, RunStore
from spikedelay.train.schedule import position_lr_at, sigma_at, sparsity_at
from spikedelay.train.setup import (
    Optimizers,
    TorchGlobals,
    build_model,
    build_optimizers,
    pick_device,
    protocol_label,
    set_determinism,
)

Reporter = Callable[[str], None]


def train_run(
    cfg: RunConfig,
    run_dir: Path | None,
    *,
    progress: bool = True,
    log: Reporter = print,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train (or resume, or just report) the run in ``run_dir``; return the final metrics.

    Rerunning the same command after a crash resumes from ``last.safetensors``; a finished
    run is not trained again. ``run_dir=None`` trains in memory and writes nothing at all (not
    even frame-cache entries). ``stop_after_epochs`` ends early without writing final metrics
    (used by tests to simulate interruptions). Started by ``torchrun`` with several processes,
    it trains data-parallel; ranks other than 0 return ``{}``.
    """
    saved = TorchGlobals.capture()  # the run's thread/TF32/determinism settings end with it
    world, dist_device = init_world(cfg.train.device)
    try:
        store = NoFolder() if run_dir is None else RunFolder(Path(run_dir), world)
        return _train_run(cfg, store, world, dist_device, progress=progress, log=log,
                          stop_after_epochs=stop_after_epochs)
    finally:
        shutdown(world)
        saved.restore()


def _train_run(cfg: RunConfig, store: RunStore, world: World | None,
               dist_device: torch.device | None, *, progress: bool, log: Reporter,
               stop_after_epochs: int | None) -> dict[str, Any]:
    main = world is None or world.is_main
    if not main:
        progress, log = False, _silent
    check_data_location(cfg)  # before the run folder exists, so a typo leaves nothing behind
    finished = store.open(cfg)
    if finished is not None:
        log(f"{store.describe()} is already finished; not training again.")
        return finished

    set_determinism(cfg)
    device = dist_device if dist_device is not None else pick_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    kernels_cached = preload_kernels(cfg, device)  # in the background, while the data load
    splits = _load_splits(cfg, world, progress=progress,
                          cache_writes=not isinstance(store, NoFolder))
    check_data_matches_model(cfg, splits)
    train_set, val_set = splits.train.to(device), splits.val.to(device)
    # Training batches only; each epoch's draws come from (seed, epoch), so resume needs no state.
    augment = Augmenter.build(cfg.data.augment, train_set, splits.framing, seed=cfg.train.seed)

    model = build_model(cfg, device)  # same seed, same initial weights on every rank
    if world is not None and world.rank > 0:
        torch.manual_seed(cfg.train.seed + world.rank)  # own dropout masks per process
    optim = build_optimizers(model, cfg)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    start_epoch, best = 0, {"val_acc": -1.0, "val_loss": math.inf, "epoch": 0}
    last = store.load_last()
    if last is not None:
        start_epoch, best = restore_training_state(last, store.last_path, model, optim,
                                                   generator, world, device, log)
        log(f"resuming {store.describe()} after epoch {start_epoch}/{cfg.train.epochs}")
    elif cfg.train.init_from is not None:
        log(f"initial weights from {init_from_run(model, cfg.train.init_from)}")
    net = model if world is None else wrap_model(model, world, device)

    log(f"protocol: {protocol_label(cfg.train.protocol)}")
    log(f"data: {len(splits.train)} train / {len(splits.val)} "
        f"{'val' if cfg.train.protocol == 'validation' else 'test (selection)'} / "
        f"{len(splits.test)} test samples; model: {model.num_parameters():,} parameters; "
        f"device: {device}" + ("" if world is None else f" x {world.size} processes"))
    announce_kernel_compile(device.type, log, cached=kernels_cached)

    common = {"config": cfg.to_dict(), "framing": splits.framing,
              "class_names": splits.class_names, "protocol": cfg.train.protocol}
    end_epoch = cfg.train.epochs if stop_after_epochs is None else min(
        cfg.train.epochs, stop_after_epochs)
    metrics = store.metrics_log(start_epoch)
    shown = EpochProgress(start_epoch, end_epoch, cfg.train.epochs, enabled=progress, log=log)
    t_start = time.perf_counter()
    try:
        for epoch in shown:
            t0 = time.perf_counter()
            sigma = _set_epoch_schedules(model, optim, cfg, epoch)
            lr = optim.weights.param_groups[0]["lr"]
            train_batches = _batches(train_set, cfg, shuffle=True, generator=generator)
            if augment is not None:
                train_batches = augment.batches(train_batches, epoch)
            try:
                stats = train_epoch(
                    net, train_batches, optim.all(), masked_loss=cfg.train.masked_loss, epoch=epoch,
                    after_step=model.clamp_positions_, world=world,
                )
            except TrainingDiverged as err:
                kept = store.kept_after_divergence(epoch)
                raise TrainingDiverged(f"{err}\nThe last good checkpoint: {kept}.") from None
            optim.schedule.step()
            row: dict[str, Any] = {
                "epoch": epoch + 1, "sigma": sigma, "lr": lr,
                "lr_positions": (optim.positions.param_groups[0]["lr"]
                                 if optim.positions is not None else 0.0),
                "train_loss": stats.loss, "train_acc": stats.accuracy,
            }
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs:
                val = evaluate(model, _batches(val_set, cfg, shuffle=False),
                               masked_loss=cfg.train.masked_loss, world=world)
                row.update(val_loss=val.loss, val_acc=val.accuracy)
                if (val.accuracy, -val.loss) > (best["val_acc"], -best["val_loss"]):
                    best = {"val_acc": val.accuracy, "val_loss": val.loss, "epoch": epoch + 1}
                    store.save_best({**common, "model": model.state_dict(),
                                     "epoch": epoch + 1, "best": best})
            row["time_s"] = time.perf_counter() - t0
            rng = capture_rng(generator, world, device)  # a collective under torchrun
            # Metrics line before `last`: a kill between them redoes this epoch and drops the
            # line; the other order would lose the line for good.
            store.write_metrics(metrics, row)
            store.save_last(training_state(common, model, optim, rng, epoch + 1, best))
            shown.show(row, best)
    finally:
        metrics.close()
        shown.close()

    if stop_after_epochs is not None and stop_after_epochs < cfg.train.epochs:
        return {"stopped_after": stop_after_epochs}
    if not main:
        world.barrier()  # wait for rank 0's test evaluation, so the job ends together
        return {}
    final = final_metrics(cfg, splits, device, store.best_model_state(), best, metrics.history,
                          train_time_s=time.perf_counter() - t_start)
    store.write_final(final)
    if world is not None:
        world.barrier()
    return final


def _load_splits(cfg: RunConfig, world: World | None, *, progress: bool,
                 cache_writes: bool) -> DataSplits:
    """The run's data; under torchrun rank 0 fills the frame cache first and the others then
    read it instead of racing to build it."""
    from spikedelay.data.loaders import load_dataset

    main = world is None or world.is_main
    if world is not None and not main:
        world.barrier()
    splits = load_dataset(cfg.data, seed=cfg.train.seed, protocol=cfg.train.protocol,
                          progress=progress, cache_writes=cache_writes)
    if world is not None and main:
        world.barrier()
    return splits


def _set_epoch_schedules(model: torch.nn.Module, optim: Optimizers, cfg: RunConfig,
                         epoch: int) -> float:
    """σ of the Gaussian kernels and of the recurrent-delay triangles, the sparsity of learned
    delay masks and the positions' (and recurrent delays') learning rates for ``epoch``;
    returns the Gaussian σ."""
    t = cfg.train
    sigma = sigma_at(epoch, max_delay=cfg.model.max_delay, epochs=t.epochs,
                     fraction=t.sigma_epochs_fraction, floor=t.sigma_floor)
    model.set_sigma(sigma)
    model.set_recurrent_sigma(recurrent_sigma_at(epoch, epochs=t.epochs,
                                                 sigma0=t.recurrent_sigma_init,
                                                 decay=t.recurrent_sigma_decay))
    if cfg.model.delay_mask == "learned":
        model.set_sparsity(sparsity_at(epoch, sparsity=cfg.model.delay_sparsity, epochs=t.epochs))
    if optim.positions is not None:  # positions and recurrent delays, each its own base lr
        for group in optim.positions.param_groups:
            group["lr"] = position_lr_at(epoch, base_lr=group.get("base_lr", t.lr_positions),
                                         epochs=t.epochs)
    return sigma


def _batches(dataset, cfg: RunConfig, *, shuffle: bool, generator: torch.Generator | None = None):
    return dataset.batches(cfg.train.batch_size, shuffle=shuffle, generator=generator)


def _silent(_: str) -> None:
    pass
