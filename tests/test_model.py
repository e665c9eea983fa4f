"""DelaySNN: parameter counts, shipped configs, an independent composition, length masking.

Runtime: ~3 s on 2 cores.
"""

from __future__ import annotations

import math

import pytest
import torch

from spikedelay.config import ModelConfig, builtin_configs, load_config
from spikedelay.model import DelaySNN
from spikedelay.train.loss import summed_softmax_loss

DT = torch.float64


def test_shd_recipe_has_214016_parameters():
    cfg = ModelConfig(in_features=140, hidden=[256, 256], n_classes=20, max_delay=25,
                      kernel_count=1, delays="learned")
    net = DelaySNN(cfg)
    groups = net.param_groups()
    count = {k: sum(p.numel() for p in v) for k, v in groups.items()}
    assert count == {"weights": 106_496, "positions": 106_496, "norm": 1_024}
    assert net.num_parameters() == 214_016
    assert load_config("shd").model == cfg  # the recipe is this architecture, key for key


@pytest.mark.parametrize("mode,expected", [("none", 106_496 + 1_024), ("fixed", 106_496 + 1_024)])
def test_baselines_drop_positions(mode, expected):
    net = DelaySNN(ModelConfig(delays=mode))
    assert net.num_parameters() == expected
    assert net.param_groups()["positions"] == []


@pytest.mark.parametrize("mode", ["learned", "fixed", "none"])
@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic"])
def test_param_groups_cover_every_trainable_parameter_once(mode, kind):
    sparse = {} if mode == "none" else {"delay_sparsity": 0.5, "delay_mask": "learned"}
    net = DelaySNN(ModelConfig(in_features=6, hidden=[5, 4], n_classes=3, max_delay=5,
                               kernel_count=2 if kind == "synaptic" else 1, delays=mode,
                               delay_kind=kind, **sparse))
    grouped = [p for ps in net.param_groups().values() for p in ps]
    assert len({id(p) for p in grouped}) == len(grouped)
    assert {id(p) for p in grouped} == {id(p) for p in net.parameters() if p.requires_grad}


