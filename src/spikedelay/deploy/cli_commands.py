"""CLI glue for ``spikedelay stream | export | report`` (registered by ``spikedelay/cli.py``).

Each ``add_*_parser(sub)`` adds one subcommand to an ``argparse`` subparsers object and sets
``handler``; handlers return the exit code and raise ``SpikeDelayError`` for user errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from spikedelay.errors import DataError, SpikeDelayError


def _load_net(source: str, checkpoint: str):
    """A run folder (its checkpoint) or a file from ``spikedelay export``."""
    from spikedelay.deploy.export import load_exported
    from spikedelay.deploy.net import load_deployable

    path = Path(source)
    if path.is_dir():
        return load_deployable(path, checkpoint)
    if path.suffix == ".safetensors" or path.suffix == ".nir":
        try:
            return load_exported(path)
        except SpikeDelayError:
            if path.suffix == ".nir":
                raise
    return load_deployable(path)  # a checkpoint file


# ------------------------------------------------------------------------------------- stream
def add_stream_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="run a model frame by frame on a spike file or a WAV")
    p.add_argument("model", metavar="RUNDIR", help="run folder, or a file from `export`")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="SHD-layout .h5/.h5.gz (every sample) or a .wav (SynthDigits cochlea)")
    p.add_argument("--per-frame", action="store_true",
                   help="print the running prediction after every frame")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="stream only the first N samples of a spike file")
    p.add_argument("--checkpoint", default="best.safetensors",
                   help="checkpoint inside RUNDIR (default: best.safetensors)")
    p.set_defaults(handler=run_stream)


def _framing(net):
    from spikedelay.data.framing import Framing

    f = net.framing
    return Framing(bin_ms=float(f.get("bin_ms", 10.0)), n_channels=int(f.get("n_channels", 700)),
                   channel_group=int(f.get("channel_group", 5)), max_frames=None)


def wav_to_events(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A WAV file → cochlea spikes (times s, units), resampled to 48 kHz, mono."""
    import soundfile
    from scipy.signal import resample_poly

    from spikedelay.data.synth.cochlea import cochlea

    try:
        audio, fs = soundfile.read(str(path), dtype="float64", always_2d=True)
    except Exception as err:
        raise DataError(f"{path}: not a readable audio file: {err}") from None
    audio = audio.mean(1)
    if fs != 48000:
        g = np.gcd(int(fs), 48000)
        audio = resample_poly(audio, 48000 // g, int(fs) // g)
    return cochlea(audio, 48000)


def _label(net, k: int) -> str:
    return f"{k} ({net.class_names[k]})" if k < len(net.class_names) else str(k)


def run_stream(args: argparse.Namespace) -> int:
    from spikedelay.data.hdf5 import read_spike_file

    net = _load_net(args.model, args.checkpoint)
    framing = _framing(net)
    path = Path(args.input)
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    if path.suffix.lower() == ".wav":
        samples = [(wav_to_events(path), None)]
    else:
        rec = read_spike_file(path, n_channels=framing.n_channels)
        n = len(rec) if args.limit is None else min(args.limit, len(rec))
        samples = [((rec.times[i], rec.units[i]), int(rec.labels[i])) for i in range(n)]
    stream = net.stream(1)
    correct = 0
    for idx, ((times, units), label) in enumerate(samples):
        stream.reset()
        frames = framing(times, units)
        for t, frame in enumerate(frames):
            stream.push(frame)
            if args.per_frame:
                print(f"  sample {idx} frame {t + 1} ({(t + 1) * framing.bin_ms:g} ms): "
                      f"{_label(net, stream.prediction)}")
        stream.finish()
        pred = stream.prediction
        line = f"sample {idx}: {len(frames)} frames → prediction {_label(net, pred)}"
        if label is not None:
            correct += pred == label
            line += f", label {_label(net, label)}" + (" ✓" if pred == label else " ✗")
        print(line)
    labelled = [lab for _, lab in samples if lab is not None]
    if labelled:
        print(f"accuracy: {correct}/{len(labelled)} = {100 * correct / len(labelled):.2f} %")
    return 0


# ------------------------------------------------------------------------------------- export
def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run with its integer delays (NIR, safetensors)")
    p.add_argument("model", metavar="RUNDIR", help="run folder (or one of its checkpoint files)")
    p.add_argument("--format", required=True, choices=["nir", "safetensors"],
                   help="nir: a NIR graph with Delay nodes (needs the nir package); "
                        "safetensors: plain arrays + JSON header, no extra dependency")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (atomically)")
    p.add_argument("--checkpoint", default="best.safetensors",
                   help="checkpoint inside RUNDIR (default: best.safetensors)")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from spikedelay.deploy.export import export
    from spikedelay.deploy.net import load_deployable
    from spikedelay.deploy.stepped_stream import SteppedNet

    net = load_deployable(Path(args.model), args.checkpoint)
    what = ""
    if isinstance(net, SteppedNet):  # recurrent or adaptive
        from spikedelay.deploy.stepped_export import save_stepped
        from spikedelay.deploy.stepped_nir import save_nir

        out = (save_nir if args.format == "nir" else save_stepped)(net, Path(args.out))
        lags = [la.rec_lags for la in net.layers if la.rec_lags is not None]
        if lags:
            what = f", recurrent delays 0…{max(int(x.max()) for x in lags) - 1} steps"
    else:
        out = export(net, Path(args.out), args.format)
    print(f"wrote {out} ({args.format}: {len(net.layers)} layers, "
          f"{net.synapse_count():,} synapses, delays 0…{_largest_delay(net)} steps of "
          f"{net.bin_ms:g} ms (room for 0…{net.max_delay - 1}){what})")
    return 0


def _largest_delay(net) -> int:
    """The largest feed-forward delay the exported network uses (not the room K - 1 it has)."""
    from spikedelay.deploy.stepped_stream import SteppedNet

    if isinstance(net, SteppedNet):  # stack (K, out, in): the last delay with a weight
        used = [np.flatnonzero(np.abs(la.stack).reshape(la.stack.shape[0], -1).max(1))
                for la in net.layers]
    else:
        used = [la.delays[la.weight != 0] for la in net.layers]
    return max((int(u.max()) for u in used if u.size), default=0)


# ------------------------------------------------------------------------------------- report
def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write RUNDIR/report.md: costs, delays, curves, "
                       "confusion matrix, raster")
    p.add_argument("model", metavar="RUNDIR", help="run folder; report.md and report/ go there")
    p.add_argument("--data", metavar="DIR", help="data folder if it moved since training")
    p.add_argument("--samples", type=int, default=100,
                   help="test samples to stream for the cost table and the confusion matrix "
                        "(default: 100)")
    p.add_argument("--checkpoint", default="best.safetensors",
                   help="checkpoint inside RUNDIR (default: best.safetensors)")
    p.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from spikedelay.deploy.report import write_report

    out = write_report(Path(args.model), data_root=args.data, samples=args.samples,
                       checkpoint=args.checkpoint)
    print(f"wrote {out}")
    return 0
