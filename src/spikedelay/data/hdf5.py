"""Read, validate and write spike files in the SHD/SSC HDF5 layout.

Layout (Cramer et al. 2020; REFERENCE §4), one entry per sample:

- ``spikes/times``  variable-length float arrays, spike times in seconds
- ``spikes/units``  variable-length unsigned int arrays, cochlea channel ids ``0 .. 699``
- ``labels``        class index per sample
- ``extra/speaker`` speaker id per sample (optional for the reader)
- ``extra/keys``    class names as byte strings (optional for the reader)

A path ending in ``.h5.gz`` is a whole-file gzip of the same HDF5 file: HDF5 filters do not
compress variable-length heaps, so gzip is how small releases ship. The reader decompresses it
in memory (h5py opens a ``BytesIO``).

Every problem is a :class:`~spikedelay.errors.DataError` whose message names the file and what
is wrong with it, so a bad download fails at load time, not 3 epochs into training.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from spikedelay.atomic import atomic_write
from spikedelay.errors import DataError

N_CHANNELS = 700  # SHD/SSC cochlea channels (units 0 .. 699)

# File names per data set and split, in lookup order (plain .h5 before .h5.gz).
SPLIT_FILES: dict[str, dict[str, str]] = {
    "shd": {"train": "shd_train", "test": "shd_test"},
    "synthdigits": {"train": "shd_train", "test": "shd_test"},
    "ssc": {"train": "ssc_train", "valid": "ssc_valid", "test": "ssc_test"},
}
# tonic's layout puts the files in a subfolder named after the data set.
_SUBFOLDER = {"shd": "SHD", "synthdigits": "SHD", "ssc": "SSC"}


@dataclass(frozen=True)
class SpikeRecords:
    """The validated content of one spike file.

    ``times[i]`` (float, seconds) and ``units[i]`` (int64 channel ids) hold sample ``i``'s
    spikes; ``labels`` and ``speakers`` are int64 arrays of length N (``speakers`` is None when
    the file has no ``extra/speaker``); ``class_names`` is empty when the file has no
    ``extra/keys``.
    """

    times: list[np.ndarray]
    units: list[np.ndarray]
    labels: np.ndarray
    speakers: np.ndarray | None
    class_names: list[str]
    path: Path
    n_channels: int = N_CHANNELS

    def __len__(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------------------------
# validation (shared by reader and writer)


def validate_records(
    times: Sequence[np.ndarray],
    units: Sequence[np.ndarray],
    labels: np.ndarray,
    speakers: np.ndarray | None,
    n_classes: int | None,
    *,
    where: str,
    n_channels: int = N_CHANNELS,
) -> None:
    """Raise DataError (prefixed with ``where``) for the first inconsistency found."""
    n = len(times)
    if len(units) != n:
        raise DataError(
            f"{where}: spikes/times has {n} samples but spikes/units has {len(units)}"
        )
    if len(labels) != n:
        raise DataError(f"{where}: labels has {len(labels)} entries but there are {n} samples")
    if speakers is not None and len(speakers) != n:
        raise DataError(
            f"{where}: extra/speaker has {len(speakers)} entries but there are {n} samples"
        )
    if n == 0:
        raise DataError(f"{where}: the file holds no samples")
    # Vectorised over the concatenation (SSC has 75k samples); the first bad sample is then
    # located through the offsets so the message can name it.
    t_len = np.array([np.size(t) for t in times], dtype=np.int64)
    u_len = np.array([np.size(u) for u in units], dtype=np.int64)
    bad = np.flatnonzero(t_len != u_len)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{where}: sample {i} has {t_len[i]} spike times but {u_len[i]} unit ids"
        )
    empty = np.flatnonzero(t_len == 0)
    if empty.size:
        raise DataError(f"{where}: sample {int(empty[0])} is empty (zero spikes)")
    all_t = np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1) for t in times])
    all_u = np.concatenate([np.asarray(u).reshape(-1) for u in units]).astype(np.int64)
    ends = np.cumsum(t_len)

    def sample_of(flat_index: int) -> int:
        return int(np.searchsorted(ends, flat_index, side="right"))

    nonfinite = np.flatnonzero(~np.isfinite(all_t))
    if nonfinite.size:
        i = sample_of(int(nonfinite[0]))
        raise DataError(f"{where}: sample {i} has non-finite spike times (NaN or Inf)")
    negative = np.flatnonzero(all_t < 0)
    if negative.size:
        j = int(negative[0])
        raise DataError(
            f"{where}: sample {sample_of(j)} has a negative spike time ({all_t[j]:g} s)"
        )
    out = np.flatnonzero((all_u < 0) | (all_u >= n_channels))
    if out.size:
        j = int(out[0])
        raise DataError(
            f"{where}: sample {sample_of(j)} has unit id {all_u[j]} outside 0..{n_channels - 1}"
        )
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise DataError(f"{where}: negative label {int(labels.min())}")
    if n_classes is not None and n_classes > 0 and labels.max() >= n_classes:
        raise DataError(
            f"{where}: label {int(labels.max())} outside 0..{n_classes - 1} "
            f"(extra/keys lists {n_classes} classes)"
        )


# --------------------------------------------------------------------------------------------
# reading


def _open_bytes(path: Path) -> io.BytesIO | Path:
    """Return something h5py can open: the path itself, or the gunzipped bytes in memory."""
    if not path.name.endswith(".gz"):
        return path
    try:
        with gzip.open(path, "rb") as f:
            return io.BytesIO(f.read())
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip file ({err})") from None


def _dataset(f: h5py.File, key: str, path: Path) -> h5py.Dataset:
    if key not in f:
        group = key.rpartition("/")[0]
        what = f"group '{group}'" if group and group not in f else f"dataset '{key}'"
        raise DataError(f"{path}: missing {what} (not an SHD/SSC-layout file?)")
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: '{key}' is a group, expected a dataset")
    return obj


def _decode(name: object) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def read_spike_file(path: str | os.PathLike, *, n_channels: int = N_CHANNELS) -> SpikeRecords:
    """Read and validate one SHD/SSC-layout file (``.h5`` or ``.h5.gz``).

    Raises DataError naming the file for: a missing file, a file that is not (complete) HDF5,
    a missing group or dataset, sample counts that disagree, per-sample times/units length
    mismatches, unit ids outside ``0..n_channels-1``, negative or non-finite times, samples
    without spikes, and labels outside ``0..len(extra/keys)-1``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    source = _open_bytes(path)
    try:
        f = h5py.File(source, "r")
    except (OSError, OverflowError, ValueError) as err:  # a damaged superblock can overflow
        raise DataError(f"{path}: not a readable HDF5 file, truncated or corrupt ({err})") from None
    try:
        with f:
            times_ds = _dataset(f, "spikes/times", path)
            units_ds = _dataset(f, "spikes/units", path)
            labels_ds = _dataset(f, "labels", path)
            times = [np.asarray(t, dtype=np.float64).reshape(-1) for t in times_ds[()]]
            units = [np.asarray(u, dtype=np.int64).reshape(-1) for u in units_ds[()]]
            labels = np.asarray(labels_ds[()], dtype=np.int64).reshape(-1)
            speakers = None
            if "extra/speaker" in f:
                speakers = np.asarray(f["extra/speaker"][()], dtype=np.int64).reshape(-1)
            class_names: list[str] = []
            if "extra/keys" in f:
                class_names = [_decode(k) for k in np.asarray(f["extra/keys"][()]).reshape(-1)]
    except DataError:
        raise
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, OverflowError) as err:
        # h5py reports a cut-off file lazily, when a dataset's chunks are read.
        raise DataError(f"{path}: truncated or corrupt HDF5 data ({err})") from None
    finally:
        if isinstance(source, io.BytesIO):
            source.close()
    validate_records(
        times, units, labels, speakers, len(class_names) or None,
        where=str(path), n_channels=n_channels,
    )
    return SpikeRecords(
        times=times,
        units=units,
        labels=labels,
        speakers=speakers,
        class_names=class_names,
        path=path,
        n_channels=n_channels,
    )


