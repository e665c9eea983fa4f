"""The CI skip policy (tests/ci_policy.py) on a throw-away suite run by pytester (~1 s).

Under ``CI=true`` every skip that is not GPU-only must fail the run; elsewhere skips stay skips
and their reasons are printed.
"""

from __future__ import annotations

import pytest

SUITE = '''
import pytest

def test_passes():
    assert True

def test_skips_inside():
    pytest.skip("no frobnicator")

@pytest.mark.skipif(True, reason="marker says no")
def test_skipif_marker():
    pass

@pytest.fixture
def needs_thing():
    pytest.skip("fixture cannot find the thing")

def test_skips_in_fixture(needs_thing):
    pass

@pytest.mark.gpu
def test_gpu_only():
    pytest.skip("GPU-only test: no CUDA device")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
'''

MODULE_SKIP = '''
import pytest
pytest.importorskip("a_module_that_does_not_exist_anywhere")

def test_never_collected():
    pass
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest('pytest_plugins = ["ci_policy"]')
    pytester.makepyfile(test_suite=SUITE)
    return pytester


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_ci_turns_every_non_gpu_skip_into_a_failure(suite, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result = suite.runpytest("-ra")
    outcomes = result.parseoutcomes()
    # skip inside the test → failed; skipif marker and fixture skip (in setup) → errors;
    # the gpu test still skips, the xfail stays an xfail.
    assert outcomes == {"passed": 1, "failed": 1, "errors": 2, "skipped": 1, "xfailed": 1}, \
        outcomes
    assert result.ret != 0
    text = result.stdout.str()
    for reason in ("no frobnicator", "marker says no", "fixture cannot find the thing"):
        assert f"skipped in CI, where every non-GPU test must run: {reason}" in text, reason


def test_ci_fails_a_module_that_skips_while_imported(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest('pytest_plugins = ["ci_policy"]')
    pytester.makepyfile(test_module_skip=MODULE_SKIP, test_other="def test_ok():\n    pass\n")
    result = pytester.runpytest("-ra")
    # the other modules still run, and the run fails
    assert result.ret == 1 and result.parseoutcomes() == {"passed": 1, "errors": 1}
    assert ("skipped in CI, where every non-GPU test must run: could not import "
            "'a_module_that_does_not_exist_anywhere'") in result.stdout.str()
    monkeypatch.setenv("CI", "false")
    result = pytester.runpytest("-ra")
    assert result.ret == 0 and result.parseoutcomes() == {"passed": 1, "skipped": 1}


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_outside_ci_skips_stay_skips_with_their_reasons(suite, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    result = suite.runpytest("-ra")
    outcomes = result.parseoutcomes()
    assert outcomes == {"passed": 1, "skipped": 4, "xfailed": 1}, outcomes
    assert result.ret == 0
    text = result.stdout.str()
    for reason in ("no frobnicator", "marker says no", "fixture cannot find the thing",
                   "GPU-only test: no CUDA device"):
        assert reason in text, reason


def test_gpu_marker_skips_without_cuda_and_is_allowed_in_ci(pytester, monkeypatch):
    import torch

    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pytester.makeconftest('pytest_plugins = ["ci_policy"]')
    pytester.makepyfile(test_gpu="import pytest\n\n@pytest.mark.gpu\ndef test_kernel():\n"
                                 "    raise AssertionError('ran without a GPU')\n")
    result = pytester.runpytest_inprocess("-ra")
    assert result.parseoutcomes() == {"skipped": 1}
    assert "GPU-only test: no CUDA device" in result.stdout.str()
    assert result.ret == 0
