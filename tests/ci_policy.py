"""pytest plugin (loaded by tests/conftest.py): no test may skip silently in CI.

Why: a skipped test proves nothing, and a skip that CI does not notice hides a missing
dependency or data folder forever. Outside CI a skip is fine (a user's clone has no
``../shared``), and ``-ra`` in the pytest options prints every reason. Under ``CI=true``
(what CI services set, and what ``.ci/run`` sets) every skip — at collection, in setup, in
the test itself — becomes a failure that names its reason, except for tests marked
``@pytest.mark.gpu``: those need a CUDA device, which CI does not have, and skip by themselves
when there is none.
"""

from __future__ import annotations

import os

import pytest

CI_SKIP_PREFIX = "skipped in CI, where every non-GPU test must run:"


def in_ci() -> bool:
    """``CI`` set to true/1/yes (case-insensitive), as CI services and ``.ci/run`` do."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA device; skips without one, the only skip allowed in CI")
    if in_ci():
        # A module that fails (or skips, see below) at import must not stop the other tests:
        # CI reports every problem of a run at once, and still exits non-zero.
        config.option.continue_on_collection_errors = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None and not _cuda_available():
        pytest.skip("GPU-only test: no CUDA device")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail") and in_ci()
            and item.get_closest_marker("gpu") is None):
        report.outcome = "failed"
        report.longrepr = f"{CI_SKIP_PREFIX} {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """A module that skips while it is imported (``pytest.importorskip`` at the top)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci():
        report.outcome = "failed"
        report.longrepr = f"{CI_SKIP_PREFIX} {_reason(report.longrepr)}"
