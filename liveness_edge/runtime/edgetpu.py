"""Coral EdgeTPU runtime: ``libedgetpu.so.1`` loaded as a TFLite delegate.

Runs ``*_edgetpu.tflite`` files compiled by ``edgetpu_compiler`` (the int8 variant is the one it can compile); ops the
compiler left on the CPU still run there. Each interpreter gets its own delegate instance, as the Coral docs advise for
multi-threaded use.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StartupError
from .base import Backend, new_interpreter
from .litert import interpreter_package

LIBRARY = "libedgetpu.so.1"


class EdgeTpuBackend(Backend):
    key = "edgetpu"
    preferred_variant = "int8"

    def __init__(self, threads: int):
        super().__init__(threads)
        self.device = os.environ.get("LIVENESS_EDGE_EDGETPU_DEVICE", "")  # e.g. "usb", "pci:0"; "" = first found

    def _delegate(self):
        options = {"device": self.device} if self.device else {}
        try:
            return interpreter_package().load_delegate(LIBRARY, options)
        except (ValueError, OSError, RuntimeError) as exc:
            raise StartupError(
                f"runtime.delegate edgetpu: cannot load {LIBRARY} ({exc}); install libedgetpu1-std and check that "
                "the Coral is plugged in and /dev/apex_0 or the USB device is accessible"
            ) from None

    def probe(self) -> None:
        self._delegate()

    def make_interpreter(self, path: Path):
        return new_interpreter(path, self.threads, [self._delegate()])
