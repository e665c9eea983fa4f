"""Fixtures of the deploy tests (helpers live in deploy_helpers.py)."""

from __future__ import annotations

import pytest

from spikedelay.config import ModelConfig


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return ModelConfig(in_features=12, hidden=[16, 10], n_classes=4, max_delay=7,
                       kernel_count=2, dropout=0.0)
