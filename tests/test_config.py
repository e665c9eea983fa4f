"""Config validation: every problem reported at once, with the key and the allowed range."""

import pytest

from spikedelay.config import dump_config, load_config
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


# -- every bad input listed in issue 7 §3, each with its message ----------------------------------
@pytest.mark.parametrize("override,expected", [
    ("model.max_delay=-3", "model.max_delay = -3: must be an integer >= 1"),
    ("model.dropout=1.5", "model.dropout = 1.5: must be in [0, 1)"),
    ("model.dropout=-0.1", "model.dropout = -0.1: must be in [0, 1)"),
    ("model.hidden=[8, 0]", "model.hidden = [8, 0]: must be a non-empty list of integers >= 1"),
    ("model.hidden=[8, 2.5]", "model.hidden = [8, 2.5]: must be list of int"),
    ("train.epochs=-1", "train.epochs = -1: must be an integer >= 1"),
    ("train.epochs=2.5", "train.epochs = 2.5: must be int"),
    ("train.lr=0", "train.lr = 0.0: must be > 0"),
    ("train.masked_loss=maybe", "train.masked_loss = 'maybe': must be bool"),
    ("train.protocol=test", "train.protocol = 'test': must be 'validation' | 'test-selected'"),
    ("data.channel_group=0", "data.channel_group = 0: must be an integer >= 1"),
    ("data.val_fraction=1", "data.val_fraction = 1.0: must be in [0, 1)"),
    ("trainer.epochs=3", "unknown section 'trainer': allowed are data, model, train"),
])
def test_each_bad_input_has_its_message(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config("quick", [override])
    assert expected in str(info.value)


def test_data_folder_problems_are_caught_at_validation(tmp_path):
    with pytest.raises(ConfigError, match=r"data.root = '.*nowhere': folder does not exist"):
        load_config("quick", [f"data.root={tmp_path / 'nowhere'}"])
    a_file = tmp_path / "file.h5"
    a_file.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"data.root = '.*file.h5': is a file, not a folder"):
        load_config("quick", [f"data.root={a_file}"])
    with pytest.raises(ConfigError) as info:  # a folder without the split files
        load_config("quick", [f"data.root={tmp_path}", "data.dataset=ssc"])
    assert "ssc files missing" in str(info.value) and "ssc_valid.h5" in str(info.value)


def test_numbers_in_exponent_notation_are_floats():
    cfg = load_config("quick", ["train.lr=1e-3", "model.dropout=5e-1", "data.bin_ms=1e1"])
    assert (cfg.train.lr, cfg.model.dropout, cfg.data.bin_ms) == (1e-3, 0.5, 10.0)
    with pytest.raises(ConfigError, match="train.epochs = '1e3': must be int"):
        load_config("quick", ["train.epochs=1e3"])


def test_cli_reports_every_problem_once_before_any_work(tmp_path):
    """A real `spikedelay train`: exit 2, one `error:` message listing each key, no traceback,
    and nothing created (the run folder is not made; no data is read)."""
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "spikedelay", "train", "--out", str(out),
         "--data", str(tmp_path / "missing"), "--set", "model.max_delay=0",
         "--set", "model.dropout=1", "--set", "model.hidden=[0]", "--set", "train.epochs=0",
         "--set", "model.colour=blue"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.count("error:") == 1 and proc.stderr.startswith("error: invalid config")
    for key in ("model.max_delay", "model.dropout", "model.hidden", "train.epochs",
                "model.colour", "data.root"):
        assert key in proc.stderr, key
    assert not out.exists()


def test_expected_params_is_a_checked_recipe_key_not_part_of_a_run(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("expected_params: 1234\nmodel:\n  hidden: [8]\n")
    cfg = load_config(str(recipe))
    assert cfg.expected_params == 1234 and cfg.model.hidden == [8]
    # not saved with a run, so declaring it never changes a run's config (or its folder name)
    assert "expected_params" not in cfg.to_dict() and "expected_params" not in dump_config(cfg)
    recipe.write_text("model:\n  hidden: [8]\n")
    assert dump_config(load_config(str(recipe))) == dump_config(cfg)
    recipe.write_text("expected_params: lots\nexpected_param: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(recipe))
    assert "expected_params = 'lots': must be int or null" in str(err.value)
    assert "unknown section 'expected_param'" in str(err.value)
