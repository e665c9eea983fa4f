"""Reader/writer of SHD-layout HDF5: round trips and one test per kind of bad input (~2 s)."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest

from spikedelay.data.hdf5 import find_split_files, read_spike_file, write_spike_file
from spikedelay.errors import DataError


def _assert_same(rec, s):
    assert len(rec) == len(s.labels)
    for a, b in zip(rec.times, s.times, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(rec.units, s.units, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rec.labels, s.labels)
    np.testing.assert_array_equal(rec.speakers, s.speakers)
    assert rec.class_names == s.keys
    assert rec.labels.dtype == np.int64 and rec.speakers.dtype == np.int64


def test_round_trip(spike_file, spike_set):
    _assert_same(read_spike_file(spike_file), spike_set)


def test_layout_is_true_vlen_like_shd(spike_file):
    with h5py.File(spike_file, "r") as f:
        assert h5py.check_vlen_dtype(f["spikes/times"].dtype).kind == "f"
        assert h5py.check_vlen_dtype(f["spikes/units"].dtype) == np.uint16
        assert f["extra/keys"].dtype.kind == "S"  # byte strings, like SHD
        assert f["labels"].shape == f["extra/speaker"].shape == (24,)
        # Samples have different lengths: not a padded 2-D array.
        assert len({len(t) for t in f["spikes/times"][()]}) > 1


def test_gzip_round_trip_and_reproducible(tmp_path, spike_set, write_set):
    a = write_set(tmp_path / "a" / "shd_train.h5.gz", spike_set)
    b = write_set(tmp_path / "b" / "shd_train.h5", spike_set, compress=True)
    assert b.name == "shd_train.h5.gz"
    assert a.read_bytes() == b.read_bytes()  # mtime 0: same bytes, same cache key
    with gzip.open(a) as f:
        assert f.read(8) == b"\x89HDF\r\n\x1a\n"
    _assert_same(read_spike_file(a), spike_set)


def test_reads_the_shared_benchmark_file(shared_path):
    path = shared_path("data/synthdigits-900/shd_test.h5")
    rec = read_spike_file(path)
    assert len(rec) == 300 and len(rec.class_names) == 20
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(rec.units[7], f["spikes/units"][7])


def test_no_partial_file_left_on_failure(tmp_path, spike_set):
    path = tmp_path / "out.h5"
    with pytest.raises(DataError):
        write_spike_file(path, spike_set.times, spike_set.units, spike_set.labels + 10,
                         spike_set.speakers, spike_set.keys)
    assert list(tmp_path.iterdir()) == []


# ---- bad inputs: each message names the file and the problem --------------------------------


def _raises(path, *fragments):
    with pytest.raises(DataError) as info:
        read_spike_file(path)
    msg = str(info.value)
    assert str(path) in msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.h5", "not found")


def test_truncated_file(spike_file):
    data = spike_file.read_bytes()
    spike_file.write_bytes(data[: len(data) // 2])
    _raises(spike_file, "truncated")


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"this is not hdf5" * 100)
    _raises(path, "corrupt")


def test_truncated_gzip(tmp_path, spike_set, write_set):
    path = write_set(tmp_path / "x.h5.gz", spike_set)
    path.write_bytes(path.read_bytes()[:200])
    _raises(path, "gzip")


def test_missing_group(tmp_path):
    path = tmp_path / "nospikes.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = np.zeros(3, dtype=np.uint16)
    _raises(path, "missing group 'spikes'")


def test_missing_labels(spike_file):
    with h5py.File(spike_file, "a") as f:
        del f["labels"]
    _raises(spike_file, "missing dataset 'labels'")


def _raw_file(path, times, units, labels, keys=(b"a", b"b")):
    """Write an SHD-layout file by hand, bypassing the writer's validation."""
    with h5py.File(path, "w") as f:
        tdt, udt = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.int32)
        t = f.create_dataset("spikes/times", (len(times),), dtype=tdt)
        u = f.create_dataset("spikes/units", (len(units),), dtype=udt)
        for i, x in enumerate(times):
            t[i] = np.asarray(x, np.float32)
        for i, x in enumerate(units):
            u[i] = np.asarray(x, np.int32)
        f["labels"] = np.asarray(labels)
        f["extra/keys"] = np.array(keys)
    return path


