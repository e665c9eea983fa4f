"""Data layer: SHD/SSC-layout HDF5, GSC WAV folders, fixed-grid framing, cache, loaders.

Shapes follow (batch, time, features) everywhere.
"""

from __future__ import annotations

from spikedelay.data.cache import CacheWarning, FrameCache, cache_dir
from spikedelay.data.framing import Framing, frame_events
from spikedelay.data.hdf5 import SpikeRecords, find_split_files, read_spike_file, write_spike_file
from spikedelay.data.loaders import default_synthdigits_root, load_dataset
from spikedelay.data.sets import Batch, DataSplits, FramedSet

__all__ = [
    "Batch",
    "CacheWarning",
    "DataSplits",
    "FrameCache",
    "FramedSet",
    "Framing",
    "SpikeRecords",
    "cache_dir",
    "default_synthdigits_root",
    "find_split_files",
    "frame_events",
    "load_dataset",
    "read_spike_file",
    "write_spike_file",
]
