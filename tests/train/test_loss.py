"""The loss against a per-sample restatement of REFERENCE §1 (m = Σ_t softmax, CE on m)."""

import math

import torch

from spikedelay.train.loss import summed_softmax_loss


def _reference_loss(v_out, labels, lengths):
    total = 0.0
    for b in range(v_out.shape[0]):
        m = [0.0] * v_out.shape[2]
        for t in range(int(lengths[b])):
            row = [math.exp(float(v)) for v in v_out[b, t]]
            s = sum(row)
            m = [a + r / s for a, r in zip(m, row, strict=True)]
        log_z = math.log(sum(math.exp(a) for a in m))
        total += log_z - m[int(labels[b])]
    return total / v_out.shape[0]


def test_masked_loss_matches_per_sample_formula():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1])
    lengths = torch.tensor([7, 4, 2])
    loss, m = summed_softmax_loss(v, labels, lengths, masked=True)
    assert math.isclose(loss.item(), _reference_loss(v, labels, lengths), rel_tol=1e-12)
    assert m.shape == (3, 4)
    assert torch.allclose(m.sum(-1), lengths.double())


def test_padding_values_do_not_change_masked_loss_but_change_unmasked():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(2, 6, 5, generator=g)
    labels = torch.tensor([1, 2])
    lengths = torch.tensor([6, 3])
    v2 = v.clone()
    v2[1, 3:] = 50.0  # garbage in padded steps
    a, _ = summed_softmax_loss(v, labels, lengths)
    b, _ = summed_softmax_loss(v2, labels, lengths)
    assert torch.equal(a, b)
    c, _ = summed_softmax_loss(v, labels, lengths, masked=False)
    d, _ = summed_softmax_loss(v2, labels, lengths, masked=False)
    assert not torch.allclose(c, d)
    full = torch.full((2,), 6)
    e, _ = summed_softmax_loss(v, labels, full)
    assert torch.allclose(c, e)
