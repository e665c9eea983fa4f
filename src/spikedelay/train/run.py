"""One training run: data splits, selection protocol, metrics, checkpoints and exact resume.

Layout of a run folder::

    RUNDIR/config.yaml      the resolved config (what actually ran)
    RUNDIR/metrics.jsonl    one JSON line per epoch
    RUNDIR/last.safetensors every epoch: model, optimizers, schedulers, RNG (for resume)
    RUNDIR/best.safetensors the model selected on the validation set (or test, if asked)
    RUNDIR/metrics.json     final: val_acc, test_acc, params, epochs, protocol, ...

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
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spikedelay.atomic import atomic_write_bytes, remove_stale_temporaries
from spikedelay.config import RunConfig, config_from_dict, dump_config
from spikedelay.errors import CheckpointError, ConfigError, TrainingDiverged
from spikedelay.train.checkpoint import load_checkpoint, save_checkpoint
from spikedelay.train.distributed import World, init_world, shutdown, wrap_model
from spikedelay.train.loop import EpochStats, evaluate, train_epoch
from spikedelay.train.metrics_log import MetricsLog
from spikedelay.train.schedule import position_lr_at, sigma_at, sparsity_at
from spikedelay.train.setup import (
    build_model,
    build_optimizers,
    check_data_matches_model,
    pick_device,
    protocol_label,
    set_determinism,
)


def _rng_state(generator: torch.Generator, world: World | None) -> dict[str, Any]:
    """Batch order (shared by every process) and torch's RNG of every process (dropout)."""
    own = torch.get_rng_state()
    state: dict[str, Any] = {"batches": generator.get_state(),
                             "torch": own if world is None else world.gather_cpu(own)}
    if torch.cuda.is_available():
        if world is None:
            state["cuda"] = torch.cuda.get_rng_state_all()
        elif world.backend == "nccl":
            state["cuda"] = world.gather_cpu(torch.cuda.get_rng_state())
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, world: World | None,
                   log: Reporter) -> None:
    generator.set_state(state["batches"])
    saved = state["torch"]
    if world is None and isinstance(saved, torch.Tensor):
        torch.set_rng_state(saved)
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    elif world is not None and isinstance(saved, list) and len(saved) == world.size:
        torch.set_rng_state(saved[world.rank])
        if "cuda" in state and world.backend == "nccl":
            torch.cuda.set_rng_state(state["cuda"][world.rank])
    else:
        # Another number of processes than the checkpoint's: batches continue exactly, dropout
        # masks are drawn afresh (keeps the current per-process seeds).
        log("note: resuming with a different number of processes; dropout masks will differ "
            "from an uninterrupted run")


def _batches(dataset, cfg: RunConfig, *, shuffle: bool, generator: torch.Generator | None = None):
    return dataset.batches(cfg.train.batch_size, shuffle=shuffle, generator=generator)


def _check_same_config(run_dir: Path, cfg: RunConfig) -> None:
    saved = run_dir / "config.yaml"
    if saved.exists() and saved.read_text() != dump_config(cfg):
        raise ConfigError(
            f"{run_dir} already holds a run with a different config (see {saved}); "
            "choose another --out, or delete that folder to start over"
        )


Reporter = Callable[[str], None]


def _resume_error(path: Path, why: object) -> CheckpointError:
    return CheckpointError(
        f"{path}: cannot resume from it: {why}. Nothing was changed; to start this run over, "
        f"move {path.name} away (or pick another --out)."
    )


_RUN_FILES = ["last.safetensors", "best.safetensors", "metrics.jsonl", "metrics.json",
              "config.yaml"]


