"""A run changes torch's process-wide settings only for its own duration (issue 12).

``train_run`` / ``eval_run`` called in-process (notebooks, benchmarks, tests) must leave threads,
deterministic mode, TF32 and cuDNN flags as they found them; TF32 is on only when asked for.
"""

from __future__ import annotations

import os

import pytest
import torch

from spikedelay.config import load_config
from spikedelay.train.evaluation import eval_run
from spikedelay.train.run import train_run
from spikedelay.train.setup import run_globals

TINY = """\
data: {dataset: shd, bin_ms: 20.0, channel_group: 50, val_fraction: 0.2}
model: {in_features: 14, hidden: [8], n_classes: 3, max_delay: 5, dropout: 0.0}
train: {epochs: 1, batch_size: 8, deterministic: true, device: cpu, threads: 1,
        allow_tf32: true}
"""


def _globals():
    """Read straight from torch, not through the code under test."""
    return (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
            torch.get_float32_matmul_precision(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


@pytest.fixture
def odd_globals(restore_torch_globals):
    """Settings no run would choose, so that a run that resets them to defaults also shows."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.set_num_threads(2)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_train_and_eval_in_process_leave_torch_globals_as_they_were(shd_root, tmp_path,
                                                                   odd_globals):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TINY)
    cfg = load_config(str(cfg_path), [f"data.root={shd_root}"])
    before = _globals()
    train_run(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    assert _globals() == before
    eval_run(tmp_path / "run")
    assert _globals() == before


@pytest.mark.parametrize("allow", [False, True])
def test_tf32_only_when_the_run_asks(allow, odd_globals):
    cfg = load_config("quick", [f"train.allow_tf32={str(allow).lower()}"])
    before = _globals()
    with run_globals(cfg):
        assert torch.backends.cuda.matmul.allow_tf32 is allow
        assert torch.backends.cudnn.allow_tf32 is allow
        assert torch.get_float32_matmul_precision() == ("high" if allow else "highest")
        assert torch.backends.cudnn.benchmark  # the autotuner is not the run's business
        assert not torch.are_deterministic_algorithms_enabled()  # quick does not ask for it
    assert _globals() == before


@pytest.mark.parametrize("value,device,match", [
    ("cuda", "cpu", "SPIKEDELAY_KERNELS='cuda' is not a kernel backend"),
    ("numba", "meta", "numba cannot run on meta tensors"),
])
def test_impossible_kernel_backend_is_a_config_error(monkeypatch, value, device, match):
    from spikedelay.errors import ConfigError
    from spikedelay.train.setup import pick_device

    monkeypatch.setenv("SPIKEDELAY_KERNELS", value)
    with pytest.raises(ConfigError, match=match):
        pick_device(device)
    monkeypatch.setenv("SPIKEDELAY_KERNELS", "torch")
    assert pick_device(device) == torch.device(device)
