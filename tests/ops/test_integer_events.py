"""The event-driven integer-delay evaluation equals the DFT integer-kernel path and conv1d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikedelay.config import ModelConfig
from spikedelay.delays import integer_kernel
from spikedelay.model import DelaySNN
from spikedelay.ops import delay_conv as dc


def _conv1d(x, kernel, left, right):
    return F.conv1d(F.pad(x.transpose(1, 2), (left, right)), kernel).transpose(1, 2)


@pytest.mark.parametrize("copies", [1, 2])
@pytest.mark.parametrize("left,right", [(24, 12), (24, 0), (20, 3), (30, 5)])
def test_event_route_equals_conv1d_float64(monkeypatch, copies, left, right):
    monkeypatch.setenv("SPIKEDELAY_KERNELS", "numba")
    g = torch.Generator().manual_seed(left + right + copies)
    b, t, i, o, k = 3, 40, 7, 5, 25
    x = (torch.rand(b, t, i, generator=g, dtype=torch.float64) < 0.05).double() * 2.5
    weight = torch.randn(o, i, copies, generator=g, dtype=torch.float64)
    delays = torch.randint(0, k, (o, i, copies), generator=g)
    calls = []
    monkeypatch.setattr(dc, "use_integer_events", lambda *a: calls.append(a) or True)
    y = dc.integer_delay_conv(x, weight, delays, k, left, right,
                              lambda: pytest.fail("took the DFT route"))
    assert len(calls) == 1
    torch.testing.assert_close(y, _conv1d(x, integer_kernel(weight, delays, k), left, right),
                               rtol=0, atol=1e-12)


def test_dense_or_large_batch_inputs_take_the_dft(monkeypatch):
    assert dc.use_integer_events(64, 25, 0.09, 1)
    assert not dc.use_integer_events(256, 25, 0.09, 1)  # the SHD recipe's batch
    assert not dc.use_integer_events(64, 25, 0.15, 1)  # the input layer's counts
    assert not dc.use_integer_events(64, 25, 0.09, 2)


def test_model_evaluation_same_outputs_and_predictions(monkeypatch):
    """A float32 network in eval: the event route against the DFT route (forced off)."""
    monkeypatch.setenv("SPIKEDELAY_KERNELS", "numba")
    torch.manual_seed(3)
    net = DelaySNN(ModelConfig(in_features=40, hidden=[48, 48], n_classes=10, max_delay=25))
    net.eval()
    x = (torch.rand(16, 60, 40) < 0.08).float() * 3
    lengths = torch.randint(30, 61, (16,))
    lengths[0] = 60
    taken = []
    original = dc.use_integer_events
    monkeypatch.setattr(dc, "use_integer_events",
                        lambda *a: taken.append(original(*a)) or taken[-1])
    with torch.no_grad():
        v_events, _ = net(x, lengths)
    assert any(taken)
    monkeypatch.setattr(dc, "use_integer_events", lambda *a: False)
    with torch.no_grad():
        v_dft, _ = net(x, lengths)
    torch.testing.assert_close(v_events, v_dft, rtol=0, atol=1e-4)
    assert torch.equal(v_events.sum(1).argmax(-1), v_dft.sum(1).argmax(-1))
