"""tonic 1.7 reads files our writer makes (REFERENCE §6), offline (~1 s).

CI installs tonic without its heavy dependencies:
``pip install --no-deps tonic==1.7.0 importRosbag==1.0.4 requests urllib3 idna certifi
charset-normalizer``.
"""

from __future__ import annotations

import numpy as np
import pytest

tonic = pytest.importorskip("tonic")
datasets = pytest.importorskip("tonic.datasets")


def test_tonic_shd_reads_our_files(tmp_path, make_spike_set, write_set):
    folder = tmp_path / "SHD"
    train, test = make_spike_set(10, seed=1), make_spike_set(4, seed=2)
    write_set(folder / "shd_train.h5", train)
    write_set(folder / "shd_test.h5", test)
    # tonic only checks that the archive exists next to the .h5: empty placeholders, no download.
    (folder / "shd_train.h5.zip").touch()
    (folder / "shd_test.h5.zip").touch()

    ds = datasets.SHD(save_to=str(tmp_path), train=True)
    assert len(ds) == 10
    assert [k.decode() for k in ds.classes] == train.keys
    np.testing.assert_array_equal(ds.speaker, train.speakers)
    for i in (0, 7):
        events, target = ds[i]
        assert target == train.labels[i]
        np.testing.assert_array_equal(events["x"], train.units[i])
        # tonic converts seconds to integer microseconds (truncating).
        np.testing.assert_array_equal(events["t"], (train.times[i] * 1e6).astype(int))
    assert len(datasets.SHD(save_to=str(tmp_path), train=False)) == 4
