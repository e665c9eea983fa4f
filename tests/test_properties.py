"""Property-based tests (hypothesis): framing/binning against a naive loop, and the HDF5 reader
fed malformed files, which must give a DataError naming the file or valid records, nothing else.

~10-30 s on 2 loaded cores (example counts are kept small; hypothesis shrinks any failure).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikedelay.data.framing import Framing, frame_events, n_frames
from spikedelay.data.hdf5 import read_spike_file, write_spike_file
from spikedelay.errors import ConfigError, DataError

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- framing ------------------------------------------------------------------------------------
GROUPS = {700: [1, 5, 7, 50, 700], 10: [1, 2, 5, 10]}


@st.composite
def events(draw, max_spikes: int = 60):
    n_channels = draw(st.sampled_from(sorted(GROUPS)))
    group = draw(st.sampled_from(GROUPS[n_channels]))
    n = draw(st.integers(0, max_spikes))
    times = draw(st.lists(st.floats(0.0, 1.5, allow_nan=False, width=32), min_size=n,
                          max_size=n))
    units = draw(st.lists(st.integers(0, n_channels - 1), min_size=n, max_size=n))
    bin_ms = draw(st.sampled_from([1.0, 4.0, 10.0, 25.0]) | st.floats(0.5, 100.0))
    return np.array(times, dtype=np.float64), np.array(units, dtype=np.int64), n_channels, \
        group, bin_ms


def naive_frames(times, units, bin_ms, n_channels, group, max_frames=None) -> np.ndarray:
    """The module docstring's rule, one spike at a time."""
    if len(times) == 0:
        return np.zeros((0, n_channels // group), np.float32)
    t_count = max(n_frames(t, bin_ms) for t in times)
    if max_frames is not None:
        t_count = min(t_count, max_frames)
    out = np.zeros((t_count, n_channels // group), np.float32)
    for t, u in zip(times, units, strict=True):
        frame = int(math.floor(1000.0 * float(t) / bin_ms))
        if frame < t_count:
            out[frame, u // group] += 1
    return out


@FAST
@given(events(), st.none() | st.integers(1, 40))
def test_framing_matches_a_naive_loop(ev, max_frames):
    times, units, n_channels, group, bin_ms = ev
    got = frame_events(times, units, bin_ms=bin_ms, n_channels=n_channels, channel_group=group,
                       max_frames=max_frames)
    expected = naive_frames(times, units, bin_ms, n_channels, group, max_frames)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if max_frames is None:
        assert got.sum() == len(times)  # every spike counted once


@FAST
@given(events(), st.randoms(use_true_random=False))
def test_framing_ignores_event_order_and_adds_up(ev, rnd):
    times, units, n_channels, group, bin_ms = ev
    frame = Framing(bin_ms=bin_ms, n_channels=n_channels, channel_group=group)
    order = list(range(len(times)))
    rnd.shuffle(order)
    whole = frame(times, units)
    np.testing.assert_array_equal(frame(times[order], units[order]), whole)
    cut = rnd.randint(0, len(times))  # frames of two halves sum to the frames of the whole
    a, b = frame(times[:cut], units[:cut]), frame(times[cut:], units[cut:])
    total = np.zeros_like(whole)
    total[: len(a)] += a
    total[: len(b)] += b
    np.testing.assert_array_equal(total, whole)


@FAST
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda b: not (math.isfinite(b) and b > 0)), st.just(0)))
def test_non_positive_or_non_finite_bins_are_config_errors(bin_ms):
    with pytest.raises(ConfigError, match="bin_ms"):
        Framing(bin_ms=bin_ms)


@FAST
@given(st.integers(1, 700).filter(lambda g: 700 % g != 0))
def test_channel_groups_that_do_not_divide_are_config_errors(group):
    with pytest.raises(ConfigError, match="must divide"):
        Framing(channel_group=group)


@FAST
@given(st.floats(-10.0, -1e-9) | st.just(-0.5), st.integers(-5, -1) | st.integers(700, 2000))
def test_out_of_range_events_are_refused(bad_time, bad_unit):
    with pytest.raises(ValueError, match=">= 0"):
        frame_events(np.array([0.1, bad_time]), np.array([1, 2]))
    with pytest.raises(ValueError, match="unit ids"):
        frame_events(np.array([0.1, 0.2]), np.array([1, bad_unit]))


# -- HDF5 reader ----------------------------------------------------------------------------------
@st.composite
def spike_samples(draw):
    n = draw(st.integers(1, 6))
    times, units = [], []
    for _ in range(n):
        k = draw(st.integers(1, 20))
        t = draw(st.lists(st.floats(0.0, 2.0, width=32), min_size=k, max_size=k))
        times.append(np.sort(np.array(t, dtype=np.float64)))
        units.append(np.array(draw(st.lists(st.integers(0, 699), min_size=k, max_size=k))))
    n_classes = draw(st.integers(1, 4))
    labels = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    speakers = np.array(draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)))
    return times, units, labels, speakers, [f"c{i}" for i in range(n_classes)]


@FAST
@given(spike_samples(), st.booleans())
def test_write_then_read_round_trips(tmp_path, samples, compress):
    times, units, labels, speakers, keys = samples
    path = write_spike_file(tmp_path / "rt.h5", times, units, labels, speakers, keys,
                            compress=compress)
    rec = read_spike_file(path)
    assert len(rec) == len(times) and rec.class_names == keys
    np.testing.assert_array_equal(rec.labels, labels)
    np.testing.assert_array_equal(rec.speakers, speakers)
    for a, b, ua, ub in zip(rec.times, times, rec.units, units, strict=True):
        np.testing.assert_array_equal(a, b)  # float32-representable by construction
        np.testing.assert_array_equal(ua, ub)


