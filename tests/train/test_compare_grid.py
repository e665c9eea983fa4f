"""``spikedelay compare --grid`` / ``--variant``: planning only (no training; the study itself is
exercised by test_compare.py)."""

from __future__ import annotations

import pytest

from spikedelay.cli import main
from spikedelay.errors import ConfigError
from spikedelay.train.compare import (
    explicit_variant,
    grid_variants,
    plan_study,
    split_values,
    study_command,
    study_variants,
)


def test_grid_is_the_product_in_order():
    vs = grid_variants(["model.delay_kind=synaptic,axonal", "model.delay_sparsity=0,0.5"])
    assert [v.name for v in vs] == ["synaptic_0", "synaptic_0.5", "axonal_0", "axonal_0.5"]
    assert vs[3].settings == ("model.delay_kind=axonal", "model.delay_sparsity=0.5")


def test_values_with_commas_inside_brackets():
    assert split_values("[128, 128],[256]") == ["[128, 128]", "[256]"]
    (a, b) = grid_variants(["model.hidden=[16, 16],[32]"])
    assert a.settings == ("model.hidden=[16, 16]",) and a.name == "16-16"
    assert b.settings == ("model.hidden=[32]",)


def test_plan_varies_only_the_grid_keys(tmp_path):
    variants = study_variants(grid=["model.delay_kind=synaptic,axonal,dendritic"],
                              explicit=["sparse:model.delay_kind=axonal,model.delay_sparsity=0.8"])
    specs = plan_study("quick", variants, [0, 1], tmp_path, overrides=["model.hidden=[8]"])
    assert [s.name for s in specs[:4]] == ["synaptic-s0", "axonal-s0", "dendritic-s0", "sparse-s0"]
    kinds = {s.name: (s.cfg.model.delay_kind, s.cfg.model.delay_sparsity) for s in specs}
    assert kinds["dendritic-s1"] == ("dendritic", 0.0) and kinds["sparse-s1"] == ("axonal", 0.8)
    assert all(s.cfg.model.hidden == [8] and s.cfg.model.delays == "learned" for s in specs)
    cmd = study_command("quick", [v.name for v in variants], 2, tmp_path,
                        grid=["model.delay_kind=synaptic,axonal,dendritic"],
                        explicit=["sparse:model.delay_kind=axonal,model.delay_sparsity=0.8"])
    assert "--grid model.delay_kind=synaptic,axonal,dendritic" in cmd and "--variants" not in cmd


def test_default_is_the_delay_ablation(tmp_path):
    specs = plan_study("quick", study_variants("none,learned"), [0], tmp_path)
    assert [(s.name, s.cfg.model.delays) for s in specs] == [("none-s0", "none"),
                                                            ("learned-s0", "learned")]


def test_bad_grids_are_config_errors(tmp_path):
    for bad in (["delay_kind=axonal"], ["model.delay_kind="], ["model.delay_kind=a,a"],
                ["model.x=1", "model.x=2"]):
        with pytest.raises(ConfigError, match="--grid"):
            grid_variants(bad)
    with pytest.raises(ConfigError, match="--variant"):
        explicit_variant("no-colon")
    with pytest.raises(ConfigError, match="distinct"):
        study_variants(explicit=["a:model.delays=none", "a:model.delays=fixed"])
    # a bad value in one variant: the config problem, named by variant, before any training
    with pytest.raises(ConfigError, match="(?s)variant axonal_: .*model.delay_kind"):
        plan_study("quick", grid_variants(["model.delay_kind=synaptic,axonal_"]), [0], tmp_path)
    with pytest.raises(ConfigError, match="sets model.delay_kind"):
        plan_study("quick", grid_variants(["model.delay_kind=synaptic"]), [0], tmp_path,
                   overrides=["model.delay_kind=axonal"])


def test_cli_bad_grid_exits_2(tmp_path, capsys):
    assert main(["compare", "--grid", "model.delay_kind=bogus", "--out", str(tmp_path)]) == 2
    assert "model.delay_kind" in capsys.readouterr().err
