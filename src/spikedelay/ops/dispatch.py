"""The one place that chooses which implementation of a kernel runs.

Every op of :mod:`spikedelay.ops` (``"lif"``, ``"batchnorm"``, ``"gaussian"``, ``"delay_conv"``,
``"channel_delay"``, and whatever the model issues add) has up to three backends, each a module
that exposes the op's functions under the same names:

* ``numba`` — CPU, float32/float64: the fast default on CPU;
* ``triton`` — CUDA, float32/float64: the fast default on GPUs. On CPU tensors it runs only in
  Triton's interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is imported), which is how CI
  tests the GPU kernels without a GPU;
* ``torch`` — any device and dtype: the plain formulation in torch ops, the reference the other
  two are tested against (and the fallback for what they do not cover).

The choice follows the tensor's device (CPU → numba, CUDA → triton, anything else → torch;
``torch`` where the preferred one does not take the dtype or is not installed). The environment
variable ``SPIKEDELAY_KERNELS=auto|numba|triton|torch`` forces one backend for every op; an op
that has no kernel of the forced backend uses its ``torch`` implementation, and a forced backend
that cannot run on the tensor's device (numba on CUDA, triton on CPU outside the interpreter) is
a :class:`KernelBackendError` — never a silent fallback. Read on every call (a dict lookup and an
environment read, ~1 µs, next to kernels of milliseconds), so tests can switch it per test.

Why a registry and not ``torch.library.custom_op``: the backward of each op is already written
by hand (closed forms, recomputation), and the backends need host-side preparation (numpy views
for numba, grids for Triton); a module per backend with the same function names keeps each
kernel next to its launcher and makes adding a backend one line (see :func:`register`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType

import torch
from torch import Tensor

ENV_VAR = "SPIKEDELAY_KERNELS"
BACKENDS = ("numba", "triton", "torch")
_CHOICES = ("auto", *BACKENDS)
_FAST_DTYPES = (torch.float32, torch.float64)
# The backend each device type prefers; ``torch`` is always the last resort.
_PREFERRED = {"cpu": "numba", "cuda": "triton"}


class KernelBackendError(RuntimeError):
    """A forced backend that is unknown, not installed, or cannot run on the tensor's device."""


@dataclass
class _Backend:
    """One op's implementation in one backend: a module imported on first use."""

    module_name: str
    dtypes: tuple[torch.dtype, ...] | None  # None: any dtype
    _module: ModuleType | None = field(default=None, repr=False)

    def load(self) -> ModuleType:
        if self._module is None:
            self._module = importlib.import_module(self.module_name)
        return self._module


_OPS: dict[str, dict[str, _Backend]] = {}


def register(op: str, backend: str, module_name: str,
             dtypes: tuple[torch.dtype, ...] | None = _FAST_DTYPES) -> None:
    """Make ``module_name`` the ``backend`` implementation of ``op``.

    The module is imported when the op first runs with that backend (so numba and triton are
    imported only when used) and must expose the op's functions under the names every other
    backend of the op uses. ``dtypes``: what it accepts (``None`` = any); a ``torch``
    implementation must exist for every op and accept any dtype.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    _OPS.setdefault(op, {})[backend] = _Backend(module_name, dtypes)


def forced_backend() -> str | None:
    """The backend ``SPIKEDELAY_KERNELS`` forces, or ``None`` for ``auto`` (unset)."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in _CHOICES:
        raise KernelBackendError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a kernel backend; use one of "
            f"{', '.join(_CHOICES)}"
        )
    return None if value == "auto" else value


