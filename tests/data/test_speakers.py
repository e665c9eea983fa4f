"""Speaker metadata (extra/voice or summary.json) and the accent-stratified validation split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikedelay.config import DataConfig
from spikedelay.data.loaders import load_dataset
from spikedelay.data.speakers import speaker_strata, speaker_table, stratified_val_speakers
from spikedelay.errors import DataError

ACCENTS = ["en-us", "en-gb", "en-029", "en-gb-scotland"]


def test_each_stratum_gets_the_floor_or_ceiling_of_its_share():
    sizes = {"a": 12, "b": 6, "c": 3, "d": 9}  # 30 speakers
    strata, sid = {}, 0
    for name, n in sizes.items():
        for _ in range(n):
            strata[sid] = name
            sid += 1
    ids = np.arange(sid)
    seen = set()
    for seed in range(40):
        for n_val in (1, 5, 9, 29):
            val = stratified_val_speakers(ids, strata, n_val, seed=seed)
            assert len(val) == n_val == len(set(val.tolist()))
            got = Counter(strata[int(s)] for s in val)
            for name, n in sizes.items():
                share = n_val * n / sid
                assert np.floor(share) <= got[name] <= np.ceil(share), (seed, n_val, got)
            if n_val == 5:
                seen.add(tuple(val.tolist()))
        assert np.array_equal(stratified_val_speakers(ids, strata, 5, seed=seed),
                              stratified_val_speakers(ids, strata, 5, seed=seed))
    assert len(seen) > 30  # seeds give different splits


def _write_voices(path: Path, speakers: np.ndarray) -> None:
    voices = [f"{ACCENTS[s % 4] if i % 2 == 0 else 'de'}+v{s}" for i, s in enumerate(speakers)]
    with h5py.File(path, "a") as f:
        f.create_dataset("extra/voice", data=np.array(voices, dtype="S"))


def test_speaker_table_reads_extra_voice_and_prefers_the_english_voice(shd_root: Path):
    path = shd_root / "shd_train.h5"
    with h5py.File(path, "r") as f:
        speakers = f["extra/speaker"][()]
    _write_voices(path, speakers)
    table = speaker_table(path)
    assert set(table) == set(speakers.tolist())
    for s, meta in table.items():
        assert meta == {"accent": ACCENTS[s % 4], "variant": f"v{s}"}


def test_speaker_table_from_summary_json_and_a_clear_error_without(shd_root: Path):
    path = shd_root / "shd_train.h5"
    with pytest.raises(DataError, match="no speaker metadata.*val_split = speakers"):
        speaker_table(path)
    rows = [{"id": s, "accent": ACCENTS[s % 4], "variant": "m1", "pitch": 40 + s, "wpm": 170}
            for s in range(8)]
    (shd_root / "summary.json").write_text(json.dumps({"speaker_table": rows}))
    assert speaker_table(path)[3] == {"accent": ACCENTS[3], "variant": "m1", "pitch": 43,
                                      "wpm": 170}
    assert speaker_strata(path)[5] == ACCENTS[1]


def test_stratified_split_through_the_loader(tmp_path: Path, make_spike_set, write_set):
    root = tmp_path / "d"
    root.mkdir()
    write_set(root / "shd_train.h5", make_spike_set(80, n_speakers=16, seed=1))
    write_set(root / "shd_test.h5", make_spike_set(8, n_speakers=2, seed=2, speaker_offset=16))
    rows = [{"id": s, "accent": ACCENTS[s % 4], "variant": "x"} for s in range(18)]
    (root / "summary.json").write_text(json.dumps({"speaker_table": rows}))
    for seed in range(6):
        cfg = DataConfig(dataset="shd", root=str(root), val_fraction=0.25, val_split="stratified")
        splits = load_dataset(cfg, seed=seed, protocol="validation", progress=False)
        val_speakers = set(splits.val.speakers.tolist())
        assert len(val_speakers) == 4
        assert {ACCENTS[s % 4] for s in val_speakers} == set(ACCENTS)  # one per accent
        assert not val_speakers & set(splits.train.speakers.tolist())
    plain = load_dataset(DataConfig(dataset="shd", root=str(root), val_fraction=0.25), seed=0,
                         protocol="validation", progress=False)
    assert len(set(plain.val.speakers.tolist())) == 4


def test_histogram_features_equal_a_loop():
    import torch

    from spikedelay.data.speakers import histogram_features

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 4, (3, 17, 70), generator=g).to(torch.uint8)
    lengths = torch.tensor([17, 9, 3])
    frames[1, 9:] = 0
    frames[2, 3:] = 0
    got = histogram_features(frames, lengths, t_bins=4, groups=35)
    for n in range(3):
        ref = np.zeros((4, 35))
        for t in range(int(lengths[n])):
            b = t * 4 // int(lengths[n])
            for c in range(70):
                ref[b, c // 2] += float(frames[n, t, c])
        assert np.allclose(got[n], (ref / ref.sum()).reshape(-1))


def test_difficulty_ranks_noisy_speakers_below_clean_ones_and_strata_spread_them():
    import torch

    from spikedelay.data.speakers import difficulty_strata, speaker_difficulty

    g = torch.Generator().manual_seed(1)
    n_spk, per, c = 12, 12, 35
    labels = torch.arange(n_spk * per) % 3
    speakers = torch.arange(n_spk * per) // per
    frames = torch.randint(0, 2, (n_spk * per, 8, c), generator=g).float()
    clean = speakers < 8  # speakers 8-11: no class signal at all
    for k in range(3):
        rows = clean & (labels == k)
        frames[rows, :, k * 10:(k + 1) * 10] += 3
    d = speaker_difficulty(frames, torch.full((len(labels),), 8), labels, speakers)
    assert min(d[s] for s in range(8)) > max(d[s] for s in range(8, 12))
    strata = difficulty_strata(d)
    assert Counter(strata.values()) == {"q0": 4, "q1": 4, "q2": 4}
    assert {strata[s] for s in range(8, 12)} == {"q0"}
    val = stratified_val_speakers(np.arange(12), strata, 3, seed=0)
    assert sorted(strata[int(s)] for s in val) == ["q0", "q1", "q2"]


def test_difficulty_split_through_the_loader(tmp_path: Path, write_timing_task):
    from spikedelay.data.speakers import difficulty_strata, speaker_difficulty

    root = tmp_path / "t"
    root.mkdir()
    write_timing_task(root / "shd_train.h5", 2, range(9), seed=0, noise=300)
    write_timing_task(root / "shd_test.h5", 1, range(9, 11), seed=1)
    cfg = DataConfig(dataset="shd", root=str(root), val_fraction=0.34, val_split="difficulty",
                     bin_ms=20.0, channel_group=50)
    whole = load_dataset(cfg, seed=0, protocol="test-selected", progress=False).train
    strata = difficulty_strata(speaker_difficulty(whole.frames, whole.lengths, whole.labels,
                                                  whole.speakers))
    assert len(set(strata.values())) == 3
    for seed in range(4):
        a = load_dataset(cfg, seed=seed, protocol="validation", progress=False)
        val = set(a.val.speakers.tolist())
        assert len(val) == 3 and not val & set(a.train.speakers.tolist())
        assert {strata[s] for s in val} == {"q0", "q1", "q2"}  # one speaker per tercile
