"""RNG capture for resume: a CPU run never touches CUDA (even with GPUs visible), and a GPU run
resumes with another number of visible GPUs. CUDA is simulated by patching ``torch.cuda``."""

from __future__ import annotations

import json

import pytest
import torch

from spikedelay.checkpoint import load_checkpoint, save_checkpoint
from spikedelay.cli import main
from spikedelay.config import load_config
from spikedelay.train.rng import capture_rng, restore_rng
from spikedelay.train.run import train_run

TINY = """\
data: {dataset: shd, bin_ms: 20.0, channel_group: 50, val_fraction: 0.2}
model: {in_features: 14, hidden: [8], n_classes: 3, max_delay: 5, dropout: 0.3}
train: {epochs: 2, batch_size: 8, device: cpu, deterministic: true}
"""
CUDA_RNG = ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all")


@pytest.fixture
def two_fake_gpus_that_must_not_be_touched(monkeypatch):
    """CUDA looks available with two GPUs; any use of their RNG fails the test."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def touched(*_args, **_kwargs):
        raise AssertionError("a CPU run touched the CUDA RNG")

    for name in CUDA_RNG:
        monkeypatch.setattr(torch.cuda, name, touched)


def test_cpu_run_with_gpus_visible_never_touches_cuda_and_resumes_exactly(
        tmp_path, shd_root, restore_torch_globals, two_fake_gpus_that_must_not_be_touched):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    args = ["train", "--config", str(cfg), "--data", str(shd_root), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    state = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    assert "cuda" not in state["rng"]

    # Interrupted after epoch 1, then resumed: the same end.
    part = tmp_path / "part"
    run_cfg = load_config(str(cfg), [f"data.root={shd_root}"])
    assert train_run(run_cfg, part, progress=False, log=lambda _: None,
                     stop_after_epochs=1) == {"stopped_after": 1}
    assert main([*args, "--out", str(part)]) == 0
    a = load_checkpoint(tmp_path / "whole" / "last.safetensors")["model"]
    b = load_checkpoint(part / "last.safetensors")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((part / "metrics.json").read_text())["test_acc"] == \
        json.loads((tmp_path / "whole" / "metrics.json").read_text())["test_acc"]


def test_a_checkpoint_with_every_gpus_state_resumes_on_the_cpu(monkeypatch):
    """Older checkpoints hold one CUDA state per visible GPU; on a CPU the CPU RNG and the batch
    order still continue exactly and CUDA is not touched."""
    for name in CUDA_RNG:
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: pytest.fail("CUDA touched"))
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(11)
    saved = {"batches": gen.get_state(), "torch": torch.get_rng_state(),
             "cuda": [torch.zeros(16, dtype=torch.uint8)] * 2}
    want_batches, want_torch = torch.randperm(10, generator=gen), torch.rand(3)
    torch.manual_seed(99)
    gen2 = torch.Generator().manual_seed(0)
    notes: list[str] = []
    restore_rng(saved, gen2, None, torch.device("cpu"), notes.append)
    assert torch.equal(torch.randperm(10, generator=gen2), want_batches)
    assert torch.equal(torch.rand(3), want_torch)
    assert notes == []


class _FakeCuda:
    """Per-device RNG states of ``n`` GPUs, recording every call."""

    def __init__(self, n: int):
        self.states = {i: torch.full((8,), i, dtype=torch.uint8) for i in range(n)}
        self.calls: list[tuple[str, int]] = []

    @staticmethod
    def _index(device) -> int:
        return torch.device(device).index or 0

    def get_rng_state(self, device="cuda"):
        self.calls.append(("get", self._index(device)))
        return self.states[self._index(device)].clone()

    def set_rng_state(self, state, device="cuda"):
        index = self._index(device)
        if index not in self.states:
            raise RuntimeError(f"invalid device ordinal {index}")
        self.calls.append(("set", index))
        self.states[index] = state.clone()

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get_rng_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        for name in ("get_rng_state_all", "set_rng_state_all"):
            monkeypatch.setattr(torch.cuda, name, lambda *a, _n=name, **k: pytest.fail(_n))


@pytest.mark.parametrize("saved_gpus,resumed_gpus", [(2, 1), (1, 4)])
def test_a_gpu_run_resumes_with_another_number_of_visible_gpus(monkeypatch, tmp_path,
                                                                saved_gpus, resumed_gpus):
    """Only the run's own GPU is saved and restored, so the count of the others is irrelevant;
    the state goes through a real checkpoint file."""
    before = _FakeCuda(saved_gpus)
    before.states[0] = torch.arange(8, dtype=torch.uint8)
    before.install(monkeypatch)
    gen = torch.Generator().manual_seed(1)
    state = capture_rng(gen, None, torch.device("cuda", 0))
    assert before.calls == [("get", 0)]
    save_checkpoint(tmp_path / "last.safetensors", {"rng": state})

    after = _FakeCuda(resumed_gpus)
    after.install(monkeypatch)
    notes: list[str] = []
    restore_rng(load_checkpoint(tmp_path / "last.safetensors")["rng"],
                torch.Generator(), None, torch.device("cuda", 0), notes.append)
    assert after.calls == [("set", 0)] and notes == []
    assert torch.equal(after.states[0], torch.arange(8, dtype=torch.uint8))


def test_old_all_gpu_checkpoint_on_fewer_gpus_restores_its_own(monkeypatch):
    fake = _FakeCuda(1)
    fake.install(monkeypatch)
    saved = {"batches": torch.Generator().get_state(), "torch": torch.get_rng_state(),
             "cuda": [torch.full((8,), v, dtype=torch.uint8) for v in (7, 9)]}
    restore_rng(saved, torch.Generator(), None, torch.device("cuda", 0), lambda _: None)
    assert torch.equal(fake.states[0], torch.full((8,), 7, dtype=torch.uint8))