def triton_interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter in this process.

    Triton decorates its own library at import, so the environment variable only counts if it
    was set before ``triton`` was imported.
    """
    if "triton" in sys.modules:
        from triton import knobs

        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _runs_on(backend: str, device_type: str) -> bool:
    if backend == "numba":
        return device_type == "cpu"
    if backend == "triton":
        return device_type == "cuda" or (device_type == "cpu" and triton_interpreting())
    return True


@cache
def _installed(backend: str) -> bool:
    if backend == "torch":
        return True
    return importlib.util.find_spec(backend) is not None


def backend_name(op: str, like: Tensor) -> str:
    """The backend :func:`select` picks for ``op`` on tensors like ``like``."""
    table = _OPS[op]
    device_type, dtype = like.device.type, like.dtype
    forced = forced_backend()
    if forced is None:
        preferred = _PREFERRED.get(device_type)
        impl = table.get(preferred) if preferred else None
        if (impl is not None and (impl.dtypes is None or dtype in impl.dtypes)
                and _runs_on(preferred, device_type) and _installed(preferred)):
            return preferred
        return "torch"
    if not _runs_on(forced, device_type):
        hint = (" (on CPU, Triton runs only in its interpreter: set TRITON_INTERPRET=1 before "
                "Python starts)" if forced == "triton" and device_type == "cpu" else "")
        raise KernelBackendError(
            f"{ENV_VAR}={forced} cannot run on {device_type} tensors{hint}; use auto or torch"
        )
    if not _installed(forced):
        raise KernelBackendError(f"{ENV_VAR}={forced} but {forced} is not installed")
    if forced not in table:
        return "torch"  # documented: an op without a kernel of that backend runs its reference
    impl = table[forced]
    if impl.dtypes is not None and dtype not in impl.dtypes:
        raise KernelBackendError(
            f"{ENV_VAR}={forced}: the {forced} kernels of {op!r} take "
            f"{', '.join(str(d).removeprefix('torch.') for d in impl.dtypes)}, not "
            f"{str(dtype).removeprefix('torch.')}"
        )
    return forced


def select(op: str, like: Tensor) -> ModuleType:
    """The implementation module of ``op`` for tensors like ``like`` (device, dtype)."""
    return _OPS[op][backend_name(op, like)].load()


def host_reads_are_free(like: Tensor) -> bool:
    """Whether reading a value of ``like`` in Python costs no device synchronisation.

    Layer code asks this (not the device) before a data-dependent shortcut such as skipping a
    multiply when a mask is all true: free on host memory, a stall of the GPU's queue elsewhere.
    """
    return like.device.type == "cpu"


# -- the registry: one line per op and backend ----------------------------------------------------
register("lif", "numba", "spikedelay.ops._lif_numba")
register("lif", "triton", "spikedelay.ops._lif_triton")
register("lif", "torch", "spikedelay.ops._lif_torch", dtypes=None)
register("batchnorm", "numba", "spikedelay.ops._batchnorm_numba")
register("batchnorm", "triton", "spikedelay.ops._batchnorm_triton")
register("batchnorm", "torch", "spikedelay.ops._batchnorm_torch", dtypes=None)
register("gaussian", "numba", "spikedelay.ops._gaussian_numba")
register("gaussian", "triton", "spikedelay.ops._gaussian_triton")
register("gaussian", "torch", "spikedelay.ops._gaussian_torch", dtypes=None)
register("delay_conv", "numba", "spikedelay.ops._delay_conv_numba")
register("delay_conv", "torch", "spikedelay.ops._delay_conv_torch", dtypes=None)
register("channel_delay", "numba", "spikedelay.ops._channel_delay_numba")
register("channel_delay", "triton", "spikedelay.ops._channel_delay_triton")
register("channel_delay", "torch", "spikedelay.ops._channel_delay_torch", dtypes=None)
register("recurrent", "numba", "spikedelay.ops._recurrent_numba")
register("recurrent", "triton", "spikedelay.ops._recurrent_triton")
register("recurrent", "torch", "spikedelay.ops._recurrent_torch", dtypes=None)

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "KernelBackendError",
    "backend_name",
    "forced_backend",
    "host_reads_are_free",
    "register",
    "select",
    "triton_interpreting",
]
