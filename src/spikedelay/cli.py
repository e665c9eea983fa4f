"""The ``spikedelay`` command: parse → config → call the library → exit code.

Every user-facing problem is a ``SpikeDelayError``: it is printed as one ``error: ...`` message
and the command exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from spikedelay import __version__
from spikedelay.errors import SpikeDelayError

EXIT_USER_ERROR = 2

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def _command(name: str):
    def register(fn: Callable[[argparse._SubParsersAction], None]):
        _COMMANDS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------- train / eval
def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="quick",
                   help="builtin recipe (quick, shd, ssc, gsc) or a YAML file (default: quick)")
    p.add_argument("--data", metavar="DIR", help="data folder (default: the shipped SynthDigits "
                   "release for synthdigits configs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.delays=none (repeatable)")


def _resolve_config(args: argparse.Namespace):
    from spikedelay.config import load_config

    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    return load_config(args.config, overrides)


@_command("train")
def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a delay SNN (rerun the same command to resume)")
    _add_run_args(p)
    p.add_argument("--out", metavar="RUNDIR", help="run folder (default: runs/<config>-<hash>)")
    p.add_argument("--device", metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N (= --set train.device=DEVICE; not part of "
                        "the run's identity: a run resumes on another device)")
    p.add_argument("--seed", type=int, metavar="N", help="= --set train.seed=N")
    p.add_argument("--epochs", type=int, metavar="N", help="= --set train.epochs=N")
    p.add_argument("--init-from", metavar="RUNDIR",
                   help="start from the weights of another run (its best.safetensors, or a "
                        "checkpoint file); the architecture must be the same "
                        "(= --set train.init_from=RUNDIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bar; one line per epoch")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from spikedelay.train.distributed import env_rank
    from spikedelay.train.run import train_run
    from spikedelay.train.run_folder import default_run_dir

    shortcuts = {"train.device": args.device, "train.seed": args.seed,
                 "train.epochs": args.epochs, "train.init_from": args.init_from}
    args.overrides = [*args.overrides,  # JSON is YAML: a path stays a string, whatever it is
                      *(f"{k}={json.dumps(v)}" for k, v in shortcuts.items() if v is not None)]
    cfg = _resolve_config(args)
    run_dir = Path(args.out) if args.out else default_run_dir(args.config, cfg)
    printing = env_rank() == 0  # under torchrun only rank 0 talks
    if printing:
        print(f"run folder: {run_dir}")
    final = train_run(cfg, run_dir, progress=not args.quiet)
    if printing:
        _print_summary(final, run_dir)
    return 0


def _print_summary(final: dict, run_dir: Path) -> None:
    rows = [
        ("protocol", final.get("protocol_label", final.get("protocol"))),
        ("delays", final.get("delays")),
        ("parameters", f"{final.get('params', 0):,}"),
        ("best epoch", f"{final.get('best_epoch')}/{final.get('epochs')}"),
        ("val accuracy", _pct(final.get("val_acc"))),
        ("test accuracy", _pct(final.get("test_acc"))),
        ("train time", f"{final.get('train_time_s', 0.0):.0f} s"),
        ("run folder", str(run_dir)),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"  {k:<{width}}  {v}" for k, v in rows))


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


@_command("eval")
def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy and confusion matrix of a run's selected "
                       "checkpoint, as JSON")
    p.add_argument("run_dir", metavar="RUNDIR")
    p.add_argument("--data", metavar="DIR", help="data folder if it moved since training")
    p.add_argument("--checkpoint", default="best.safetensors",
                   help="checkpoint file inside RUNDIR (default: best.safetensors)")
    p.add_argument("--split", choices=["val", "test"], default="test",
                   help="test (default) or val: the split the model was selected on")
    p.add_argument("--device", metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N (default: the run's train.device)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (what eval always prints: accuracy, loss and "
                        "the per-class confusion matrix); for scripts that say so explicitly")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from spikedelay.train.evaluation import eval_run

    result = eval_run(Path(args.run_dir), data_root=args.data, checkpoint=args.checkpoint,
                      split=args.split, device=args.device)
    print(json.dumps(result, indent=2))
    return 0


@_command("compare")
def _compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="ablation study: delay variants x seeds under one budget "
                       "(rerun the same command to resume)")
    _add_run_args(p)
    p.add_argument("--variants", default="none,fixed,learned",
                   help="comma-separated model.delays values (default: none,fixed,learned; "
                        "ignored with --grid/--variant)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="vary any config key over these values; several --grid: their product "
                        "(e.g. --grid model.delay_kind=synaptic,axonal,dendritic)")
    p.add_argument("--variant", action="append", default=[], dest="explicit",
                   metavar="NAME:KEY=V,...",
                   help="one named variant with its own settings (repeatable; with --grid too), "
                        "e.g. axonal-S0.5:model.delay_kind=axonal,model.delay_sparsity=0.5")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 … N-1 per variant (default 3)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="study folder: DIR/runs/<variant>-s<seed>/, results.md, results.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar; one line per epoch")
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    import shlex

    from spikedelay.train.compare import run_study

    run_study(args.config, args.variants, args.seeds, Path(args.out), data=args.data,
              overrides=args.overrides, grid=args.grid, explicit=args.explicit,
              progress=not args.quiet,
              command=shlex.join(["spikedelay", *sys.argv[1:]]) if sys.argv[1:2] == ["compare"]
              else None)
    return 0


@_command("configs")
def _configs_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("configs", help="list the builtin recipes, or print one resolved")
    p.add_argument("name", nargs="?", help="print this recipe with every default filled in")
    p.add_argument("--params", action="store_true",
                   help="print the recipe's trainable parameter count (and its active delays)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), as for train")
    p.set_defaults(handler=_configs)


def _configs(args: argparse.Namespace) -> int:
    from spikedelay.config import builtin_configs, dump_config, load_config
    from spikedelay.errors import ConfigError

    if args.params:
        if not args.name:
            raise ConfigError("configs --params needs a recipe name or YAML path")
        from spikedelay.model import parameter_counts

        counts = parameter_counts(load_config(args.name, args.set).model)
        print(f"{args.name}: {counts['parameters']:,} trainable parameters "
              f"({counts['delays']:,} delays, {counts['active_delays']:,} active)")
    elif args.name:
        print(dump_config(load_config(args.name, args.set)), end="")
    else:
        print("\n".join(builtin_configs()))
    return 0


# ------------------------------------------------------------------------------------------ data
@_command("data")
def _data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make or inspect data sets")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    synth = data_sub.add_parser(
        "synth", help="build SynthDigits offline (espeak-ng → cochlea → SHD-format HDF5)")
    synth.add_argument("--out", required=True, metavar="DIR", help="writes DIR/shd_{train,test}.h5")
    synth.add_argument("--vocab", choices=["digits", "commands"], default="digits",
                       help="digits: 0-9 in English and German (20 classes, like SHD); "
                            "commands: the 35 GSC keywords")
    # Defaults live in the builder (48 / 12); importing it here would slow every command.
    synth.add_argument("--speakers", type=int, help="training speakers (default 48)")
    synth.add_argument("--test-speakers", type=int,
                       help="test speakers, disjoint from training (default 12)")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same files")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.add_argument("--compress", action="store_true",
                       help="write gzipped files (shd_*.h5.gz), as the shipped release")
    synth.add_argument("--time-dtype", choices=["float32", "float16"], default="float32",
                       help="spike-time precision (float16 as SHD; the release uses it)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_data_synth)
    info = data_sub.add_parser("info", help="summarise an SHD-format file (validates it fully)")
    info.add_argument("file", metavar="FILE")
    info.set_defaults(handler=_data_info)
    p.set_defaults(handler=lambda args: (p.print_help(), EXIT_USER_ERROR)[1])


def _data_synth(args: argparse.Namespace) -> int:
    from spikedelay.data.synth.build import build_synthdigits

    sizes = {k: v for k, v in (("speakers", args.speakers),
                               ("test_speakers", args.test_speakers)) if v is not None}
    summary = build_synthdigits(Path(args.out), vocab=args.vocab, seed=args.seed,
                                workers=args.workers, progress=not args.quiet,
                                compress=args.compress, time_dtype=args.time_dtype, **sizes)
    print(json.dumps(summary, indent=2))
    return 0


def _data_info(args: argparse.Namespace) -> int:
    import numpy as np

    from spikedelay.data.hdf5 import read_spike_file

    rec = read_spike_file(Path(args.file))
    counts = np.array([len(t) for t in rec.times])
    durations = np.array([float(t.max()) if len(t) else 0.0 for t in rec.times])
    info = {
        "file": str(args.file), "samples": len(rec.labels), "classes": len(rec.class_names),
        "speakers": None if rec.speakers is None else int(len(np.unique(rec.speakers))),
        "spikes_per_sample": {"mean": float(counts.mean()), "min": int(counts.min()),
                              "max": int(counts.max())},
        "duration_s": {"mean": float(durations.mean()), "max": float(durations.max())},
        "class_names": list(rec.class_names),
    }
    print(json.dumps(info, indent=2))
    return 0


# ---------------------------------------------------------------------------------------- deploy
@_command("stream")
def _stream_parser(sub: argparse._SubParsersAction) -> None:
    from spikedelay.deploy.cli_commands import add_stream_parser

    add_stream_parser(sub)


@_command("export")
def _export_parser(sub: argparse._SubParsersAction) -> None:
    from spikedelay.deploy.cli_commands import add_export_parser

    add_export_parser(sub)


@_command("report")
def _report_parser(sub: argparse._SubParsersAction) -> None:
    from spikedelay.deploy.cli_commands import add_report_parser

    add_report_parser(sub)


# ------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikedelay",
        description="Spiking neural networks that learn their synaptic delays (DCLS-delays).",
    )
    parser.add_argument("--version", action="version", version=f"spikedelay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _COMMANDS.values():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return args.handler(args)
    except SpikeDelayError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RuntimeError as err:
        if not _is_kernel_backend_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)  # e.g. a bad SPIKEDELAY_KERNELS
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _is_kernel_backend_error(err: BaseException) -> bool:
    """Whether ``err`` is the kernel dispatch point's error (a bad or impossible forced backend).

    Why by module: ``ops/`` imports nothing of the package, so its error cannot subclass
    SpikeDelayError; it can only have been raised once ``ops.dispatch`` was imported.
    """
    dispatch = sys.modules.get("spikedelay.ops.dispatch")
    return dispatch is not None and isinstance(err, dispatch.KernelBackendError)


if __name__ == "__main__":
    sys.exit(main())
