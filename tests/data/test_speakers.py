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
