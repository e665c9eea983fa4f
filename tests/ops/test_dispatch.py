"""The kernel dispatch point: which backend runs, forced backends, and its clear errors."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikedelay.ops import dispatch
from spikedelay.ops.lif import fused_lif_sequence

SRC = Path(__file__).resolve().parents[2] / "src" / "spikedelay"


def test_auto_follows_device_and_dtype(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    x = torch.zeros(2, 3, 4)
    assert dispatch.backend_name("lif", x) == "numba"
    assert dispatch.backend_name("lif", x.double()) == "numba"
    assert dispatch.backend_name("lif", x.to(torch.bfloat16)) == "torch"  # numba has no bf16
    assert dispatch.backend_name("lif", torch.zeros(2, device="meta")) == "torch"
    assert dispatch.backend_name("delay_conv", x) == "numba"


@pytest.mark.parametrize("value", ["numba", "triton", "torch", " TORCH ", "auto", ""])
def test_forced_backend_is_read_on_every_call(monkeypatch, value):
    monkeypatch.setenv(dispatch.ENV_VAR, value)
    want = value.strip().lower()
    assert dispatch.forced_backend() == (None if want in ("auto", "") else want)


def test_an_op_without_a_kernel_of_the_forced_backend_runs_its_torch_module(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    assert dispatch.backend_name("delay_conv", torch.zeros(1)) == "torch"


def test_bad_value_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "cuda")
    with pytest.raises(dispatch.KernelBackendError, match="SPIKEDELAY_KERNELS='cuda'.*auto, "
                       "numba, triton, torch"):
        fused_lif_sequence(torch.zeros(1, 2, 3), 2.0)


def test_forced_backend_that_cannot_run_on_the_device_is_an_error(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "numba")
    with pytest.raises(dispatch.KernelBackendError, match="numba cannot run on meta tensors"):
        dispatch.select("lif", torch.zeros(2, device="meta"))
    with pytest.raises(dispatch.KernelBackendError, match="take float32, float64, not bfloat16"):
        dispatch.select("lif", torch.zeros(2, dtype=torch.bfloat16))


def test_forced_triton_on_cpu_outside_the_interpreter_says_how():
    env = {**os.environ, dispatch.ENV_VAR: "triton", "TRITON_INTERPRET": "0",
           "PYTHONPATH": str(SRC.parent)}
    code = ("import torch\nfrom spikedelay.ops.lif import fused_lif_sequence\n"
            "fused_lif_sequence(torch.zeros(1, 2, 3), 2.0)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert "KernelBackendError" in out.stderr and "TRITON_INTERPRET=1" in out.stderr


def test_host_reads_are_free_only_in_host_memory():
    assert dispatch.host_reads_are_free(torch.zeros(1))
    assert not dispatch.host_reads_are_free(torch.zeros(1, device="meta"))


def test_layer_code_has_no_device_checks():
    """Only the dispatch point looks at devices (issue 12): not the layers, not the kernels."""
    files = [SRC / "delays.py", SRC / "model.py", SRC / "neurons.py",
             *sorted((SRC / "ops").glob("*.py"))]
    offenders = [f.name for f in files if f.name != "dispatch.py" and "device.type" in
                 f.read_text()]
    assert not offenders


def test_ops_imports_nothing_else_of_the_package():
    bad = []
    for path in sorted((SRC / "ops").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name}: {n}" for n in names
                    if n.startswith("spikedelay") and not n.startswith("spikedelay.ops")]
    assert not bad


def test_every_op_has_a_torch_reference_for_any_dtype():
    for op, table in dispatch._OPS.items():
        assert "torch" in table and table["torch"].dtypes is None, op
        for impl in table.values():
            impl.load()  # every registered module imports (Triton's under its interpreter)
