"""Atomic file writes: a crash at any moment leaves the old file or the new one, never half.

Why one module: checkpoints, the preprocessing cache, data files and exports all promise that
nothing the user already has is lost; they share this one implementation of the promise
(temporary file in the same folder → fsync → rename → fsync of the folder).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Test-only: seconds to sleep between the fsync and the rename, so a test can kill a process
# inside a write (see tests/train/test_resume.py).
WRITE_PAUSE_ENV = "SPIKEDELAY_TEST_WRITE_PAUSE_S"


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` to fill a temporary file, then move it onto ``path`` durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        pause = float(os.environ.get(WRITE_PAUSE_ENV, "0") or 0)
        if pause > 0:
            time.sleep(pause)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some filesystems refuse fsync on a folder; the data itself is synced
        pass
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def remove_stale_temporaries(folder: str | os.PathLike, names: list[str]) -> list[Path]:
    """Delete temporaries that a killed :func:`atomic_write` left for ``names``; return them.

    Only files named like our own temporaries (``.NAME.*.tmp``) are touched.
    """
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