# --------------------------------------------------------------------------------------------
# writing


def write_spike_file(
    path: str | os.PathLike,
    times: Sequence[np.ndarray],
    units: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    speakers: Sequence[int] | np.ndarray | None,
    keys: Sequence[str],
    *,
    compress: bool = False,
    time_dtype: type | np.dtype = np.float32,
    attrs: dict | None = None,
) -> Path:
    """Write samples in the exact SHD layout with true variable-length arrays, atomically.

    ``times[i]`` are seconds, ``units[i]`` channel ids in ``0..699``. SHD itself stores times as
    float16 (about 1 ms resolution at 1 s); we default to float32 and accept ``time_dtype``.
    A path ending in ``.h5.gz`` (or ``compress=True``, which appends ``.gz``) is gzipped as a
    whole file, with a zero mtime so the bytes are reproducible. ``attrs`` become root
    attributes (e.g. generator, seed). Inputs are validated as the reader would; returns the
    path written.
    """
    path = Path(path)
    if compress and not path.name.endswith(".gz"):
        path = path.with_name(path.name + ".gz")
    times = [np.asarray(t, dtype=np.float64).reshape(-1) for t in times]
    units = [np.asarray(u).reshape(-1) for u in units]
    labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
    speakers_arr = None if speakers is None else np.asarray(speakers, dtype=np.int64).reshape(-1)
    validate_records(
        times, units, labels_arr, speakers_arr, len(keys) or None, where=f"write {path}"
    )

    def write_h5(target) -> None:
        tdt = h5py.vlen_dtype(np.dtype(time_dtype))
        udt = h5py.vlen_dtype(np.dtype(np.uint16))
        with h5py.File(target, "w") as f:
            spikes = f.create_group("spikes")
            t_ds = spikes.create_dataset("times", shape=(len(times),), dtype=tdt)
            u_ds = spikes.create_dataset("units", shape=(len(units),), dtype=udt)
            for i, (t, u) in enumerate(zip(times, units, strict=True)):
                t_ds[i] = t.astype(time_dtype)
                u_ds[i] = u.astype(np.uint16)
            f.create_dataset("labels", data=labels_arr.astype(np.uint16))
            extra = f.create_group("extra")
            if speakers_arr is not None:
                extra.create_dataset("speaker", data=speakers_arr.astype(np.uint16))
            extra.create_dataset("keys", data=np.array([k.encode("utf-8") for k in keys]))
            for name, value in (attrs or {}).items():
                f.attrs[name] = value

    if path.name.endswith(".gz"):
        def write_gz(tmp: Path) -> None:
            buf = io.BytesIO()
            write_h5(buf)
            with open(tmp, "wb") as raw, gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
            ) as gz:
                gz.write(buf.getvalue())

        atomic_write(path, write_gz)
    else:
        atomic_write(path, write_h5)
    return path


