"""Config validation: every problem reported at once, with the key and the allowed range."""

import pytest

from spikedelay.config import builtin_configs, load_config
from spikedelay.errors import ConfigError


def test_builtin_recipes_are_the_papers_values():
    shd, ssc, gsc = load_config("shd"), load_config("ssc"), load_config("gsc")
    assert (shd.model.hidden, shd.model.max_delay, shd.train.epochs, shd.train.batch_size,
            shd.model.dropout, shd.model.n_classes) == ([256, 256], 25, 150, 256, 0.4, 20)
    assert shd.model.tau == pytest.approx(1.005)
    for cfg in (ssc, gsc):
        assert (cfg.model.hidden, cfg.model.max_delay, cfg.model.dropout, cfg.model.n_classes,
                cfg.train.batch_size, cfg.model.tau) == ([512] * 3, 31, 0.25, 35, 128, 1.5)
    assert (ssc.train.epochs, gsc.train.epochs) == (60, 100)
    assert shd.train.protocol == "validation"  # honest by default


@pytest.mark.parametrize("name", builtin_configs())
def test_every_builtin_recipe_validates(name):
    cfg = load_config(name)
    assert cfg.train.lr == pytest.approx(5e-3) and cfg.train.lr_positions == pytest.approx(0.1)


@pytest.mark.parametrize("override,key,allowed", [
    ("model.max_delay=0", "model.max_delay", ">= 1"),
    ("model.dropout=1.0", "model.dropout", "[0, 1)"),
    ("model.hidden=[0]", "model.hidden", ">= 1"),
    ("model.hidden=[]", "model.hidden", "non-empty"),
    ("train.epochs=0", "train.epochs", ">= 1"),
    ("train.batch_size=-3", "train.batch_size", ">= 1"),
    ("data.root=/definitely/not/here", "data.root", "does not exist"),
    ("model.delays=sometimes", "model.delays", "'learned'"),
    ("train.epochs=ten", "train.epochs", "int"),
    ("model.colour=blue", "model.colour", "unknown key"),
    ("train.device=tpu", "train.device", "cuda"),
])
def test_bad_values_name_the_key_and_the_allowed_range(override, key, allowed):
    with pytest.raises(ConfigError) as info:
        load_config("quick", [override])
    assert key in str(info.value) and allowed in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load_config("quick", ["model.max_delay=0", "model.dropout=2", "train.epochs=0",
                              "model.typo=1"])
    msg = str(info.value)
    for key in ("model.max_delay", "model.dropout", "train.epochs", "model.typo"):
        assert key in msg


def test_malformed_override_and_unknown_recipe(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("quick", ["epochs=3"])
    with pytest.raises(ConfigError, match="unknown config"):
        load_config("nonexistent")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
