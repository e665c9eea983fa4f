"""Streaming speed: real-time factor (RTF) of one stream on one core, throughput of 64 streams.

RTF = seconds of audio / seconds of compute (1 frame = ``bin_ms`` of audio). The network is the
SHD recipe (140 → 256 → 256 → 20, K = 25; random weights and positions, BatchNorm statistics
set from the input so the layers spike at realistic rates) or a trained run (``--run``). Input:
the test words of an SHD-layout folder (``--data``), else Poisson input with SynthDigits'
density (≈ 96 spikes per 10 ms frame over 700 channels). Each utterance is streamed and flushed.

Timings use the calling thread's CPU time (``time.thread_time``), which other processes on a
shared machine disturb less than wall time; wall times are reported too. The offline model
(torch, float32 dense delay convolution, one thread, batch 1) on the same utterances is the
baseline of the same run.

    python benchmarks/stream_speed.py --data ../shared/data/synthdigits-900 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from spikedelay.config import ModelConfig
from spikedelay.deploy.net import from_model, from_run
from spikedelay.deploy.stream import (
    Stream,
    compile_program,
    initial_state,
    run_utterances,
    stream_step,
)
from spikedelay.model import DelaySNN


def load_frames(data: str | None, n: int, seed: int) -> list[np.ndarray]:
    if data:
        from pathlib import Path

        from spikedelay.data.framing import Framing
        from spikedelay.data.hdf5 import find_split_files, read_spike_file

        rec = read_spike_file(find_split_files(Path(data), "synthdigits")["test"])
        framing = Framing()
        return [framing(rec.times[i], rec.units[i]) for i in range(min(n, len(rec)))]
    rng = np.random.default_rng(seed)
    # ≈ 96 spikes / frame over 700 channels, grouped by 5 → Poisson(96/140) per feature
    return [rng.poisson(96 / 140, size=(55, 140)).astype(np.float32) for _ in range(n)]


def calibrated_model(frames: list[np.ndarray], drive: float = 1.0) -> DelaySNN:
    torch.manual_seed(0)
    model = DelaySNN(ModelConfig(dropout=0.0)).eval()
    lengths = torch.tensor([len(f) for f in frames])
    x = torch.zeros(len(frames), int(lengths.max()), 140)
    for i, f in enumerate(frames):
        x[i, : len(f)] = torch.from_numpy(f)
    with torch.no_grad():
        h, hl = x, lengths
        for block in model.hidden:
            y = block.delay(h)
            hl = block.delay.output_length(hl)
            mask = torch.arange(y.shape[1])[None] < hl[:, None]
            block.norm.running_mean.copy_(y[mask].mean(0))
            block.norm.running_var.copy_(y[mask].var(0) / drive**2)
            h = block.lif(block.norm(y)) * mask[..., None]
    return model


def clock() -> tuple[float, float]:
    return time.thread_time(), time.perf_counter()


def since(t0: tuple[float, float]) -> tuple[float, float]:
    c, w = clock()
    return c - t0[0], w - t0[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="SHD-layout folder whose test words are streamed")
    ap.add_argument("--run", help="a run folder to benchmark instead of the random SHD net")
    ap.add_argument("--utterances", type=int, default=64)
    ap.add_argument("--drive", type=float, default=1.0,
                    help="BatchNorm output std (random net): lower = sparser hidden spiking")
    ap.add_argument("--repeats", type=int, default=3, help="best of N")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    torch.set_num_threads(1)

    frames = load_frames(args.data, args.utterances, 0)
    if args.run:
        net = from_run(args.run)
        model = None
    else:
        model = calibrated_model(frames[:32], args.drive)
        net = from_model(model)
    prog = compile_program(net)
    bin_s = net.bin_ms / 1000
    lengths = np.array([len(f) for f in frames])
    audio_s = lengths.sum() * bin_s
    stream = Stream(prog)
    stream.push(frames[0][0])  # compile / load the kernel outside the timings
    stream.reset()

    def per_frame() -> tuple[float, float]:
        t0 = clock()
        for f in frames:
            stream.reset()
            for frame in f:
                stream.push(frame)
            stream.finish()
        return since(t0)

    def per_utterance() -> tuple[float, float]:
        t0 = clock()
        for f in frames:
            stream.reset()
            stream.push(f)
            stream.finish()
        return since(t0)

    batch = np.zeros((len(frames), int(lengths.max()), net.in_features))
    for i, f in enumerate(frames):
        batch[i, : len(f)] = f

    total = batch.shape[1] + net.flush_steps
    x_all = np.zeros((len(frames), total, net.in_features))
    x_all[:, : batch.shape[1]] = batch
    live = np.arange(total)[None] < lengths[:, None]

    def batched(threads: bool) -> tuple[float, float]:
        state = initial_state(prog, len(frames))
        t0 = clock()  # CPU time of this thread only: use the wall time with threads
        stream_step(prog, x_all, state, live, threads=threads)
        return since(t0)

    batched(True)  # compile the threaded kernel
    best = {}
    for name, fn in (("per_frame", per_frame), ("per_utterance", per_utterance),
                     ("batch_one_core", lambda: batched(False)),
                     ("batch_threads", lambda: batched(True))):
        runs = [fn() for _ in range(args.repeats)]
        best[name] = (min(r[0] for r in runs), min(r[1] for r in runs))

    # baseline: offline torch model, one thread, one utterance at a time
    base = None
    if model is not None:
        with torch.no_grad():
            t0 = clock()
            for f in frames:
                model(torch.from_numpy(f)[None])
            base = since(t0)

    _, _, state = run_utterances(prog, batch, lengths)
    steps = lengths + np.arange(1, len(net.layers) + 1)[:, None] * net.tail  # per layer
    rates = [float(state.events[:, l + 1].sum() / (net.layers[l].out_features * steps[l].sum()))
             for l in range(len(net.layers) - 1)]
    res = {
        "network": "run " + args.run if args.run else
        f"SHD recipe 140-256-256-20, K=25 (random, drive {args.drive:g})",
        "input": args.data or "Poisson, 96 spikes/frame",
        "utterances": len(frames), "audio_s": float(audio_s),
        "mean_frames": float(lengths.mean()), "flush_steps": net.flush_steps,
        "synops_per_frame": float(state.synops.sum() / lengths.sum()),
        "input_events_per_frame": float(state.events[:, 0].sum() / lengths.sum()),
        "hidden_spike_rates": rates,
        "rtf_one_stream_per_frame_cpu": audio_s / best["per_frame"][0],
        "rtf_one_stream_per_frame_wall": audio_s / best["per_frame"][1],
        "rtf_one_stream_per_utterance_cpu": audio_s / best["per_utterance"][0],
        f"throughput_{len(frames)}_streams_one_core_cpu": audio_s / best["batch_one_core"][0],
        f"throughput_{len(frames)}_streams_one_core_wall": audio_s / best["batch_one_core"][1],
        f"throughput_{len(frames)}_streams_threads_wall": audio_s / best["batch_threads"][1],
        "threads": int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1)),
        "offline_torch_rtf_one_thread_cpu": None if base is None else audio_s / base[0],
        "machine": platform.processor() or platform.machine(),
        "load_average": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:48s} {v}")


if __name__ == "__main__":
    main()
