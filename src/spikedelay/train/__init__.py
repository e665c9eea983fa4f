"""Training: one epoch (``loop``), a whole run (``run``), its folder, checkpoints, DDP, studies.

``spikedelay.train`` is also the function :func:`spikedelay.api.train`: ``spikedelay.train(cfg,
out=...)`` works although this package has the same name. Why this way: Python binds a package
to its parent's attribute when it is imported, so a plain function ``spikedelay.train`` would be
replaced by this package on first use; a callable package keeps both ``spikedelay.train(...)``
and ``spikedelay.train.run`` working.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

from spikedelay.api import train as _train


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _train(*args, **kwargs)


__signature__ = inspect.signature(_train)
sys.modules[__name__].__class__ = _CallablePackage