def _read_or_data_error(path: Path):
    """The reader's contract: valid records, or a DataError that names the file."""
    try:
        rec = read_spike_file(path)
    except DataError as err:
        assert str(path) in str(err)
        return None
    assert len(rec) >= 1
    for t, u in zip(rec.times, rec.units, strict=True):
        assert len(t) == len(u) >= 1 and np.isfinite(t).all() and (t >= 0).all()
        assert ((u >= 0) & (u < 700)).all()
    return rec


@functools.cache
def _valid_bytes() -> bytes:
    """A valid 8-sample file's bytes (written once per session)."""
    import tempfile

    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 1, 30)) for _ in range(8)]
    units = [rng.integers(0, 700, 30) for _ in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_spike_file(Path(tmp) / "v.h5", times, units, np.arange(8) % 3,
                                np.arange(8) % 2, ["a", "b", "c"])
        return path.read_bytes()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_bytes_give_a_data_error_or_valid_records(tmp_path, data):
    raw = bytearray(_valid_bytes())
    how = data.draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] = raw[pos] ^ 0xFF if how == "flip" else data.draw(st.integers(0, 255))
    gz = data.draw(st.booleans())
    path = tmp_path / ("d.h5.gz" if gz else "d.h5")
    if gz:
        import gzip

        path.write_bytes(gzip.compress(bytes(raw)))
    else:
        path.write_bytes(bytes(raw))
    _read_or_data_error(path)


BAD_LAYOUTS = {
    "no times": lambda f: (f.create_group("spikes").create_dataset("units", data=[1]),
                           f.create_dataset("labels", data=[0])),
    "labels is a group": lambda f: (_spikes(f, 1), f.create_group("labels")),
    "fixed-width, counts differ": lambda f: (
        f.create_group("spikes").create_dataset("times", data=[0.1, 0.2]),
        f["spikes"].create_dataset("units", data=[1]), f.create_dataset("labels", data=[0])),
    "string labels": lambda f: (_spikes(f, 1), f.create_dataset("labels", data=[b"x"])),
    "2-D labels": lambda f: (_spikes(f, 2), f.create_dataset("labels", data=[[0, 1], [1, 0]])),
    "fewer labels": lambda f: (_spikes(f, 3), f.create_dataset("labels", data=[0])),
    "negative label": lambda f: (_spikes(f, 1), f.create_dataset("labels", data=[-2])),
    "string speakers": lambda f: (_spikes(f, 1), f.create_dataset("labels", data=[0]),
                                  f.create_group("extra").create_dataset("speaker",
                                                                         data=[b"bob"])),
    "keys are numbers": lambda f: (_spikes(f, 1), f.create_dataset("labels", data=[3]),
                                   f.create_group("extra").create_dataset("keys", data=[1, 2])),
    "NaN time": lambda f: (_spikes(f, 1, t=np.nan), f.create_dataset("labels", data=[0])),
    "unit 700": lambda f: (_spikes(f, 1, u=700), f.create_dataset("labels", data=[0])),
    "empty file": lambda f: None,
}


def _spikes(f, n, t=0.1, u=3):
    g = f.create_group("spikes")
    g.create_dataset("times", shape=(n,), dtype=h5py.vlen_dtype(np.float32))
    g.create_dataset("units", shape=(n,), dtype=h5py.vlen_dtype(np.int32))
    for i in range(n):
        g["times"][i] = np.array([t, t + 0.01], dtype=np.float32)
        g["units"][i] = np.array([u, 1], dtype=np.int32)


@pytest.mark.parametrize("layout", sorted(BAD_LAYOUTS))
def test_malformed_layouts_are_data_errors(tmp_path, layout):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        BAD_LAYOUTS[layout](f)
    with pytest.raises(DataError) as info:
        read_spike_file(path)
    assert str(path) in str(info.value)


@FAST
@given(spike_samples(), st.integers(0, 4), st.sampled_from(
    ["negative time", "inf time", "unit too big", "unit negative", "length mismatch"]))
def test_bad_values_name_the_sample(tmp_path, samples, which, problem):
    times, units, labels, speakers, keys = samples
    assume(which < len(times))
    times = [t.copy() for t in times]
    units = [u.astype(np.int64) for u in units]
    if problem == "negative time":
        times[which][0] = -0.25
    elif problem == "inf time":
        times[which][-1] = np.inf
    elif problem == "unit too big":
        units[which][0] = 700
    elif problem == "unit negative":
        units[which][0] = -1
    else:
        units[which] = units[which][:-1] if len(units[which]) > 1 else np.array([1, 2])
    # Bypass the writer's own validation: write the raw layout by hand.
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        g.create_dataset("times", shape=(len(times),), dtype=h5py.vlen_dtype(np.float64))
        g.create_dataset("units", shape=(len(units),), dtype=h5py.vlen_dtype(np.int64))
        for i, (t, u) in enumerate(zip(times, units, strict=True)):
            g["times"][i], g["units"][i] = t, u
        f.create_dataset("labels", data=labels)
    with pytest.raises(DataError, match=rf"sample {which}\b"):
        read_spike_file(path)
