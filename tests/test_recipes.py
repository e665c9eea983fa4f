"""Every shipped recipe (found by listing ``spikedelay/configs/*.yaml``, so a new recipe is tested
for free): it loads as written, builds the parameter count it declares (``expected_params``),
which equals a count from the layer shapes, and takes one real training step. ~10 s.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

import spikedelay
from spikedelay.config import SECTIONS, builtin_configs, load_config
from spikedelay.model import DelaySNN
from spikedelay.train.loop import train_epoch
from spikedelay.train.loss import summed_softmax_loss
from spikedelay.train.setup import build_optimizers

CONFIGS = Path(spikedelay.__file__).resolve().parent / "configs"
RECIPES = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
# The paper's architecture (REFERENCE §1), whose count follows from the layer shapes alone.
DCLS_RECIPES = ["gsc", "quick", "shd", "ssc"]


def test_recipe_list_is_the_configs_folder():
    assert RECIPES and builtin_configs() == RECIPES
    assert set(DCLS_RECIPES) <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_as_written(name):
    """Each value in the YAML file is the value of the loaded config; every other key is the
    dataclass default (read the file with plain yaml, not through the loader)."""
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    cfg = load_config(name)
    assert cfg.expected_params == raw.get("expected_params")
    for section, cls in SECTIONS.items():
        written = raw.get(section) or {}
        loaded = getattr(cfg, section)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                else f.default
            want = written.get(f.name, default)
            if isinstance(want, str) and isinstance(getattr(loaded, f.name), float):
                want = float(want)  # YAML 1.1 reads 1e-3 as a string; the loader converts it
            assert getattr(loaded, f.name) == want, (section, f.name)


def _count_from_shapes(m) -> dict[str, int]:
    """Parameters from the architecture (REFERENCE §1), not from the modules: a weight per
    synapse and bump (in·out·kernel_count per layer, readout included), a position per weight
    when delays are learned, BatchNorm's scale and shift per hidden neuron."""
    sizes = [m.in_features, *m.hidden, m.n_classes]
    kc = 1 if m.delays == "none" else m.kernel_count
    weights = sum(a * b * kc for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    positions = weights if m.delays == "learned" else 0
    return {"weights": weights, "positions": positions, "norm": 2 * sum(m.hidden)}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_builds_its_declared_parameter_count(name):
    cfg = load_config(name)
    assert cfg.expected_params is not None, (
        f"recipe {name}.yaml declares no expected_params (the parameter count it must build)")
    assert DelaySNN(cfg.model).num_parameters() == cfg.expected_params


@pytest.mark.parametrize("name", DCLS_RECIPES)
def test_paper_recipes_declare_the_count_of_their_layer_shapes(name):
    cfg = load_config(name)
    from_shapes = _count_from_shapes(cfg.model)
    assert sum(from_shapes.values()) == cfg.expected_params
    groups = {k: sum(p.numel() for p in v) for k, v in DelaySNN(cfg.model).param_groups().items()}
    assert groups == from_shapes


def test_declared_counts_are_the_published_ones():
    """The paper's sizes (REFERENCE §2): SHD 0.2 M (214,016), SSC/GSC 2.5 M."""
    assert load_config("shd").expected_params == load_config("quick").expected_params == 214_016
    for name in ("ssc", "gsc"):
        assert 2.45e6 < load_config(name).expected_params < 2.55e6


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_takes_one_training_step(name):
    """One step of the real training loop (the recipe's optimizers, masked loss, position
    clamp) on 2 samples × 20 frames moves every parameter group downhill: the update has a
    negative dot product with the gradient, and the loss on the same batch (same dropout mask)
    goes down."""
    cfg = load_config(name)
    m = cfg.model
    torch.manual_seed(0)
    model = DelaySNN(m)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(2, 20, m.in_features, generator=g) < 0.3).float()
    lengths, labels = torch.tensor([20, 13]), torch.tensor([0, 1])
    x[1, 13:] = 0

    def loss_now() -> torch.Tensor:
        torch.manual_seed(2)  # the same dropout mask every time
        v, n = model.train()(x, lengths)
        return summed_softmax_loss(v, labels, n)[0]

    model.zero_grad()
    loss0 = loss_now()
    loss0.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    opts = build_optimizers(model, cfg)
    torch.manual_seed(2)
    train_epoch(model, [(x, lengths, labels)], opts.all(), after_step=model.clamp_positions_)
    with torch.no_grad():
        loss1 = loss_now()
    loss0 = float(loss0.detach())
    assert torch.isfinite(loss1) and float(loss1) < loss0, (loss0, float(loss1))
    groups = {g: ps for g, ps in model.param_groups().items() if ps}  # e.g. no positions
    assert "weights" in groups
    for group, params in groups.items():
        names = [k for k, p in model.named_parameters() if any(p is q for q in params)]
        step = sum(float(((dict(model.named_parameters())[k].detach() - before[k])
                          * grads[k]).sum()) for k in names)
        assert step < 0, (group, step)