def train_run(
    cfg: RunConfig,
    run_dir: Path,
    *,
    progress: bool = True,
    log: Reporter = print,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train (or resume, or just report) the run in ``run_dir``; return the final metrics.

    Rerunning the same command after a crash resumes from ``last.safetensors``; a finished
    run is not trained again. ``stop_after_epochs`` ends early without writing final metrics
    (used by tests to simulate interruptions). Started by ``torchrun`` with several processes,
    it trains data-parallel; ranks other than 0 return ``{}``.
    """
    world, dist_device = init_world(cfg.train.device)
    try:
        return _train_run(cfg, Path(run_dir), world, dist_device, progress=progress, log=log,
                          stop_after_epochs=stop_after_epochs)
    finally:
        shutdown(world)


def _check_data_location(cfg: RunConfig) -> None:
    """The data must be findable before a run folder is made (its layout is checked later)."""
    d = cfg.data
    if d.root is None and d.dataset != "synthdigits":
        raise ConfigError(f"data.dataset = {d.dataset!r} has no default location: "
                          "pass --data DIR (the folder holding its files)")
    if d.dataset == "gsc" and d.root is not None:
        missing = [n for n in ("validation_list.txt", "testing_list.txt")
                   if not (Path(d.root).expanduser() / n).is_file()]
        if missing:
            raise ConfigError(f"data.root = {d.root!r}: not a Speech Commands v0.02 folder "
                              f"(missing {', '.join(missing)})")


def _train_run(cfg: RunConfig, run_dir: Path, world: World | None,
               dist_device: torch.device | None, *, progress: bool, log: Reporter,
               stop_after_epochs: int | None) -> dict[str, Any]:
    from spikedelay.data.loaders import load_dataset

    main = world is None or world.is_main
    if not main:
        progress, log = False, _silent
    _check_data_location(cfg)  # before the run folder exists, so a typo leaves nothing behind
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_same_config(run_dir, cfg)
    final_path = run_dir / "metrics.json"
    if final_path.exists():
        log(f"{run_dir} is already finished; not training again.")
        return json.loads(final_path.read_text()) if main else {}
    if world is not None:
        world.barrier()  # every rank has read config.yaml/metrics.json before rank 0 writes
    if main:
        remove_stale_temporaries(run_dir, _RUN_FILES)
        atomic_write_bytes(run_dir / "config.yaml", dump_config(cfg).encode())

    set_determinism(cfg)
    device = dist_device if dist_device is not None else pick_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    # Rank 0 fills the frame cache first; the others then read it instead of racing to build it.
    if world is not None and not main:
        world.barrier()
    splits = load_dataset(cfg.data, seed=cfg.train.seed, protocol=cfg.train.protocol,
                          progress=progress)
    if world is not None and main:
        world.barrier()
    check_data_matches_model(cfg, splits)
    train_set, val_set = splits.train.to(device), splits.val.to(device)

    model = build_model(cfg, device)  # same seed, same initial weights on every rank
    if world is not None and world.rank > 0:
        torch.manual_seed(cfg.train.seed + world.rank)  # own dropout masks per process
    optim = build_optimizers(model, cfg)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    start_epoch, best = 0, {"val_acc": -1.0, "val_loss": math.inf, "epoch": 0}
    last_path, best_path = run_dir / "last.safetensors", run_dir / "best.safetensors"
    if last_path.exists():
        try:
            state = load_checkpoint(last_path)
        except CheckpointError as err:
            raise _resume_error(last_path, str(err).removeprefix(f"{last_path}: ")) from None
        try:
            model.load_state_dict(state["model"])
            optim.load_state_dict(state["optimizers"])
            _set_rng_state(state["rng"], generator, world, log)
            start_epoch, best = int(state["epoch"]), dict(state["best"])
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as err:
            raise _resume_error(last_path, f"{type(err).__name__}: {err}") from None
        log(f"resuming {run_dir} after epoch {start_epoch}/{cfg.train.epochs}")
    metrics = MetricsLog(run_dir, keep_epochs=start_epoch, enabled=main)
    net = model if world is None else wrap_model(model, world, device)

    label = protocol_label(cfg.train.protocol)
    log(f"protocol: {label}")
    log(f"data: {len(splits.train)} train / {len(splits.val)} "
        f"{'val' if cfg.train.protocol == 'validation' else 'test (selection)'} / "
        f"{len(splits.test)} test samples; model: {model.num_parameters():,} parameters; "
        f"device: {device}" + ("" if world is None else f" x {world.size} processes"))

    common = {"config": cfg.to_dict(), "framing": splits.framing,
              "class_names": splits.class_names, "protocol": cfg.train.protocol}
    bar = _progress(range(start_epoch, cfg.train.epochs), cfg.train.epochs, start_epoch, progress)
    t_start = time.perf_counter()
    end_epoch = cfg.train.epochs if stop_after_epochs is None else min(
        cfg.train.epochs, stop_after_epochs)
    try:
        for epoch in bar:
            if epoch >= end_epoch:
                break
            t0 = time.perf_counter()
            sigma = sigma_at(epoch, max_delay=cfg.model.max_delay, epochs=cfg.train.epochs,
                             fraction=cfg.train.sigma_epochs_fraction,
                             floor=cfg.train.sigma_floor)
            model.set_sigma(sigma)
            if cfg.model.delay_mask == "learned":
                model.set_sparsity(sparsity_at(epoch, sparsity=cfg.model.delay_sparsity,
                                               epochs=cfg.train.epochs))
            if optim.positions is not None:
                for group in optim.positions.param_groups:
                    group["lr"] = position_lr_at(epoch, base_lr=cfg.train.lr_positions,
                                                 epochs=cfg.train.epochs)
            lr = optim.weights.param_groups[0]["lr"]
            try:
                stats = train_epoch(
                    net, _batches(train_set, cfg, shuffle=True, generator=generator),
                    optim.all(), masked_loss=cfg.train.masked_loss, epoch=epoch,
                    after_step=model.clamp_positions_, world=world,
                )
            except TrainingDiverged as err:
                kept = (f"{last_path} (after epoch {epoch}) is unchanged"
                        if epoch > 0 else "no checkpoint had been written yet")
                raise TrainingDiverged(f"{err}\nThe last good checkpoint: {kept}.") from None
            optim.schedule.step()
            row: dict[str, Any] = {
                "epoch": epoch + 1, "sigma": sigma, "lr": lr,
                "lr_positions": (optim.positions.param_groups[0]["lr"]
                                 if optim.positions is not None else 0.0),
                "train_loss": stats.loss, "train_acc": stats.accuracy,
            }
            is_eval_epoch = (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs
            if is_eval_epoch:
                val = evaluate(model, _batches(val_set, cfg, shuffle=False),
                               masked_loss=cfg.train.masked_loss, world=world)
                row.update(val_loss=val.loss, val_acc=val.accuracy)
                if (val.accuracy, -val.loss) > (best["val_acc"], -best["val_loss"]):
                    best = {"val_acc": val.accuracy, "val_loss": val.loss, "epoch": epoch + 1}
                    if main:
                        save_checkpoint(best_path, {**common, "model": model.state_dict(),
                                                    "epoch": epoch + 1, "best": best})
            row["time_s"] = time.perf_counter() - t0
            rng = _rng_state(generator, world)  # a collective under torchrun: every rank
            # Metrics line before `last`: a kill between them redoes this epoch and drops the
            # line; the other order would lose the line for good.
            metrics.write(row)
            if main:
                save_checkpoint(last_path, {
                    **common, "model": model.state_dict(), "optimizers": optim.state_dict(),
                    "rng": rng, "epoch": epoch + 1, "best": best,
                })
            if progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(_postfix(row, best))
            elif not progress:
                log(_epoch_line(row, cfg.train.epochs))
    finally:
        metrics.close()
        if hasattr(bar, "close"):
            bar.close()
    if stop_after_epochs is not None and stop_after_epochs < cfg.train.epochs:
        return {"stopped_after": stop_after_epochs}
    if not main:
        world.barrier()  # wait for rank 0's test evaluation, so the job ends together
        return {}
    final = finish_run(cfg, run_dir, splits, device, best, metrics.history,
                       train_time_s=time.perf_counter() - t_start)
    if world is not None:
        world.barrier()
    return final


def _silent(_: str) -> None:
    pass


def finish_run(cfg: RunConfig, run_dir: Path, splits, device: torch.device, best: dict,
               history: list[dict], *, train_time_s: float) -> dict[str, Any]:
    """Evaluate the selected model on the test set, once, and write ``metrics.json``."""
    state = load_checkpoint(run_dir / "best.safetensors")
    model = build_model(cfg, device)
    model.load_state_dict(state["model"])
    test = evaluate(model, _batches(splits.test.to(device), cfg, shuffle=False),
                    masked_loss=cfg.train.masked_loss)
    last = history[-1] if history else {}
    final = {
        "protocol": cfg.train.protocol,
        "protocol_label": protocol_label(cfg.train.protocol),
        "val_acc": best["val_acc"],
        "test_acc": test.accuracy,
        "test_loss": test.loss,
        "best_epoch": best["epoch"],
        "epochs": cfg.train.epochs,
        "params": model.num_parameters(),
        "delays": cfg.model.delays,
        "last_train_acc": last.get("train_acc"),
        "last_val_acc": last.get("val_acc"),
        "train_samples": len(splits.train),
        "val_samples": len(splits.val),
        "test_samples": len(splits.test),
        "train_time_s": train_time_s,
        "seed": cfg.train.seed,
        "checkpoint": "best.safetensors",
    }
    atomic_write_bytes(run_dir / "metrics.json", (json.dumps(final, indent=2) + "\n").encode())
    return final


def eval_run(run_dir: Path, *, data_root: str | None = None, progress: bool = False,
             checkpoint: str = "best.safetensors") -> dict[str, Any]:
    """Evaluate a run's selected checkpoint on its test set, exactly as training did."""
    from spikedelay.data.loaders import load_dataset

    run_dir = Path(run_dir)
    path = run_dir / checkpoint
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    state = load_checkpoint(path)
    try:
        raw_cfg = state["config"]
        if data_root is not None:
            raw_cfg = {**raw_cfg, "data": {**raw_cfg["data"], "root": data_root}}
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: checkpoint has no usable config ({err!r})") from None
    try:
        cfg = config_from_dict(raw_cfg)
    except ConfigError as err:
        raise ConfigError(f"config stored in {path}: {err}\n(if the data moved, pass --data DIR)") \
            from None
    set_determinism(cfg)
    device = pick_device(cfg.train.device)
    splits = load_dataset(cfg.data, seed=cfg.train.seed, protocol=cfg.train.protocol,
                          progress=progress)
    check_data_matches_model(cfg, splits)
    model = build_model(cfg, device)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(
            f"{path}: weights do not fit the model of its own config: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    test: EpochStats = evaluate(model, _batches(splits.test.to(device), cfg, shuffle=False),
                                masked_loss=cfg.train.masked_loss)
    return {"test_acc": test.accuracy, "test_loss": test.loss, "test_samples": test.samples,
            "checkpoint": str(path), "epoch": state.get("epoch"),
            "protocol": protocol_label(cfg.train.protocol)}


def _progress(iterable, total: int, initial: int, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, initial=initial, desc="train", unit="epoch",
                dynamic_ncols=True)


def _postfix(row: dict[str, Any], best: dict[str, Any]) -> dict[str, str]:
    out = {"loss": f"{row['train_loss']:.3f}", "train": f"{row['train_acc']:.1%}"}
    if "val_acc" in row:
        out["val"] = f"{row['val_acc']:.1%}"
    out["best"] = f"{best['val_acc']:.1%}@{best['epoch']}"
    out["σ"] = f"{row['sigma']:.2f}"
    return out


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = f" val {row['val_acc']:.1%}" if "val_acc" in row else ""
    return (f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.3f} "
            f"train {row['train_acc']:.1%}{val} σ {row['sigma']:.2f} ({row['time_s']:.1f}s)")
