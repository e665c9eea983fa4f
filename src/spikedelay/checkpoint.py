"""The checkpoint format: crash-safe files that load without executing code.

Why here and not in ``train/``: training writes checkpoints, but evaluation, streaming, export
and the report read them, and ``deploy/`` must not depend on ``train/``. This module is the
format (:func:`save_checkpoint`, :func:`load_checkpoint`) and how a checkpoint's config and
model are rebuilt (:func:`checkpoint_config`, :func:`model_from_checkpoint`); what a training
checkpoint holds besides the model lives in :mod:`spikedelay.train.checkpoint`.

One file per checkpoint, ``*.safetensors``: every tensor (model, optimizer moments, RNG states)
is a safetensors tensor; everything else (config, epoch, metrics, scheduler state, optimizer
hyperparameters) is JSON in the safetensors header. Nothing is unpickled on load, so a checkpoint
someone sent cannot run code. Writes go to a temporary file in the same folder, are fsync'ed and
then renamed over the target, so a kill at any moment leaves either the old or the new file.
The header also holds a SHA-256 of the JSON state and every tensor's bytes, so a file damaged
after it was written (a flipped bit, a bad copy) is refused with a clear error instead of
loading wrong numbers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from spikedelay.atomic import atomic_write_bytes
from spikedelay.config import RunConfig, build_config
from spikedelay.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from spikedelay.model import DelaySNN

FORMAT = "spikedelay-checkpoint/1"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested structure; return a JSON-able skeleton with references."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {
            "__dict__": [
                [_flatten(k, f"{prefix}.k{i}", tensors), _flatten(v, f"{prefix}.{i}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _digest(state_json: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(state_json.encode())
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"\0{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write a nested dict of tensors and JSON-able values (see module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.dumps(_flatten(state, "s", tensors))
    header = {"format": FORMAT, "state": skeleton, "sha256": _digest(skeleton, tensors)}
    atomic_write_bytes(Path(path), st_save(tensors, metadata=header))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; any damage is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # safetensors raises several types for damaged files
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt): {err}"
        ) from None
    if meta.get("format") != FORMAT:
        found = meta.get("format")
        raise CheckpointError(f"{path}: not a spikedelay checkpoint (format {found!r})")
    if "state" not in meta or "sha256" not in meta:
        raise CheckpointError(f"{path}: checkpoint header is damaged (missing fields)")
    if _digest(meta["state"], tensors) != meta["sha256"]:
        raise CheckpointError(
            f"{path}: checkpoint is corrupt (its content does not match the SHA-256 recorded "
            "when it was written)"
        )
    try:
        return _unflatten(json.loads(meta["state"]), tensors)
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: checkpoint header is damaged: {err}") from None


def checkpoint_config(state: dict[str, Any], path: Path, *, data_root: str | None = None,
                      check_data: bool = True) -> RunConfig:
    """The :class:`RunConfig` a checkpoint was trained with.

    ``data_root`` replaces the saved data folder (the data moved). ``check_data=False``
    validates everything but the data folder, which may be gone, and keeps the saved one: what
    rebuilding the model alone needs.
    """
    try:
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in state["config"].items()}
        data = raw.setdefault("data", {})
        if data_root is not None:
            data["root"] = data_root
        saved_root = data.get("root")
        if not check_data:
            data["root"] = None
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: checkpoint has no usable config ({err!r})") from None
    try:
        cfg = build_config(raw)
    except ConfigError as err:
        hint = "\n(if the data moved, pass --data DIR)" if check_data else ""
        raise ConfigError(f"config stored in {path}: {err}{hint}") from None
    if not check_data:
        cfg.data.root = saved_root
    return cfg


def model_from_checkpoint(state: dict[str, Any], path: Path, cfg: RunConfig,
                          device: torch.device | str = "cpu") -> DelaySNN:
    """The :class:`~spikedelay.model.DelaySNN` of ``cfg`` with the checkpoint's weights, in
    eval mode; weights that do not fit the config are a :class:`CheckpointError`."""
    from spikedelay.model import DelaySNN

    model = DelaySNN(cfg.model).to(device)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, TypeError, AttributeError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"{path}: weights do not fit the model of its own config: "
                              f"{type(err).__name__}: {first}") from None
    return model.eval()
