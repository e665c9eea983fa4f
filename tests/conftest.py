"""Shared fixtures: tiny real-format files written to tmp_path (true variable-length arrays),
and the benchmark folder ``../shared`` beside the project (see :func:`shared_path`).

Skips: pytest prints every reason (``-ra``); under ``CI=true`` any skip except a GPU-only one
fails the run (``ci_policy.py``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from spikedelay.data.hdf5 import write_spike_file

# The tests run every kernel on CPU tensors, Triton's in its interpreter, which Triton picks
# when it is imported (it decorates its own library then): so this must happen before any test
# imports it, GPU or not. Harmless for everything else: nothing runs Triton on CPU unless
# SPIKEDELAY_KERNELS=triton (the kernel_backend fixture) asks for it.
os.environ.setdefault("TRITON_INTERPRET", "1")

KERNEL_BACKENDS = ("numba", "torch", "triton")


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per kernel backend that runs on CPU (Triton in its interpreter), by
    forcing ``SPIKEDELAY_KERNELS``; never skipped: a missing Triton fails the test."""
    name = request.param
    if name == "triton":
        from spikedelay.ops.dispatch import triton_interpreting

        if importlib.util.find_spec("triton") is None:
            pytest.fail("triton is not installed: pip install -e '.[test]'")
        if not triton_interpreting():
            pytest.fail("triton was imported before TRITON_INTERPRET=1 was set")
    monkeypatch.setenv("SPIKEDELAY_KERNELS", name)
    return name


@dataclass
class SpikeSet:
    """What a fixture wrote, kept in memory so tests compare against the source, not the reader."""

    times: list[np.ndarray]
    units: list[np.ndarray]
    labels: np.ndarray
    speakers: np.ndarray
    keys: list[str]


def make_spike_set(
    n_samples: int = 24,
    *,
    n_classes: int = 3,
    n_speakers: int = 6,
    seed: int = 0,
    max_duration: float = 0.3,
    speaker_offset: int = 0,
) -> SpikeSet:
    """Random spikes whose counts per sample vary (so padding is exercised)."""
    rng = np.random.default_rng(seed)
    times, units = [], []
    for _ in range(n_samples):
        n = int(rng.integers(5, 60))
        duration = float(rng.uniform(0.05, max_duration))
        t = np.sort(rng.uniform(0.0, duration, n))
        # Round to float32 so the file round trip is exact.
        times.append(t.astype(np.float32).astype(np.float64))
        units.append(rng.integers(0, 700, n).astype(np.int64))
    labels = np.arange(n_samples) % n_classes
    per_speaker = max(1, n_samples // n_speakers)
    speakers = speaker_offset + (np.arange(n_samples) // per_speaker) % n_speakers
    keys = [f"class{i}" for i in range(n_classes)]
    return SpikeSet(times, units, labels.astype(np.int64), speakers.astype(np.int64), keys)


def write_set(path: Path, s: SpikeSet, **kwargs) -> Path:
    return write_spike_file(path, s.times, s.units, s.labels, s.speakers, s.keys, **kwargs)


def write_timing_task(path: Path, n_per_class: int, speakers: range, seed: int, *,
                      burst: int = 60, onset: tuple[float, float] = (0.01, 0.05),
                      gap0: float = 0.03, gap_step: float = 0.06, noise: int = 30) -> None:
    """A learnable task for end-to-end tests: three classes that differ only in *when* two
    channel bands fire relative to each other (gap = gap0 + gap_step · label), plus
    ``noise`` random spikes over 300 ms."""
    rng = np.random.default_rng(seed)
    times, units, labels, spk = [], [], [], []
    for s in speakers:
        for label in range(3):
            for _ in range(n_per_class):
                start = rng.uniform(*onset)
                parts_t = [start + rng.uniform(0, 0.01, burst),
                           start + gap0 + gap_step * label + rng.uniform(0, 0.01, burst)]
                if noise:
                    parts_t.append(rng.uniform(0, 0.3, noise))
                parts_u = [rng.integers(0, 100, burst), rng.integers(300, 400, burst)]
                if noise:
                    parts_u.append(rng.integers(0, 700, noise))
                t, u = np.concatenate(parts_t), np.concatenate(parts_u)
                order = np.argsort(t)
                times.append(t[order])
                units.append(u[order])
                labels.append(label)
                spk.append(s)
    write_spike_file(path, times, units, np.array(labels), np.array(spk), ["a", "b", "c"])


@pytest.fixture(name="write_timing_task", scope="session")
def _write_timing_task_fixture():
    """Factory: ``write_timing_task(path, n_per_class, speakers, seed, **shape)``."""
    return write_timing_task


@pytest.fixture
def restore_torch_globals():
    """`train` sets torch's and numba's thread counts and deterministic mode; keep other tests
    unaffected."""
    import numba

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    numba_threads = numba.get_num_threads()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    numba.set_num_threads(numba_threads)


@pytest.fixture(name="make_spike_set")
def _make_spike_set_fixture():
    """Factory: ``make_spike_set(n_samples, n_classes=, n_speakers=, seed=, ...)``."""
    return make_spike_set


@pytest.fixture(name="write_set")
def _write_set_fixture():
    """Factory: ``write_set(path, spike_set, compress=False)``."""
    return write_set


@pytest.fixture
def spike_set() -> SpikeSet:
    return make_spike_set()


@pytest.fixture
def spike_file(tmp_path: Path, spike_set: SpikeSet) -> Path:
    """One SHD-layout file with 24 samples, 3 classes, 6 speakers."""
    return write_set(tmp_path / "shd_train.h5", spike_set)


@pytest.fixture
def shd_root(tmp_path: Path) -> Path:
    """A folder with shd_train.h5 (6 speakers) and shd_test.h5 (2 other speakers)."""
    root = tmp_path / "shd"
    root.mkdir()
    write_set(root / "shd_train.h5", make_spike_set(36, n_speakers=6, seed=1))
    write_set(root / "shd_test.h5", make_spike_set(12, n_speakers=2, seed=2, speaker_offset=6))
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Never touch the user's ~/.cache from tests."""
    monkeypatch.setenv("SPIKEDELAY_CACHE", str(tmp_path_factory.mktemp("cache")))


# -- the CI skip policy and the benchmark folder ../shared ------------------------------------
pytest_plugins = ["pytester", "ci_policy"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The benchmark folder (REFERENCE.md, data/synthdigits-900, ...) lives beside the project in CI;
# a user's clone usually has none.
SHARED_ROOT = PROJECT_ROOT.parent / "shared"


def shared_file(relative: str, needed_by: str = "this test") -> Path:
    """``SHARED_ROOT / relative``; skips with the path as reason when absent (a failure in CI)."""
    path = SHARED_ROOT / relative
    if not path.exists():
        pytest.skip(f"{needed_by} needs the benchmark folder: {path} is absent (the project's "
                    "../shared; CI has it)")
    return path


@pytest.fixture(name="shared_path")
def _shared_path_fixture(request: pytest.FixtureRequest):
    """Factory: ``shared_path("data/synthdigits-900/shd_test.h5")`` → an existing Path, or skip
    (outside CI, with the reason shown) / fail (``CI=true``) when the benchmark folder is absent."""
    return lambda relative: shared_file(relative, request.node.name)
