"""Loaders: speaker-disjoint split, padding + lengths, batches, protocols, errors (~3 s)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from spikedelay.config import DataConfig
from spikedelay.data.framing import frame_events
from spikedelay.data.hdf5 import read_spike_file
from spikedelay.data.loaders import default_synthdigits_root, load_dataset, split_train_val
from spikedelay.data.sets import FramedSet, pad_packed
from spikedelay.errors import DataError


def _cfg(root, **kw):
    return DataConfig(dataset=kw.pop("dataset", "shd"), root=str(root), **kw)


def test_speaker_disjoint_split(shd_root):
    splits = load_dataset(_cfg(shd_root, val_fraction=0.34), seed=0, protocol="validation",
                          progress=False)
    tr, va = set(splits.train.speakers.tolist()), set(splits.val.speakers.tolist())
    assert tr and va and not tr & va
    assert len(va) == 2 and len(tr) == 4  # round(0.34 * 6) speakers held out
    assert len(splits.train) + len(splits.val) == 36 and len(splits.test) == 12
    assert splits.protocol == "validation"
    assert splits.in_features == 140 and splits.class_names == ["class0", "class1", "class2"]
    assert splits.framing == {"bin_ms": 10.0, "n_channels": 700, "channel_group": 5,
                              "max_frames": None, "dataset": "shd"}


def test_split_is_deterministic_by_seed(shd_root):
    def val_speakers(seed):
        s = load_dataset(_cfg(shd_root), seed=seed, protocol="validation", progress=False)
        return sorted(set(s.val.speakers.tolist()))

    assert val_speakers(0) == val_speakers(0)
    assert len({tuple(val_speakers(s)) for s in range(6)}) > 1


def test_split_without_speakers_is_by_sample():
    tr, va = split_train_val(None, 50, 0.2, seed=3)
    assert len(va) == 10 and len(tr) == 40 and not set(tr) & set(va)
    assert sorted([*tr, *va]) == list(range(50))
    np.testing.assert_array_equal(va, split_train_val(None, 50, 0.2, seed=3)[1])


def test_padding_and_lengths_match_framing_of_each_sample(shd_root):
    rec = read_spike_file(shd_root / "shd_test.h5")
    s = load_dataset(_cfg(shd_root), seed=0, protocol="test-selected", progress=False)
    test = s.test
    assert test.frames.shape[0] == len(rec) and test.frames.shape[2] == 140
    for i in range(len(rec)):
        want = frame_events(rec.times[i], rec.units[i])
        n = int(test.lengths[i])
        assert n == len(want)
        np.testing.assert_array_equal(test.frames[i, :n].float().numpy(), want)
        assert test.frames[i, n:].abs().sum() == 0
    assert test.frames.shape[1] == int(test.lengths.max())
    assert test.frames.dtype == torch.uint8  # spike counts stored compactly
    np.testing.assert_array_equal(test.labels.numpy(), rec.labels)


def test_test_selected_protocol(shd_root):
    s = load_dataset(_cfg(shd_root), seed=0, protocol="test-selected", progress=False)
    assert s.protocol == "test-selected"
    assert len(s.train) == 36  # the whole training file
    assert s.val is s.test


def test_batches_trim_pad_and_cover_everything(shd_root):
    s = load_dataset(_cfg(shd_root), seed=0, protocol="test-selected", progress=False)
    fs = s.train
    g = torch.Generator().manual_seed(0)
    seen = []
    for b in fs.batches(5, shuffle=True, generator=g):
        assert b.x.dtype == torch.float32 and b.x.shape[0] == b.lengths.shape[0]
        assert b.x.shape[1] == int(b.lengths.max())
        for row, n in zip(b.x, b.lengths, strict=True):
            assert row[n:].abs().sum() == 0
        seen.append(b.labels)
    assert sum(len(x) for x in seen) == 36
    order1 = [b.labels.tolist() for b in fs.batches(5, shuffle=True,
                                                     generator=torch.Generator().manual_seed(1))]
    order1b = [b.labels.tolist() for b in fs.batches(5, shuffle=True,
                                                      generator=torch.Generator().manual_seed(1))]
    assert order1 == order1b
    sizes = [len(b.labels) for b in fs.batches(5, shuffle=False, drop_last=True)]
    assert sizes == [5] * 7
    first = next(fs.batches(3, shuffle=False))
    np.testing.assert_array_equal(first.labels.numpy(), fs.labels[:3].numpy())
    one = next(fs.batches(1, shuffle=False))  # batch size 1 keeps its batch dimension
    assert one.x.shape == (1, int(fs.lengths[0]), 140)


def test_subset_and_to():
    frames = torch.zeros(3, 4, 2, dtype=torch.uint8)
    frames[0, :1] = 1
    frames[2, :4] = 2
    fs = FramedSet(frames, torch.tensor([1, 2, 4]), torch.tensor([0, 1, 2]), None)
    sub = fs.subset(torch.tensor([0, 1]))
    assert sub.frames.shape == (2, 2, 2) and sub.labels.tolist() == [0, 1]
    assert len(fs.to("cpu")) == 3 and fs.to("cpu").speakers is None


def test_pad_packed_against_loop():
    rng = np.random.default_rng(0)
    lengths = np.array([3, 1, 5, 2])
    packed = rng.integers(0, 9, (lengths.sum(), 4))
    out = pad_packed(packed, lengths)
    row = 0
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(out[i, :n], packed[row : row + n])
        assert not out[i, n:].any()
        row += n


def test_ssc_uses_its_valid_file(tmp_path, make_spike_set, write_set):
    root = tmp_path / "SSC"
    for i, split in enumerate(("train", "valid", "test")):
        write_set(root / f"ssc_{split}.h5", make_spike_set(6 + 3 * i, seed=i))
    s = load_dataset(_cfg(tmp_path, dataset="ssc"), seed=0, protocol="validation",
                     progress=False)
    assert (len(s.train), len(s.val), len(s.test)) == (6, 9, 12)


def test_gzip_release_and_cache_switch(tmp_path, make_spike_set, write_set):
    write_set(tmp_path / "shd_train.h5.gz", make_spike_set(12, seed=4))
    write_set(tmp_path / "shd_test.h5.gz", make_spike_set(6, seed=5))
    cfg = _cfg(tmp_path, dataset="synthdigits", cache=False, max_frames=7)
    s = load_dataset(cfg, seed=0, protocol="validation", progress=False)
    assert s.train.frames.shape[1] <= 7 and int(s.test.lengths.max()) <= 7
    assert not any(Path(os.environ["SPIKEDELAY_CACHE"]).iterdir())


def test_errors(tmp_path, shd_root):
    with pytest.raises(DataError, match="pass --data DIR"):
        load_dataset(DataConfig(dataset="shd"), seed=0, protocol="validation")
    with pytest.raises(DataError, match="shd_train.h5"):
        load_dataset(_cfg(tmp_path), seed=0, protocol="validation")
    with pytest.raises(DataError, match="unknown protocol"):
        load_dataset(_cfg(shd_root), seed=0, protocol="best")


def test_default_synthdigits_root_message_or_release():
    try:
        root = default_synthdigits_root()
    except DataError as err:
        assert "spikedelay data synth --out DIR" in str(err) and "--data DIR" in str(err)
    else:
        assert any(root.glob("shd_train.h5*"))


def test_shared_benchmark_set_loads(shared_path):
    root = shared_path("data/synthdigits-900")
    s = load_dataset(_cfg(root, dataset="synthdigits"), seed=0, protocol="validation",
                     progress=False)
    assert len(s.train) + len(s.val) == 900 and len(s.test) == 300
    assert not set(s.train.speakers.tolist()) & set(s.val.speakers.tolist())
    assert len(s.class_names) == 20