# --------------------------------------------------------------------------------------------
# locating files


def find_split_files(root: str | os.PathLike, dataset: str) -> dict[str, Path]:
    """Find the split files of ``dataset`` (shd, ssc, synthdigits) under ``root``.

    Looks in ``root`` and in tonic's ``root/SHD`` / ``root/SSC``, for ``NAME.h5`` then
    ``NAME.h5.gz``. Returns ``{"train": ..., "test": ...}`` (plus ``"valid"`` for SSC).
    """
    if dataset not in SPLIT_FILES:
        raise DataError(
            f"unknown spike data set '{dataset}': expected one of {', '.join(SPLIT_FILES)}"
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    folders = [root, root / _SUBFOLDER[dataset]]
    found: dict[str, Path] = {}
    looked: list[str] = []
    for split, stem in SPLIT_FILES[dataset].items():
        names = [f"{stem}.h5", f"{stem}.h5.gz"]
        for folder in folders:
            hit = next((folder / n for n in names if (folder / n).is_file()), None)
            if hit is not None:
                found[split] = hit
                break
        else:
            looked.append(" or ".join(str(folder / n) for folder in folders for n in names))
    if looked:
        raise DataError(
            f"{root}: {dataset} files missing; looked for:\n  " + "\n  ".join(looked)
        )
    return found
