"""GPU runtime: the TFLite GPU delegate (OpenCL/OpenGL ES), e.g. on Jetson or Mali boards.

The delegate library is not part of the LiteRT wheel on every platform; ``LIVENESS_EDGE_GPU_DELEGATE`` names it
(default ``libtensorflowlite_gpu_delegate.so``, as built from TensorFlow's ``//tensorflow/lite/delegates/gpu``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StartupError
from .base import Backend, new_interpreter
from .litert import interpreter_package

DEFAULT_LIBRARY = "libtensorflowlite_gpu_delegate.so"


class GpuBackend(Backend):
    key = "gpu"
    preferred_variant = "float32"

    def __init__(self, threads: int):
        super().__init__(threads)
        self.library = os.environ.get("LIVENESS_EDGE_GPU_DELEGATE", DEFAULT_LIBRARY)

    def _delegate(self):
        try:
            return interpreter_package().load_delegate(self.library)
        except (ValueError, OSError, RuntimeError) as exc:
            raise StartupError(
                f"runtime.delegate gpu: cannot load {self.library} ({exc}); set LIVENESS_EDGE_GPU_DELEGATE to the "
                "path of the TFLite GPU delegate library"
            ) from None

    def probe(self) -> None:
        self._delegate()

    def make_interpreter(self, path: Path):
        return new_interpreter(path, self.threads, [self._delegate()])
