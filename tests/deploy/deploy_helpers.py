"""Deploy test helpers: small DelaySNNs with realistic (non-trivial) BatchNorm and delays, and run
folders in the layout ``spikedelay train`` writes (checkpoint via ``save_checkpoint``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spikedelay.checkpoint import save_checkpoint
from spikedelay.config import ModelConfig, RunConfig, dump_config
from spikedelay.model import DelaySNN


def randomised_model(cfg: ModelConfig, seed: int = 0) -> DelaySNN:
    """A DelaySNN with random weights, positions and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = DelaySNN(cfg)
    with torch.no_grad():
        for block in model.hidden:
            bn = block.norm
            bn.running_mean.uniform_(-0.3, 0.5)
            bn.running_var.uniform_(0.2, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.4)
    return model.eval()


def save_run(run_dir: Path, model: DelaySNN, *, framing: dict | None = None,
             class_names: list[str] | None = None, epochs: int = 3,
             data_root: Path | None = None) -> Path:
    """Write a run folder as train/run.py does (config.yaml, best/last checkpoints, metrics)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig(model=model.cfg)
    cfg.train.epochs = epochs
    cfg.data.root = None if data_root is None else str(data_root)
    cfg.data.cache = False
    framing = framing or {"bin_ms": 10.0, "n_channels": model.cfg.in_features * 5,
                          "channel_group": 5, "max_frames": None, "dataset": "synthdigits"}
    names = class_names or [f"class{i}" for i in range(model.cfg.n_classes)]
    state = {"config": cfg.to_dict(), "framing": framing, "class_names": names,
             "protocol": "validation", "model": model.state_dict(), "epoch": epochs,
             "best": {"val_acc": 0.5, "val_loss": 1.0, "epoch": epochs}}
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    save_checkpoint(run_dir / "best.safetensors", state)
    save_checkpoint(run_dir / "last.safetensors", state)
    rows = [{"epoch": e + 1, "sigma": 1.0 / (e + 1), "lr": 1e-3, "train_loss": 2.0 - 0.3 * e,
             "train_acc": 0.2 + 0.1 * e, "val_loss": 2.1 - 0.2 * e, "val_acc": 0.2 + 0.05 * e,
             "time_s": 1.0} for e in range(epochs)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "metrics.json").write_text(json.dumps({"test_acc": 0.4, "val_acc": 0.3}))
    return run_dir


def deploy_cli(argv: list[str]) -> int:
    """Run one of the deploy subcommands (stream, export, report) as the CLI parses it."""
    from spikedelay.deploy import cli_commands

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for add in (cli_commands.add_stream_parser, cli_commands.add_export_parser,
                cli_commands.add_report_parser):
        add(sub)
    args = parser.parse_args(argv)
    return args.handler(args)
