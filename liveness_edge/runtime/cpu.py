"""CPU runtime: LiteRT's built-in XNNPACK delegate, thread count from ``runtime.threads``."""

from __future__ import annotations

from pathlib import Path

from .base import Backend, new_interpreter
from .litert import interpreter_package


class CpuBackend(Backend):
    key = "cpu"

    def probe(self) -> None:
        interpreter_package()  # raises StartupError naming the packages when none imports

    def make_interpreter(self, path: Path):
        return new_interpreter(path, self.threads)

    def describe(self) -> str:
        package = interpreter_package()
        return f"cpu (XNNPACK, {self.threads} threads, {package.name} {package.version})"
