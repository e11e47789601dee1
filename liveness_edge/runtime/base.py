"""The one interface every inference runtime implements, and the thread-safe model handle built on it.

A ``Backend`` (one plugin module per delegate: cpu, edgetpu, gpu) knows how to build an interpreter for a model file.
A ``Model`` wraps one model file on one backend. TFLite interpreters are not thread-safe, so each call checks an
interpreter out of a small pool and returns it afterwards: an interpreter is never used by two threads at once,
new ones are created lazily only when every existing one is busy, and the pool never grows past the number of
requests that run models at the same time (the admission gate's slots), however many HTTP worker threads exist.
Callers pass float arrays in the model's own input range; the model quantizes and dequantizes int8/uint8 tensors
itself, so stages never see quantization.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StartupError, StartupUnavailable
from .litert import interpreter_package


class Backend(abc.ABC):
    """One inference runtime/delegate."""

    key: str = ""
    #: The model variant this backend runs best ("int8" for EdgeTPU); None = take the manifest's measured preference.
    preferred_variant: str | None = None

    def __init__(self, threads: int):
        self.threads = threads

    @abc.abstractmethod
    def probe(self) -> None:
        """Raise StartupError naming the library looked for if this backend cannot run on this box."""

    @abc.abstractmethod
    def make_interpreter(self, path: Path):
        """A new, allocated interpreter for ``path``."""

    def describe(self) -> str:
        return self.key


class DelegateBackend(Backend):
    """A backend whose accelerator is a TFLite delegate loaded from a shared library (EdgeTPU, GPU).

    Each interpreter gets its own delegate instance (delegates are not shared across threads); a library that does
    not load is a StartupError naming it and saying what to install or set.
    """

    library: str = ""
    hint: str = ""  # what the operator should do when the library does not load

    def delegate_options(self) -> dict:
        return {}

    def _delegate(self):
        try:
            # Opened here first: LiteRT's Delegate, when its library cannot be opened (or lacks the plugin entry
            # points), is left half-built and its __del__ prints a traceback to stderr (the journal).
            library = ctypes.CDLL(self.library)
        except OSError as exc:  # not installed: waiting will not bring it
            raise StartupError(f"runtime.delegate {self.key}: cannot load {self.library} ({exc}); {self.hint}") \
                from None
        if not hasattr(library, "tflite_plugin_create_delegate"):
            raise StartupError(f"runtime.delegate {self.key}: {self.library} is not a TFLite delegate library "
                               f"(no tflite_plugin_create_delegate); {self.hint}")
        try:
            return interpreter_package().load_delegate(self.library, self.delegate_options())
        except (ValueError, OSError, RuntimeError) as exc:
            # The library is there but found no device: a USB Coral still enumerating after boot, or unplugged.
            raise StartupUnavailable(f"runtime.delegate {self.key}: {self.library} found no device ({exc}); "
                                     f"{self.hint}") from None

    def probe(self) -> None:
        self._delegate()

    def make_interpreter(self, path: Path):
        return new_interpreter(path, self.threads, [self._delegate()])


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    signature: tuple[int, ...]  # -1 where the dimension is dynamic
    dtype: str
    scale: float
    zero_point: int


class Model:
    """A model file on a backend, safe to call from any worker thread."""

    def __init__(self, path: Path, backend: Backend, name: str = ""):
        self.path = Path(path)
        self.name = name or self.path.stem
        self.backend = backend
        self._idle: queue.LifoQueue[_Slot] = queue.LifoQueue()  # LIFO: the most recently used one is warm in cache
        self.created = 0
        try:
            first = self._new_slot()  # loads once at start so a corrupt file fails here, not on the first request
        except StartupError:
            raise
        except Exception as exc:  # the interpreter's own error text is the most useful thing to show
            raise StartupError(f"model {self.path}: cannot be loaded by {backend.describe()}: {exc}") from None
        self._idle.put(first)
        self.inputs = [self._spec(first.input)]
        self.outputs = [self._spec(d) for d in first.outputs]
        self.warm_ms: float | None = None

    @staticmethod
    def _spec(detail) -> TensorSpec:
        scale, zero = detail.get("quantization", (0.0, 0))
        sig = detail.get("shape_signature", detail["shape"])
        return TensorSpec(tuple(int(x) for x in detail["shape"]), tuple(int(x) for x in sig),
                          np.dtype(detail["dtype"]).name, float(scale), int(zero))

    def _new_slot(self) -> "_Slot":
        interp = self.backend.make_interpreter(self.path)
        self.created += 1
        return _Slot.of(interp)

    @contextlib.contextmanager
    def _checkout(self):
        try:
            slot = self._idle.get_nowait()
        except queue.Empty:
            slot = self._new_slot()
        try:
            yield slot
        finally:
            self._idle.put(slot)

    @property
    def input_hw(self) -> tuple[int, int]:
        shape = self.inputs[0].shape
        return (shape[1], shape[2]) if shape[-1] in (1, 3) else (shape[2], shape[3])

    @property
    def batchable(self) -> bool:
        return self.inputs[0].signature[0] == -1

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run a float batch [N, ...] through the model; returns float outputs, each [N, ...]."""
        batch = np.asarray(batch, dtype=np.float32)
        with self._checkout() as slot:
            if self.batchable:
                return self._invoke(slot, batch)
            results = [self._invoke(slot, batch[i : i + 1]) for i in range(len(batch))]
        return [np.concatenate([r[k] for r in results]) for k in range(len(self.outputs))]

    def _invoke(self, slot: "_Slot", batch: np.ndarray) -> list[np.ndarray]:
        interp = slot.interp
        if self.batchable and slot.batch != len(batch):
            # Resized only when the batch size changes, so a steady batch size never reallocates.
            detail = slot.input
            interp.resize_tensor_input(detail["index"], [len(batch), *detail["shape"][1:]])
            interp.allocate_tensors()
            slot.refresh()
        interp.set_tensor(slot.input["index"], _quantize(batch, slot.input))
        interp.invoke()
        return [_dequantize(interp.get_tensor(d["index"]), d) for d in slot.outputs]

    def warm_up(self, runs: int = 5) -> float:
        """Invoke on zeros a few times (first invokes are slow); records and returns the mean warm ms."""
        zeros = np.zeros((1, *self.inputs[0].shape[1:]), np.float32)
        self.run(zeros)
        start = time.perf_counter()
        for _ in range(runs):
            self.run(zeros)
        self.warm_ms = (time.perf_counter() - start) * 1000.0 / runs
        return self.warm_ms


@dataclass
class _Slot:
    """One interpreter and its tensor details, read once (building the detail dicts costs more than a small invoke)."""

    interp: object
    input: dict
    outputs: list
    batch: int  # the batch size the input tensor is currently allocated for

    @classmethod
    def of(cls, interp) -> "_Slot":
        slot = cls(interp, {}, [], 0)
        slot.refresh()
        return slot

    def refresh(self) -> None:
        self.input = self.interp.get_input_details()[0]
        self.outputs = self.interp.get_output_details()
        self.batch = int(self.input["shape"][0])


def _quantize(values: np.ndarray, detail) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return values
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values  # get_tensor already returns a copy, never a view of the interpreter's buffer
    scale, zero = detail["quantization"]
    return (values.astype(np.float32) - zero) * scale


def new_interpreter(path: Path, threads: int, delegates=None):
    package = interpreter_package()
    interp = package.Interpreter(model_path=str(path), num_threads=threads, experimental_delegates=delegates)
    interp.allocate_tensors()
    return interp
