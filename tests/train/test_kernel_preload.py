"""The background kernel preload loads this model's CPU kernels and leaves the RNG alone."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from spikedelay.config import load_config
from spikedelay.train import kernel_notice

_CHILD = """
import json, sys, threading, torch
from spikedelay.config import load_config
from spikedelay.train.kernel_notice import preload_kernels
cfg = load_config("quick", ["model.hidden=[8,8]"])
torch.manual_seed(5)
before = torch.get_rng_state()
preload_kernels(cfg, torch.device("cpu"))
same_rng = torch.equal(before, torch.get_rng_state())
for thread in threading.enumerate():
    if thread.name == "preload-kernels":
        thread.join()
loaded = sorted(name.rsplit(".", 1)[-1] + "." + attr
                for name, mod in list(sys.modules.items())
                if name.startswith("spikedelay.ops._") and name.endswith("_numba")
                for attr, obj in vars(mod).items() if getattr(obj, "signatures", None))
print(json.dumps({"same_rng": same_rng, "loaded": loaded}))
"""


def test_preload_loads_the_models_kernels_in_a_fresh_process():
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=300, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same_rng"]
    loaded = set(result["loaded"])
    # the quick recipe's paths: Gaussian kernel, sparse DFT input, BN→LIF, LI readout, and
    # the event-driven integer evaluation
    for kernel in ("_gaussian_numba", "_delay_conv_numba._events", "_delay_conv_numba._transform",
                   "_batchnorm_numba", "_lif_numba", "_delay_conv_numba._integer_taps"):
        assert any(name.startswith(kernel) for name in loaded), (kernel, loaded)


def test_preload_does_not_change_the_main_threads_random_numbers():
    cfg = load_config("quick", ["model.hidden=[8]"])
    torch.manual_seed(11)
    expected = torch.rand(5)
    torch.manual_seed(11)
    assert kernel_notice.preload_kernels(cfg, torch.device("cpu")) in (True, False)
    torch.testing.assert_close(torch.rand(5), expected, rtol=0, atol=0)


def test_no_preload_off_cpu():
    cfg = load_config("quick", [])
    assert kernel_notice.preload_kernels(cfg, torch.device("meta")) is True
