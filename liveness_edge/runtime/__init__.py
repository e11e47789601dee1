"""Inference runtimes: one plugin module per delegate behind ``base.Backend``.

``choose_backend("auto")`` tries the accelerators (EdgeTPU, then GPU) and falls back to the CPU, logging why each was
skipped; an explicitly requested accelerator that cannot load is a StartupError naming the library it looked for.
"""

from __future__ import annotations

import logging

from ..errors import StartupError
from .base import Backend, Model
from .cpu import CpuBackend
from .edgetpu import EdgeTpuBackend
from .gpu import GpuBackend

log = logging.getLogger(__name__)

BACKENDS: dict[str, type[Backend]] = {b.key: b for b in (CpuBackend, EdgeTpuBackend, GpuBackend)}
AUTO_ORDER = ("edgetpu", "gpu", "cpu")


def choose_backend(delegate: str, threads: int) -> Backend:
    if delegate != "auto":
        backend = BACKENDS[delegate](threads)
        backend.probe()
        return backend
    for key in AUTO_ORDER:
        backend = BACKENDS[key](threads)
        try:
            backend.probe()
        except StartupError as exc:
            log.info("runtime.delegate auto: skipping %s: %s", key, exc)
            continue
        return backend
    raise StartupError("runtime.delegate auto: no runtime could be loaded")


__all__ = ["Backend", "Model", "BACKENDS", "choose_backend"]
