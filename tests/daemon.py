"""`liveness-edge serve` in a subprocess, for the tests and the benchmark (tools/bench.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from media import ROOT


class Daemon:
    """`liveness-edge serve` in a subprocess on an ephemeral loopback port."""

    def __init__(self, config: Path, env: dict | None = None):
        self.config = config
        self.lines: list[str] = []
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liveness_edge", "--config", str(config), "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self._port: int | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(60) or self._port is None:
            self.stop()
            raise RuntimeError("daemon did not start:\n" + "\n".join(self.lines[-30:]))
        self.url = f"http://127.0.0.1:{self._port}"
        self.ready_seconds = time.perf_counter() - started  # start to serving (`make bench` reports it)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            match = re.search(r"serving on \S+ port (\d+)", line)
            if match and self._port is None:
                self._port = int(match.group(1))
                self._ready.set()
        self._ready.set()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60):
        """(status, headers, parsed JSON or raw bytes) without raising on 4xx/5xx."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, hdrs, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, hdrs, raw = err.code, err.headers, err.read()
        try:
            return status, hdrs, json.loads(raw)
        except ValueError:
            return status, hdrs, raw

    def post_clip(self, clip: bytes, query: str = "", content_type: str = "video/mp4", headers: dict | None = None,
                  timeout: float = 60):
        return self.request("POST", "/v1/liveness" + (f"?{query}" if query else ""), clip,
                            {"Content-Type": content_type, **(headers or {})}, timeout)

    def stop(self, sig=None, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate() if sig is None else self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
