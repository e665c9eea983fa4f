"""Events → frames against a slow per-event loop; gaps kept; grouping; validation (~1 s)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from spikedelay.data import framing
from spikedelay.data.framing import Framing, frame_events
from spikedelay.errors import ConfigError


def naive_frames(times, units, bin_ms, n_channels, group, max_frames=None):
    """One spike at a time, straight from the definition in the module docstring."""
    last = max(times)
    t_count = math.floor(1000.0 * last / bin_ms) + 1
    if max_frames is not None:
        t_count = min(t_count, max_frames)
    out = [[0.0] * (n_channels // group) for _ in range(t_count)]
    for t, c in zip(times, units, strict=True):
        k = math.floor(float(t) * (1000.0 / bin_ms))
        if k < t_count:
            out[k][int(c) // group] += 1.0
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bin_ms, group, max_frames", [(10.0, 5, None), (1.0, 1, None),
                                                       (7.5, 7, 20), (25.0, 700, None)])
def test_matches_naive_loop(seed, bin_ms, group, max_frames):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    times = rng.uniform(0, 1.2, n)
    units = rng.integers(0, 700, n)
    got = frame_events(times, units, bin_ms=bin_ms, channel_group=group, max_frames=max_frames)
    want = naive_frames(times, units, bin_ms, 700, group, max_frames)
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_silent_gaps_are_kept():
    # Spikes at 5 ms and 505 ms: 50 silent bins in between stay in the output.
    f = frame_events(np.array([0.005, 0.505]), np.array([0, 699]))
    assert f.shape == (51, 140)
    assert f[0, 0] == 1 and f[50, 139] == 1
    assert f[1:50].sum() == 0


def test_grid_starts_at_zero_not_at_first_spike():
    f = frame_events(np.array([0.095]), np.array([12]))
    assert f.shape == (10, 140)  # bins 0..9, spike in bin 9
    assert f[9, 2] == 1 and f[:9].sum() == 0


def test_grouping_sums_neighbours():
    units = np.arange(700)
    f = frame_events(np.zeros(700), units)
    np.testing.assert_array_equal(f, np.full((1, 140), 5.0, dtype=np.float32))
    f7 = frame_events(np.zeros(3), np.array([0, 6, 7]), channel_group=7)
    assert f7.shape == (1, 100) and f7[0, 0] == 2 and f7[0, 1] == 1


def test_crop():
    f = frame_events(np.array([0.0, 0.5]), np.array([0, 0]), max_frames=10)
    assert f.shape == (10, 140) and f.sum() == 1


@pytest.mark.parametrize("kwargs, frag", [({"channel_group": 3}, "must divide"),
                                          ({"bin_ms": 0.0}, "bin_ms"),
                                          ({"max_frames": 0}, "max_frames")])
def test_validation(kwargs, frag):
    with pytest.raises(ConfigError, match=frag):
        Framing(**kwargs)
    with pytest.raises(ConfigError, match=frag):
        frame_events(np.array([0.1]), np.array([1]), **kwargs)


def test_framing_transform_is_hashable_and_serialisable():
    a, b = Framing(), Framing(bin_ms=10, n_channels=700, channel_group=5)
    assert a == b and hash(a) == hash(b) and len({a, b, Framing(bin_ms=5.0)}) == 2
    assert a.to_dict() == {"bin_ms": 10.0, "n_channels": 700, "channel_group": 5,
                           "max_frames": None}
    assert Framing(**a.to_dict()) == a
    assert a.out_features == 140
    times, units = np.array([0.0, 0.011]), np.array([1, 9])
    np.testing.assert_array_equal(a(times, units), naive_frames(times, units, 10.0, 700, 5))


def test_docstring_examples_run():
    assert doctest.testmod(framing).failed == 0
