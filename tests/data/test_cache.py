"""Preprocessing cache: hits, invalidation by content/parameters, corrupt entries (~2 s)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import spikedelay.data.loaders as loaders
from spikedelay.data.cache import CacheWarning, FrameCache, cache_dir, cache_key
from spikedelay.data.framing import Framing


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEDELAY_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPIKEDELAY_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "spikedelay")


def test_key_depends_on_source_params_and_version(monkeypatch):
    k = cache_key("abc", {"bin_ms": 10.0})
    assert k == cache_key("abc", {"bin_ms": 10.0})
    assert k != cache_key("abd", {"bin_ms": 10.0})
    assert k != cache_key("abc", {"bin_ms": 5.0})
    monkeypatch.setattr("spikedelay.data.cache.FORMAT_VERSION", 999)
    assert k != cache_key("abc", {"bin_ms": 10.0})


def _count_framing(monkeypatch):
    """Count calls of the framing function behind the loader."""
    calls = {"n": 0}
    original = loaders.read_spike_file

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(loaders, "read_spike_file", counting)
    return calls


def test_hit_on_second_load_gives_identical_arrays(spike_file, monkeypatch):
    calls = _count_framing(monkeypatch)
    a, hit_a = loaders.frame_spike_file(spike_file, Framing())
    b, hit_b = loaders.frame_spike_file(spike_file, Framing())
    assert (hit_a, hit_b) == (False, True) and calls["n"] == 1
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == b[k].dtype


def test_invalidated_by_content_and_framing(spike_file, spike_set, write_set, monkeypatch):
    calls = _count_framing(monkeypatch)
    loaders.frame_spike_file(spike_file, Framing())
    assert loaders.frame_spike_file(spike_file, Framing(bin_ms=5.0))[1] is False
    assert loaders.frame_spike_file(spike_file, Framing(channel_group=7))[1] is False
    assert calls["n"] == 3
    # Same path and size, different content: a miss, and the new labels come back.
    spike_set.labels[:] = spike_set.labels[::-1]
    write_set(spike_file, spike_set)
    arrays, hit = loaders.frame_spike_file(spike_file, Framing())
    assert not hit and calls["n"] == 4
    np.testing.assert_array_equal(arrays["labels"], spike_set.labels)


def _only_entry(suffix):
    (path,) = cache_dir().glob(f"*{suffix}")
    return path


@pytest.mark.parametrize("damage", ["truncate", "flip", "marker", "no_marker", "stale"])
def test_bad_entry_detected_deleted_and_rebuilt(spike_file, monkeypatch, damage):
    calls = _count_framing(monkeypatch)
    good, _ = loaders.frame_spike_file(spike_file, Framing())
    payload, marker = _only_entry(".npz"), _only_entry(".json")
    data = payload.read_bytes()
    if damage == "truncate":
        payload.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        i = len(data) - 100
        payload.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif damage == "marker":
        marker.write_text("{not json")
    elif damage == "no_marker":
        marker.unlink()
    elif damage == "stale":
        meta = json.loads(marker.read_text())
        meta["format_version"] = 0
        marker.write_text(json.dumps(meta))
    with pytest.warns(CacheWarning, match="deleted, rebuilding"):
        again, hit = loaders.frame_spike_file(spike_file, Framing())
    assert not hit and calls["n"] == 2
    for k in good:
        np.testing.assert_array_equal(good[k], again[k])
    # The rebuilt entry is sound: the next load is a clean hit.
    assert loaders.frame_spike_file(spike_file, Framing())[1] is True


def test_payload_loads_without_pickle(tmp_path):
    cache = FrameCache(tmp_path)
    cache.save("k", {"a": np.arange(3), "names": np.array(["x", "yy"])}, {"why": "test"})
    out = cache.load("k")
    assert out["names"].tolist() == ["x", "yy"]
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    with pytest.raises(ValueError):  # object arrays would need pickle: refused at write time
        cache.save("k2", {"o": np.array([object()], dtype=object)}, {})