def _expected_params(m: ModelConfig) -> int:
    """Count from the architecture description (REFERENCE §1), not from the modules."""
    sizes = [m.in_features, *m.hidden, m.n_classes]
    kc = 1 if m.delays == "none" else m.kernel_count
    synapses = sum(a * b * kc for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    # one delay per synapse copy, per layer input (axonal) or per layer output (dendritic)
    delays = {"synaptic": synapses, "axonal": sum(sizes[:-1]),
              "dendritic": sum(sizes[1:])}[m.delay_kind] if m.delays != "none" else 0
    positions = delays if m.delays == "learned" else 0
    scores = delays if m.delay_mask == "learned" and m.delay_sparsity > 0 else 0
    return synapses + positions + scores + 2 * sum(m.hidden)


def _is_dcls_recipe(name: str) -> bool:
    """The paper's architecture (REFERENCE §1); the recurrent/adaptive recipes of REFERENCE §9
    are counted in tests/test_model_recipes.py."""
    m = load_config(name).model
    return (m.neuron == "lif" and set(m.recurrence()) == {"none"} and m.layer_delays is None
            and not m.bias and m.norm == "batchnorm")


@pytest.mark.parametrize("name", [n for n in builtin_configs() if _is_dcls_recipe(n)])
def test_shipped_config_builds_counts_and_runs(name):
    m = load_config(name).model
    net = DelaySNN(m)
    assert net.num_parameters() == _expected_params(m)
    if name in ("shd", "quick"):
        assert net.num_parameters() == 214_016
    T = 6
    v, n = net.eval()(torch.rand(2, T, m.in_features), torch.tensor([T, 4]))
    steps = (len(m.hidden) + 1) * ((m.max_delay - 1) // 2)
    assert v.shape == (2, T + steps, m.n_classes)
    assert n.tolist() == [T + steps, 4 + steps]
    assert torch.isfinite(v).all()


def test_quick_config_is_the_shd_architecture():
    q = load_config("quick").model
    assert (q.in_features, q.hidden, q.n_classes, q.max_delay, q.delays) == (
        140, [256, 256], 20, 25, "learned")


# -- an independent composition of the layers ----------------------------------------------------
def _tiny_cfg(**kw):
    base = dict(in_features=5, hidden=[6, 4], n_classes=3, max_delay=7, kernel_count=2,
                delays="learned", dropout=0.0, tau=1.5, readout_tau=2.0, threshold=0.3)
    base.update(kw)
    return ModelConfig(**base)


def _gauss_kernel_ref(w, p, sigma, K):
    """REFERENCE §1 restated tap by tap (loops), independent of spikedelay.delays."""
    out = torch.zeros(w.shape[0], w.shape[1], K, dtype=w.dtype)
    se = abs(sigma) + 0.27
    for j in range(w.shape[0]):
        for i in range(w.shape[1]):
            for c in range(w.shape[2]):
                g = torch.tensor([math.exp(-0.5 * ((k - (float(p[j, i, c]) + K // 2)) / se) ** 2)
                                  for k in range(K)], dtype=w.dtype)
                out[j, i] += float(w[j, i, c]) * g / (g.sum() + 1e-7)
    return out


def _delay_ref(x, kernel, K):
    """Zero-pad left K-1 / right (K-1)//2, cross-correlate: y[t] = Σ_k ker[:, :, k] x_pad[t+k]."""
    xp = torch.cat([x.new_zeros(x.shape[0], K - 1, x.shape[2]), x,
                    x.new_zeros(x.shape[0], (K - 1) // 2, x.shape[2])], dim=1)
    T_out = xp.shape[1] - K + 1
    return torch.stack([torch.einsum("bki,jik->bj", xp[:, t:t + K], kernel)
                        for t in range(T_out)], dim=1)


def _bn_ref(y, gamma, beta, eps=1e-5):
    mean = y.mean(dim=(0, 1))
    var = y.var(dim=(0, 1), unbiased=False)
    return (y - mean) / torch.sqrt(var + eps) * gamma + beta


def _neuron_ref(y, tau, thr=None):
    v = torch.zeros_like(y[:, 0])
    out = []
    for t in range(y.shape[1]):
        h = v - v / tau + y[:, t]
        if thr is None:
            v = h
            out.append(h)
        else:
            s = (h >= thr).to(y.dtype)
            v = h * (1 - s)
            out.append(s)
    return torch.stack(out, 1)


@pytest.mark.usefixtures("kernel_backend")  # every CPU backend, Triton interpreted
@pytest.mark.parametrize("max_delay", [7, 10])  # conv1d, then the DFT path (K >= FFT_MIN_TAPS)
def test_forward_equals_manual_composition_training_mode(max_delay):
    torch.manual_seed(0)
    cfg = _tiny_cfg(max_delay=max_delay)
    net = DelaySNN(cfg).double().train()
    net.set_sigma(1.3)
    with torch.no_grad():
        for layer in net.hidden:
            layer.norm.weight.uniform_(0.5, 2.0)
            layer.norm.bias.uniform_(-0.2, 0.5)
    x = (torch.rand(3, 12, 5, dtype=DT) < 0.4).to(DT)
    v, n = net(x)

    h = x
    spikes = []
    for layer in net.hidden:
        d = layer.delay
        ker = _gauss_kernel_ref(d.weight.detach(), d.position.detach(), 1.3, cfg.max_delay)
        y = _bn_ref(_delay_ref(h, ker, cfg.max_delay), layer.norm.weight.detach(),
                    layer.norm.bias.detach())
        h = _neuron_ref(y, cfg.tau, cfg.threshold)
        spikes.append(h)
    r = net.readout
    ker = _gauss_kernel_ref(r.weight.detach(), r.position.detach(), 1.3, cfg.max_delay)
    v_ref = _neuron_ref(_delay_ref(h, ker, cfg.max_delay), cfg.readout_tau)

    assert all(s.sum() > 0 for s in spikes)  # the comparison goes through active layers
    torch.testing.assert_close(v.detach(), v_ref, atol=1e-9, rtol=1e-9)
    assert n.tolist() == [12 + 3 * ((max_delay - 1) // 2)] * 3
    rec = net.forward_recording(x)
    assert len(rec.spikes) == 2
    for s, s_ref in zip(rec.spikes, spikes, strict=True):
        torch.testing.assert_close(s.detach(), s_ref)


@pytest.mark.usefixtures("kernel_backend")  # every CPU backend, Triton interpreted
@pytest.mark.parametrize("max_delay", [7, 10])
def test_eval_mode_uses_rounded_integer_delays(max_delay):
    torch.manual_seed(1)
    cfg = _tiny_cfg(max_delay=max_delay)
    net = DelaySNN(cfg).double()
    x = (torch.rand(2, 10, 5, dtype=DT) < 0.5).to(DT)
    net.train()(x)  # move running statistics off their init
    net.eval()
    v, _ = net(x)
    h = x
    for layer in net.hidden:
        d = layer.delay
        # integer delays d = K//2 - round(p): a Gaussian with σ_eff → 0 at rounded positions
        ker = torch.zeros(d.out_features, d.in_features, cfg.max_delay, dtype=DT)
        taps = torch.round(d.position.detach()).long() + cfg.max_delay // 2
        ker.scatter_add_(2, taps, d.weight.detach())
        bn = layer.norm
        y = (_delay_ref(h, ker, cfg.max_delay) - bn.running_mean) / torch.sqrt(
            bn.running_var + bn.eps) * bn.weight.detach() + bn.bias.detach()
        h = _neuron_ref(y, cfg.tau, cfg.threshold)
    r = net.readout
    ker = torch.zeros(r.out_features, r.in_features, cfg.max_delay, dtype=DT)
    ker.scatter_add_(2, torch.round(r.position.detach()).long() + cfg.max_delay // 2,
                     r.weight.detach())
    v_ref = _neuron_ref(_delay_ref(h, ker, cfg.max_delay), cfg.readout_tau)
    torch.testing.assert_close(v.detach(), v_ref, atol=1e-9, rtol=1e-9)


# -- masking ---------------------------------------------------------------------------------------
@pytest.mark.usefixtures("kernel_backend")  # every CPU backend, Triton interpreted
@pytest.mark.parametrize("mode", ["learned", "fixed", "none"])
@pytest.mark.parametrize("train", [True, False])
def test_extra_padding_does_not_change_valid_outputs(mode, train):
    torch.manual_seed(2)
    cfg = _tiny_cfg(delays=mode, dropout=0.3)
    net = DelaySNN(cfg).double().train(train)
    x = (torch.rand(3, 9, 5, dtype=DT) < 0.5).to(DT)
    lengths = torch.tensor([9, 6, 4])
    for b in range(3):
        x[b, lengths[b]:] = 0
    x_long = torch.cat([x, torch.zeros(3, 8, 5, dtype=DT)], dim=1)
    x_junk = x_long.clone()
    x_junk[1, 6:] = 1.0  # garbage in padded steps must be ignored as well
    outs = []
    for inp in (x, x_long, x_junk):
        torch.manual_seed(7)  # same dropout masks
        outs.append(net(inp, lengths))
    (v0, n0), (v1, n1), (v2, n2) = outs
    assert n0.tolist() == n1.tolist() == n2.tolist() == [9 + 9, 6 + 9, 4 + 9]
    for b in range(3):
        k = int(n0[b])
        torch.testing.assert_close(v1[b, :k], v0[b, :k], atol=1e-10, rtol=0)
        torch.testing.assert_close(v2[b, :k], v0[b, :k], atol=1e-10, rtol=0)


@pytest.mark.usefixtures("kernel_backend")  # every CPU backend, Triton interpreted
def test_short_sample_alone_equals_sample_in_padded_batch_eval():
    torch.manual_seed(3)
    net = DelaySNN(_tiny_cfg()).double().eval()
    x = (torch.rand(2, 11, 5, dtype=DT) < 0.5).to(DT)
    v_batch, n = net(x, torch.tensor([11, 5]))
    v_alone, n_alone = net(x[1:, :5])
    assert int(n[1]) == int(n_alone[0]) == 5 + 9
    torch.testing.assert_close(v_batch[1, :14], v_alone[0], atol=1e-10, rtol=0)


def test_batch_size_one_gradients_match_finite_differences():
    """One sample alone (BatchNorm statistics over its time steps only), K = 9 (the DFT path):
    the readout's weight and position gradients equal central finite differences of the loss
    (the readout is smooth: no spike follows it), and the surrogate gradient reaches every
    parameter of every layer. The hidden layers' gradients at batch 1 are compared with the
    paper's formulation in tests/test_reference_equivalence.py."""
    torch.manual_seed(5)
    net = DelaySNN(_tiny_cfg(max_delay=9)).double().train()
    net.set_sigma(1.3)
    x = (torch.rand(1, 12, 5, dtype=DT) < 0.5).to(DT)
    label, lengths = torch.tensor([2]), torch.tensor([12])

    def loss() -> torch.Tensor:
        v, n = net(x, lengths)
        return summed_softmax_loss(v, label, n)[0]

    loss().backward()
    with torch.no_grad():
        assert all(float(s.sum()) > 0 for s in net.forward_recording(x).spikes)
    for name, p in net.named_parameters():
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    r = net.readout
    eps = 1e-6
    for param in (r.weight, r.position):
        for idx in [(0, 0, 0), (1, 2, 1), (2, 3, 0), (2, 1, 1)]:
            with torch.no_grad():
                keep = float(param[idx])
                param[idx] = keep + eps
                up = float(loss())
                param[idx] = keep - eps
                down = float(loss())
                param[idx] = keep
            fd = (up - down) / (2 * eps)
            assert float(param.grad[idx]) == pytest.approx(fd, rel=1e-5, abs=1e-9), idx


def test_sigma_and_clamp_reach_every_layer():
    net = DelaySNN(_tiny_cfg())
    net.set_sigma(0.23)
    assert len(net.delay_layers()) == 3
    assert all(float(d.sigma) == pytest.approx(0.23) for d in net.delay_layers())
    with torch.no_grad():
        for d in net.delay_layers():
            d.position.add_(100)
    net.clamp_positions_()
    assert all(float(d.position.detach().max()) == 3 for d in net.delay_layers())
    assert "sigma" in "".join(net.state_dict())
    assert "delays=learned" in repr(net)


def test_rejects_wrong_shapes():
    net = DelaySNN(_tiny_cfg())
    with pytest.raises(ValueError, match="expects x"):
        net(torch.rand(2, 8, 4))
    with pytest.raises(ValueError, match="lengths"):
        net(torch.rand(2, 8, 5), torch.tensor([8]))
