"""The whole training step against the reference formulation (dcls + SpikingJelly), float64.

An end-to-end guard for the fast path (DFT convolution with the sparse input transform, fused
Gaussian kernel, fused BatchNorm → LIF, LI readout, masked loss): the loss and every gradient
of a small SHD-like network must equal those of ``Dcls1d(version="gauss")`` layers and
SpikingJelly's multi-step ``LIFNode``, built with the same weights, at the initial and the final
σ. The comparison itself is ``benchmarks/train_speed.py``'s numerics check. Run under every
kernel backend that runs on CPU (numba, torch, Triton interpreted; all in float64), so the GPU
code path (Triton kernels, the wide DFT layout) is checked here too.
"""

import pytest
import torch
from benchmark_scripts import load_benchmark

pytest.importorskip("spikingjelly")
pytest.importorskip("DCLS")


def _train_speed():
    return load_benchmark("train_speed")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SpikingJelly uses torch.jit.script
def test_training_step_equals_reference_formulation(restore_torch_globals, kernel_backend):
    ts = _train_speed()
    args = ts.parse_args(["--batch", "6", "--hidden", "24", "--frames", "30", "--tol", "1e-10",
                          "--check-dtype", "float64"])
    x, _, _ = ts.make_batch(args, torch.float64, "cpu")
    from spikedelay.ops import dispatch

    assert dispatch.backend_name("lif", x) == kernel_backend
    sparse = dispatch.select("delay_conv", x).sparse_events(x) is not None
    assert sparse == (kernel_backend == "numba")  # the SHD-like input: sparse transform on CPU
    result = ts.run_check(args)
    assert [s["sigma"] for s in result["per_sigma"]] == [12.0, 0.23]
    for per_sigma in result["per_sigma"]:
        bad = [t for t in per_sigma["tensors"] if not t["ok"]]
        assert not bad, f"σ={per_sigma['sigma']}: {bad}"
        assert len(per_sigma["tensors"]) == 1 + 2 * 3 + 2 * 2  # loss, 3 delay layers, 2 BNs


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_batch_of_one_equals_reference_formulation(restore_torch_globals):
    """A batch of one sample (BatchNorm statistics over its time steps alone): loss and every
    gradient equal the paper's formulation's, and none of them is all zero."""
    ts = _train_speed()
    args = ts.parse_args(["--batch", "1", "--hidden", "24", "--frames", "30", "--tol", "1e-10",
                          "--check-dtype", "float64"])
    result = ts.run_check(args)
    for per_sigma in result["per_sigma"]:
        assert len(per_sigma["tensors"]) == 1 + 2 * 3 + 2 * 2, per_sigma
        bad = [t for t in per_sigma["tensors"] if not t["ok"] or t["max_abs"] == 0]
        assert not bad, f"σ={per_sigma['sigma']}: {bad}"
