"""Coral EdgeTPU runtime: ``libedgetpu.so.1`` loaded as a TFLite delegate.

Runs ``*_edgetpu.tflite`` files compiled by ``edgetpu_compiler`` (the int8 variant is the one it can compile); ops the
compiler left on the CPU still run there. ``LIVENESS_EDGE_EDGETPU_DEVICE`` picks one device ("usb", "pci:0", ...)
when a box has several.
"""

from __future__ import annotations

import os

from .base import DelegateBackend


class EdgeTpuBackend(DelegateBackend):
    key = "edgetpu"
    preferred_variant = "int8"
    library = "libedgetpu.so.1"
    hint = ("install libedgetpu1-std and check that the Coral is plugged in and /dev/apex_0 or the USB device is "
            "accessible")

    def delegate_options(self) -> dict:
        device = os.environ.get("LIVENESS_EDGE_EDGETPU_DEVICE", "")
        return {"device": device} if device else {}
