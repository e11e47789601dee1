"""Which TFLite interpreter package this box has: LiteRT (``ai_edge_litert``) first, ``tflite_runtime`` as a fallback.

Debian/ARM boxes often have only ``tflite_runtime`` (e.g. from the Coral apt repository). ``LIVENESS_EDGE_INTERPRETER``
(``litert`` or ``tflite_runtime``) forces one package, which is how the fallback path is tested.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ..errors import StartupError

FORCE_ENV = "LIVENESS_EDGE_INTERPRETER"
_CANDIDATES = {
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
}


@dataclass(frozen=True)
class InterpreterPackage:
    name: str  # distribution name, e.g. "ai-edge-litert"
    version: str
    Interpreter: Any
    load_delegate: Any


def _try(key: str) -> InterpreterPackage:
    module_name, dist = _CANDIDATES[key]
    module = importlib.import_module(module_name)
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = "unknown"
    return InterpreterPackage(dist, version, module.Interpreter, module.load_delegate)


_cached: InterpreterPackage | None = None


def interpreter_package() -> InterpreterPackage:
    """The first importable interpreter package (or the forced one); StartupError naming both when neither imports."""
    global _cached
    forced = os.environ.get(FORCE_ENV, "")
    if forced and forced not in _CANDIDATES:  # checked first: a cached package must not hide a wrong value
        raise StartupError(f"{FORCE_ENV}={forced!r}: expected one of {', '.join(_CANDIDATES)}")
    if _cached is not None and (not forced or _CANDIDATES[forced][1] == _cached.name):
        return _cached
    order = [forced] if forced else list(_CANDIDATES)
    problems = []
    for key in order:
        try:
            _cached = _try(key)
            return _cached
        except ImportError as exc:
            problems.append(f"{_CANDIDATES[key][1]}: {exc}")
    raise StartupError("no TFLite interpreter package could be imported (" + "; ".join(problems) + ")")