def test_per_sample_length_mismatch(tmp_path):
    p = _raw_file(tmp_path / "a.h5", [[0.1, 0.2], [0.1]], [[1, 2], [1, 2]], [0, 1])
    _raises(p, "sample 1 has 1 spike times but 2 unit ids")


def test_sample_count_mismatch(tmp_path):
    p = _raw_file(tmp_path / "a.h5", [[0.1], [0.1]], [[1]], [0, 1])
    _raises(p, "spikes/times has 2 samples but spikes/units has 1")


def test_label_count_mismatch(tmp_path):
    p = _raw_file(tmp_path / "a.h5", [[0.1], [0.1]], [[1], [2]], [0, 1, 1])
    _raises(p, "labels has 3 entries but there are 2 samples")


@pytest.mark.parametrize("unit", [700, -1, 4000])
def test_unit_out_of_range(tmp_path, unit):
    p = _raw_file(tmp_path / "a.h5", [[0.1, 0.2], [0.1]], [[1, 2], [unit]], [0, 1])
    _raises(p, f"sample 1 has unit id {unit} outside 0..699")


@pytest.mark.parametrize("bad, what", [(-0.5, "negative spike time"), (np.nan, "non-finite"),
                                       (np.inf, "non-finite")])
def test_bad_times(tmp_path, bad, what):
    p = _raw_file(tmp_path / "a.h5", [[0.1], [0.2, bad]], [[1], [2, 3]], [0, 1])
    _raises(p, "sample 1", what)


def test_empty_sample(tmp_path):
    p = _raw_file(tmp_path / "a.h5", [[0.1], []], [[1], []], [0, 1])
    _raises(p, "sample 1 is empty")


def test_label_outside_keys(tmp_path):
    p = _raw_file(tmp_path / "a.h5", [[0.1], [0.2]], [[1], [2]], [0, 2])
    _raises(p, "label 2 outside 0..1")


def test_writer_rejects_what_the_reader_rejects(tmp_path, make_spike_set, write_set):
    s = make_spike_set(4)
    s.units[2][0] = 700
    with pytest.raises(DataError, match="sample 2 has unit id 700"):
        write_set(tmp_path / "x.h5", s)


# ---- locating split files -------------------------------------------------------------------


def test_find_split_files_layouts(tmp_path, spike_set, write_set):
    flat = tmp_path / "flat"
    write_set(flat / "shd_train.h5", spike_set)
    write_set(flat / "shd_test.h5.gz", spike_set)
    assert find_split_files(flat, "shd") == {
        "train": flat / "shd_train.h5", "test": flat / "shd_test.h5.gz"}
    assert find_split_files(flat, "synthdigits")["train"] == flat / "shd_train.h5"

    tonic = tmp_path / "tonic"
    for split in ("train", "valid", "test"):
        write_set(tonic / "SSC" / f"ssc_{split}.h5", spike_set)
    found = find_split_files(tonic, "ssc")
    assert set(found) == {"train", "valid", "test"}
    assert found["valid"] == tonic / "SSC" / "ssc_valid.h5"


def test_find_split_files_lists_what_it_looked_for(tmp_path, spike_set, write_set):
    write_set(tmp_path / "ssc_train.h5", spike_set)
    with pytest.raises(DataError) as info:
        find_split_files(tmp_path, "ssc")
    msg = str(info.value)
    assert "ssc_valid.h5" in msg and "ssc_test.h5.gz" in msg and "SSC" in msg
    assert "ssc_train" not in msg
    with pytest.raises(DataError, match="unknown spike data set"):
        find_split_files(tmp_path, "mnist")
