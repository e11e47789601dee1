"""GPU runtime: the TFLite GPU delegate (OpenCL/OpenGL ES), e.g. on Jetson or Mali boards.

The delegate library is not part of the LiteRT wheel on every platform; ``LIVENESS_EDGE_GPU_DELEGATE`` names it
(default ``libtensorflowlite_gpu_delegate.so``, as built from TensorFlow's ``//tensorflow/lite/delegates/gpu``).
"""

from __future__ import annotations

import os

from .base import DelegateBackend

DEFAULT_LIBRARY = "libtensorflowlite_gpu_delegate.so"


class GpuBackend(DelegateBackend):
    key = "gpu"
    preferred_variant = "float32"
    hint = "set LIVENESS_EDGE_GPU_DELEGATE to the path of the TFLite GPU delegate library"

    def __init__(self, threads: int):
        super().__init__(threads)
        self.library = os.environ.get("LIVENESS_EDGE_GPU_DELEGATE", DEFAULT_LIBRARY)
