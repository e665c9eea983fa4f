"""Disk cache of preprocessed (framed) arrays, keyed by source *content* and parameters.

Why content and not a path or an index (the ``DiskCachedDataset`` trap, STYLE §3): a
re-downloaded or regenerated file, or a changed bin size, must never be served stale frames.

Layout under ``$SPIKEDELAY_CACHE`` (default ``~/.cache/spikedelay``), per entry:

- ``KEY.npz``  the arrays, written with ``np.savez`` and read with ``allow_pickle=False``
  (loading runs no code);
- ``KEY.json`` format version, key, the sha256 and size of ``KEY.npz``, and readable
  provenance (source, parameters). It is written last, so it marks a complete entry.

``KEY = sha256(format version, source digest, parameters)``. Both files are written to a temp
file, fsynced and renamed. On load, a missing marker, a version or key mismatch, a checksum
mismatch or an unreadable payload is reported with a :class:`CacheWarning`, the entry is
deleted and the caller rebuilds it: a bad entry is never used silently.

A read-only cache (``writable=False``, for callers that promised to write nothing, such as
``spikedelay.train(out=None)``) serves the entries it has, and neither stores nor deletes any.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spikedelay.atomic import atomic_write_bytes

FORMAT_VERSION = 1


class CacheWarning(UserWarning):
    """A cache entry was corrupt, truncated or stale and has been deleted (it will be rebuilt)."""


def cache_dir() -> Path:
    """``$SPIKEDELAY_CACHE`` if set, else ``~/.cache/spikedelay``."""
    env = os.environ.get("SPIKEDELAY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spikedelay"


def file_digest(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(source_digest: str, params: dict[str, Any]) -> str:
    """sha256 over the format version, the source digest and the (JSON-able) parameters."""
    blob = json.dumps(
        {"format_version": FORMAT_VERSION, "source": source_digest, "params": params},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class FrameCache:
    """Arrays stored by key in one folder; see the module docstring for the format."""

    def __init__(self, root: str | os.PathLike | None = None, *, writable: bool = True) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.writable = writable

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.npz", self.root / f"{key}.json"

    def _discard(self, key: str, why: str) -> None:
        payload, marker = self.paths(key)
        if not self.writable:
            warnings.warn(f"spikedelay cache entry {payload} is {why}; not used (the cache is "
                          "read-only here)", CacheWarning, stacklevel=3)
            return
        warnings.warn(
            f"spikedelay cache entry {payload} is {why}; deleted, rebuilding it",
            CacheWarning,
            stacklevel=3,
        )
        for p in (marker, payload):  # marker first: a half-deleted entry reads as a miss
            p.unlink(missing_ok=True)

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None on a miss or after discarding a bad entry."""
        payload, marker = self.paths(key)
        if not payload.exists() and not marker.exists():
            return None
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError) as err:
            self._discard(key, f"incomplete (unreadable marker: {err.__class__.__name__})")
            return None
        if meta.get("format_version") != FORMAT_VERSION or meta.get("key") != key:
            self._discard(key, "stale (other format version or key)")
            return None
        try:
            data = payload.read_bytes()
        except OSError:
            self._discard(key, "missing its payload")
            return None
        if len(data) != meta.get("size") or hashlib.sha256(data).hexdigest() != meta.get(
            "sha256"
        ):
            self._discard(key, "corrupt or truncated (checksum mismatch)")
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as err:
            self._discard(key, f"unreadable ({err})")
            return None

    def save(self, key: str, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        """Store ``arrays`` (no object arrays) and the provenance ``info``, atomically."""
        objects = [name for name, a in arrays.items() if np.asarray(a).dtype.hasobject]
        if objects:  # they would need pickle to load back
            raise ValueError(f"cannot cache object arrays: {', '.join(objects)}")
        self.root.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        payload, marker = self.paths(key)
        atomic_write_bytes(payload, data)
        meta = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "info": info,
        }
        atomic_write_bytes(marker, json.dumps(meta, indent=1, default=str).encode())

    def load_or_build(
        self,
        source_digest: str,
        params: dict[str, Any],
        build: Callable[[], dict[str, np.ndarray]],
        *,
        info: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], bool]:
        """Return ``(arrays, hit)``: the cached arrays, or ``build()`` stored for next time."""
        key = cache_key(source_digest, params)
        cached = self.load(key)
        if cached is not None:
            return cached, True
        arrays = build()
        if not self.writable:
            return arrays, False
        try:
            self.save(key, arrays, {"params": params, **(info or {})})
        except OSError as err:  # a read-only or full disk must not stop training
            warnings.warn(f"could not write cache entry in {self.root}: {err}", CacheWarning,
                          stacklevel=2)
        return arrays, False
