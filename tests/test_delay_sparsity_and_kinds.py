"""Delay sparsity masks (exact counts, straight-through, ramp), the delay-kind recipes' parameter
counts (AxDenSynDelaySNN's, REFERENCE §9) and the config / checkpoint errors of delay kinds."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikedelay.channel_delays import ChannelDelay, ChannelDelayedLinear
from spikedelay.config import ModelConfig, load_config
from spikedelay.delay_masks import DelayMask, masked_count
from spikedelay.delays import DelayedLinear
from spikedelay.errors import ConfigError
from spikedelay.model import DelaySNN, parameter_counts
from spikedelay.train.schedule import sparsity_at

DT = torch.float64


# -- counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,s,off", [(140, 0.8, 112), (512, 0.8, 409), (35, 0.8, 28),
                                     (100, 0.29, 29), (10, 0.5, 5), (7, 0.0, 0), (3, 0.99, 2)])
def test_masked_count_is_floor(n, s, off):
    assert masked_count(n, s) == off


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), s=st.floats(0.0, 0.99), kind=st.sampled_from(["random", "learned"]))
def test_masks_switch_off_exactly_floor_s_n(n, s, kind):
    from fractions import Fraction

    exact = Fraction(s) * n  # the float S times n, exactly; within 1e-9 of an integer counts as it
    expect = round(exact) if abs(exact - round(exact)) < 1e-9 else math.floor(exact)
    torch.manual_seed(n)
    mask = DelayMask((n,), s, kind)
    assert int((~mask.hard()).sum()) == expect == mask.numel - mask.active_count()


def test_random_mask_comes_from_the_seed_and_is_a_buffer():
    torch.manual_seed(7)
    a = ChannelDelay(50, 9, sparsity=0.6)
    torch.manual_seed(7)
    b = ChannelDelay(50, 9, sparsity=0.6)
    torch.manual_seed(8)
    c = ChannelDelay(50, 9, sparsity=0.6)
    assert torch.equal(a.delay_mask.mask, b.delay_mask.mask)
    assert not torch.equal(a.delay_mask.mask, c.delay_mask.mask)
    assert "delay_mask.mask" in a.state_dict()
    # positions and weights are drawn before the mask: sparsity does not change them
    torch.manual_seed(7)
    dense = ChannelDelay(50, 9)
    torch.testing.assert_close(dense.position, a.position)


@pytest.mark.parametrize("kind", ["random", "learned"])
def test_masked_delays_are_zero(kind):
    torch.manual_seed(1)
    layer = ChannelDelayedLinear(20, 3, 9, kind="axonal", sparsity=0.5, mask=kind,
                                 dtype=DT).eval()
    with torch.no_grad():
        layer.position.fill_(-4.0)  # every delay 8 steps (K//2 - p)
    off = ~layer.delay_mask.hard()
    d = layer.integer_delays()
    assert int(off.sum()) == 10 and (d[off] == 0).all() and (d[~off] == 8).all()
    x = torch.randn(2, 12, 20, dtype=DT)
    y = layer(x)
    # independent: masked channels pass straight through, the others arrive 8 steps later
    shifted = torch.zeros(2, 16, 20, dtype=DT)
    shifted[:, :12, off] = x[:, :, off]
    shifted[:, 8:, ~off] = x[:, :8, ~off]
    torch.testing.assert_close(y, shifted @ layer.weight.T, rtol=0, atol=1e-12)
    # and in training the masked channels' kernel is the delay-0 tap exactly
    k = layer.train().shift.kernel()
    assert torch.equal(k[off], torch.nn.functional.one_hot(torch.full((10,), 8), 9).to(DT))


def test_synaptic_mask_zeroes_synapse_delays():
    torch.manual_seed(2)
    layer = DelayedLinear(6, 5, 7, kernel_count=2, sparsity=0.75, dtype=DT).eval()
    off = ~layer.delay_mask.hard()
    assert int(off.sum()) == math.floor(0.75 * 60)
    assert (layer.integer_delays()[off] == 0).all()
    assert layer.active_delays() == 60 - 45


def test_learned_mask_straight_through():
    torch.manual_seed(3)
    mask = DelayMask((8,), 0.5, "learned").train()
    with torch.no_grad():
        mask.scores.copy_(torch.tensor([0.1, 2.0, -1.0, 0.5, 3.0, -0.2, 1.5, 0.0]))
    m = mask(DT)
    # value: the hard top-4 mask exactly; gradient: the sigmoid's
    assert m.tolist() == [0, 1, 0, 1, 1, 0, 1, 0]
    m.sum().backward()
    s = torch.sigmoid(mask.scores.detach())
    torch.testing.assert_close(mask.scores.grad, s * (1 - s))
    mask.set_sparsity(0.25)
    assert int(mask.hard().sum()) == 6
    assert mask.eval()(DT).requires_grad is False


def test_sparsity_ramp_formula():
    # S·(1-(1-t/t_f)³) with t = epoch + 1, t_f = epochs // 4
    for e in range(10):
        t = min(e + 1, 10)
        assert sparsity_at(e, sparsity=0.8, epochs=40) == pytest.approx(
            0.8 * (1 - (1 - t / 10) ** 3))
    assert sparsity_at(9, sparsity=0.8, epochs=40) == pytest.approx(0.8)
    assert sparsity_at(30, sparsity=0.8, epochs=40) == pytest.approx(0.8)
    assert sparsity_at(0, sparsity=0.8, epochs=1) == pytest.approx(0.8)
    assert 0 < sparsity_at(0, sparsity=0.8, epochs=40) < sparsity_at(1, sparsity=0.8, epochs=40)


def test_learned_mask_learns_through_the_model():
    cfg = ModelConfig(in_features=6, hidden=[5], n_classes=3, max_delay=5, delay_kind="axonal",
                      delay_sparsity=0.5, delay_mask="learned", dropout=0.0)
    torch.manual_seed(0)
    net = DelaySNN(cfg).train()
    v, _ = net(torch.rand(2, 8, 6))
    v.sum().backward()
    scores = net.param_groups()["mask_scores"]
    assert len(scores) == 2 and all(s.grad is not None and s.grad.abs().sum() > 0
                                    for s in scores)
    net.set_sparsity(0.0)
    assert net.num_active_delays() == net.num_delays() == 6 + 5


# -- recipes --------------------------------------------------------------------------------------
# AxDenSynDelaySNN's counts (REFERENCE §9, counted from their code), 140-512-512-512-35
@pytest.mark.parametrize("name,params,delays", [
    ("synaptic-ssc", 1_230_848, None), ("axonal-ssc", 618_636, 1_676),
    ("dendritic-ssc", 618_531, 1_571), ("axonal-gsc", 618_636, 1_676),
])
def test_kind_recipes_match_reference_counts(name, params, delays):
    counts = parameter_counts(load_config(name).model)
    assert counts["parameters"] == params
    if delays is not None:
        assert counts["delays"] == counts["active_delays"] == delays


@pytest.mark.parametrize("kind,params", [("synaptic", 1_128_448), ("axonal", 567_336),
                                         ("dendritic", 567_331)])
def test_their_40_band_front_end_counts(kind, params):
    cfg = load_config("synaptic-ssc", ["model.in_features=40", f"model.delay_kind={kind}"])
    assert parameter_counts(cfg.model)["parameters"] == params


def test_sparse_recipe_active_delays():
    cfg = load_config("axonal-sparse-ssc")
    counts = parameter_counts(cfg.model)
    assert counts["parameters"] == 618_636 and counts["delays"] == 1_676
    # ⌊0.8·140⌋ = 112 and ⌊0.8·512⌋ = 409 switched off per layer
    assert counts["active_delays"] == (140 - 112) + 3 * (512 - 409) == 337


def test_configs_params_cli(capsys):
    from spikedelay.cli import main

    assert main(["configs", "axonal-sparse-ssc", "--params"]) == 0
    out = capsys.readouterr().out
    assert "618,636 trainable parameters" in out and "337 active" in out


# -- errors ---------------------------------------------------------------------------------------
def test_every_kind_problem_in_one_message():
    with pytest.raises(ConfigError) as err:
        load_config("quick", ["model.delay_kind=somatic", "model.interpolation=cubic",
                              "model.delay_mask=best", "model.delay_sparsity=1.0"])
    msg = str(err.value)
    for key in ("delay_kind", "interpolation", "delay_mask", "delay_sparsity"):
        assert f"model.{key}" in msg
    with pytest.raises(ConfigError) as err:
        load_config("quick", ["model.delay_kind=dendritic", "model.kernel_count=2",
                              "model.delay_sparsity=-0.1"])
    assert "model.kernel_count = 2" in str(err.value) and "[0, 1)" in str(err.value)
    with pytest.raises(ConfigError, match="no delays to switch off"):
        load_config("quick", ["model.delays=none", "model.delay_sparsity=0.5"])


def test_cli_reports_kind_errors_without_traceback(capsys):
    from spikedelay.cli import main

    assert main(["configs", "quick", "--params", "--set", "model.delay_kind=axial"]) == 2
    err = capsys.readouterr().err
    assert "model.delay_kind" in err and "Traceback" not in err


@pytest.mark.parametrize("saved,loaded", [("synaptic", "axonal"), ("axonal", "dendritic"),
                                          ("dendritic", "synaptic")])
def test_state_of_another_kind_is_one_clear_error(saved, loaded):
    base = {"in_features": 6, "hidden": [6], "n_classes": 6, "max_delay": 5}
    state = DelaySNN(ModelConfig(**base, delay_kind=saved)).state_dict()
    with pytest.raises(ValueError, match=f"hold {saved} delays .* model.delay_kind = {loaded}"):
        DelaySNN(ModelConfig(**base, delay_kind=loaded)).load_state_dict(state)


def test_synaptic_mask_training_kernel():
    """Training kernel of a masked synaptic layer: active copies a dcls-formula Gaussian bump,
    masked copies their whole weight on the delay-0 tap (K-1)."""
    torch.manual_seed(4)
    k = 7
    layer = DelayedLinear(3, 2, k, sparsity=0.5, dtype=DT).train()
    layer.set_sigma(1.4)
    kern = layer.kernel()
    on = layer.delay_mask.hard()
    taps = torch.arange(k, dtype=DT)
    for j in range(2):
        for i in range(3):
            w = layer.weight[j, i, 0].detach()
            if on[j, i, 0]:
                g = torch.exp(-0.5 * ((taps - (layer.position[j, i, 0].detach() + k // 2))
                                      / (1.4 + 0.27)) ** 2)
                want = w * g / (g.sum() + 1e-7)
            else:
                want = torch.zeros(k, dtype=DT)
                want[k - 1] = w
            torch.testing.assert_close(kern[j, i].detach(), want, rtol=1e-12, atol=1e-14)
    assert int((~on).sum()) == 3
