"""Load test: drive a real daemon on loopback with concurrent clients and report statuses, latency and memory.

    python -m tools.load [--requests 2000] [--clients 16] [--seed 1]

Starts ``liveness-edge serve`` with the shipped config on an ephemeral loopback port (private state dir), warms it up,
then sends a bounded number of requests from ``--clients`` threads: valid small face clips (tests/media.py,
320x240, 12 frames, some with return flags), invalid ones (garbage, no face, truncated, wrong type, bad flags) and
oversized ones (Content-Length over limits.video-size). A client that gets 503 BUSY waits ``--backoff`` (the
Retry-After, 1 s) and moves on to its next request.
Prints requests by kind and status, p50/p95/p99 latency, the shed rate, and the daemon's RSS (peak, final, and the
growth between the first and the last 500 requests). Exit status 1 on an unexpected status or too much growth.

The helpers here (raw socket requests, RSS) are shared by tools/fuzz.py and the hardening tests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

# Statuses each kind of request may legitimately get; anything else (or a connection error) is unexpected.
EXPECTED = {
    "valid": {200, 503},
    "invalid": {400, 415, 422, 503},
    "oversized": {413},
}
ERROR_KEYS = {"code", "desc", "param"}


# ----------------------------------------------------------------------------------------------------------------------
# Client helpers.


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or VmHWM, the peak) of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def request(host: str, port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, timeout: float = 60.0) -> tuple[int, dict, bytes]:
    """One request on a fresh connection: (status, headers, raw body). Raises OSError / HTTPException on failures."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def raw(host: str, port: int, data: bytes, timeout: float = 10.0, then: bytes = b"") -> bytes:
    """Send raw bytes and read until the server closes (or ``timeout``); ``then`` is sent after the first reply
    bytes arrive (never, if nothing arrives). Connection resets after a reply are not errors: a server that refuses a
    body closes with unread data."""
    out = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if _complete(out) and not then:
                break
            if then:
                try:
                    sock.sendall(then)
                except OSError:
                    pass
                then = b""
    return out


def _complete(reply: bytes) -> bool:
    """A whole response with a final status and its Content-Length body (interim 1xx responses do not count)."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep or head.startswith(b"HTTP/1.1 1"):
        return False
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value)
            except ValueError:
                return False
    return False


def parse_reply(reply: bytes) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of the first response in raw bytes; status 0 if there is none."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return 0, {}, reply
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body


def error_shape_ok(status: int, body: bytes) -> bool:
    """200 with a JSON object, or an error with the standard {"code","desc","param"} JSON."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    if status == 200:
        return "alive" in parsed
    return ERROR_KEYS <= set(parsed) and isinstance(parsed["code"], str) and "Traceback" not in str(parsed["desc"])


def oversized(host: str, port: int, limit: int, timeout: float = 10.0) -> tuple[int, bytes]:
    """A POST whose Content-Length is over the limit; only the head and 64 KiB are sent. (status, body)."""
    head = (f"POST /v1/liveness HTTP/1.1\r\nHost: {host}\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: {limit + 1 + random.randrange(1 << 20)}\r\n\r\n").encode()
    status, _, body = parse_reply(raw(host, port, head + b"\0" * 65536, timeout=timeout))
    return status, body


# ----------------------------------------------------------------------------------------------------------------------
# Request mix.


def make_clips(seed: int = 0) -> dict[str, list[tuple[bytes, str, str]]]:
    """(body, content type, query) per kind. Valid clips are small so thousands finish in minutes on 2 cores."""
    from media import blank_frames, encode, face_frames

    valid_mp4 = encode(face_frames(12, 320, 240, face_px=160, seed=seed))
    valid_webm = encode(face_frames(12, 320, 240, face_px=160, seed=seed + 1), container="webm", codec="libvpx")
    no_face = encode(blank_frames(12, 320, 240))
    valid = [
        (valid_mp4, "video/mp4", ""),
        (valid_mp4, "application/octet-stream", "return_detection=true"),
        (valid_webm, "video/webm", ""),
        (valid_mp4, "video/mp4", "return_photo=true&return_normalized=true"),
    ]
    invalid = [
        (b"\x00garbage" * 200, "video/mp4", ""),
        (no_face, "video/mp4", ""),
        (valid_mp4[: len(valid_mp4) // 3], "video/mp4", ""),
        (valid_mp4, "image/png", ""),
        (valid_mp4, "video/mp4", "return_photo=maybe"),
        (b"", "video/mp4", ""),
    ]
    return {"valid": valid, "invalid": invalid}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile of what was measured (one of the values, not an interpolation); 0 when nothing was."""
    return float(np.percentile(values, q, method="nearest")) if values else 0.0


class LoadRun:
    def __init__(self, host: str, port: int, pid: int, limit: int, total: int, clients: int, seed: int,
                 backoff: float = 0.2):
        self.host, self.port, self.pid, self.limit = host, port, pid, limit
        self.total, self.clients, self.backoff = total, clients, backoff
        self.rng = random.Random(seed)
        self.clips = make_clips(seed)
        self.lock = threading.Lock()
        self.issued = 0
        self.done = 0
        self.results: list[tuple[str, int, str, float]] = []  # kind, status, code, seconds
        self.unexpected: list[str] = []
        self.rss: list[tuple[int, int]] = []  # (requests done, KiB)
        self.plan = [self._pick() for _ in range(total)]

    def _pick(self) -> str:
        r = self.rng.random()
        return "valid" if r < 0.70 else ("invalid" if r < 0.92 else "oversized")

    def _next(self) -> tuple[int, str] | None:
        with self.lock:
            if self.issued >= self.total:
                return None
            self.issued += 1
            return self.issued - 1, self.plan[self.issued - 1]

    def _one(self, index: int, kind: str) -> None:
        rng = random.Random(index)
        start = time.perf_counter()
        code = ""
        try:
            if kind == "oversized":
                status, body = oversized(self.host, self.port, self.limit)
            else:
                payload, ctype, query = rng.choice(self.clips[kind])
                status, _, body = request(self.host, self.port, "POST", "/v1/liveness" + (f"?{query}" if query else ""),
                                          payload, {"Content-Type": ctype})
            if not error_shape_ok(status, body):
                self.unexpected.append(f"#{index} {kind}: {status} with a malformed body {body[:120]!r}")
            elif status != 200:
                code = json.loads(body)["code"]
        except (OSError, http.client.HTTPException) as exc:
            status, code = 0, type(exc).__name__
        elapsed = time.perf_counter() - start
        if status not in EXPECTED[kind]:
            self.unexpected.append(f"#{index} {kind}: status {status} {code}")
        with self.lock:
            self.results.append((kind, status, code, elapsed))
            self.done += 1
        if status == 503:
            time.sleep(self.backoff)

    def _client(self) -> None:
        while (item := self._next()) is not None:
            self._one(*item)

    def _sample_rss(self, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            self.rss.append((self.done, rss_kb(self.pid)))

    def run(self) -> dict:
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample_rss, args=(stop,), daemon=True)
        sampler.start()
        started = time.perf_counter()
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        self.rss.append((self.done, rss_kb(self.pid)))
        return self.report(wall)

    def report(self, wall: float) -> dict:
        window = min(500, max(1, self.total // 4))
        first = [kb for done, kb in self.rss if done <= window] or [self.rss[0][1]]
        last = [kb for done, kb in self.rss if done >= self.total - window] or [self.rss[-1][1]]
        by_status = Counter(str(status) for _, status, _, _ in self.results)
        by_kind = Counter(f"{kind} {status}{' ' + code if code else ''}" for kind, status, code, _ in self.results)
        answered = [s for k, status, _, s in self.results if status not in (0, 503)]
        valid_ok = [s for k, status, _, s in self.results if k == "valid" and status == 200]
        clips = [r for r in self.results if r[0] != "oversized"]
        return {
            "requests": len(self.results),
            "clients": self.clients,
            "wall_sec": round(wall, 1),
            "by_status": dict(sorted(by_status.items())),
            "by_kind": dict(sorted(by_kind.items())),
            "latency_ms": {f"p{q}": round(1000 * percentile(answered, q), 1) for q in (50, 95, 99)},
            "latency_ms_valid_200": {f"p{q}": round(1000 * percentile(valid_ok, q), 1) for q in (50, 95, 99)},
            "shed_rate": round(sum(1 for r in clips if r[1] == 503) / max(1, len(clips)), 3),
            "rss_kib": {"peak": max(kb for _, kb in self.rss), "final": self.rss[-1][1],
                        f"first_{window}_max": max(first), f"last_{window}_max": max(last)},
            "rss_growth": round(max(last) / max(first) - 1, 4),
            "rss_timeline_mib": [round(max([kb for done, kb in self.rss if done <= self.total * (i + 1) / 10]
                                           or [0]) / 1024, 1) for i in range(10)],
            "unexpected": self.unexpected[:20],
            "unexpected_count": len(self.unexpected),
        }


def warm_up(host: str, port: int, clips: dict, rounds: int = 2, clients: int = 4) -> None:
    """Every request shape ``rounds`` times from ``clients`` threads at once, so the interpreter pool reaches its
    concurrent size, allocator arenas exist for every worker and lazy imports are done before anything is measured."""
    shapes = [item for kind in ("valid", "invalid") for item in clips[kind]] * rounds
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not shapes:
                    return
                payload, ctype, query = shapes.pop()
            try:
                request(host, port, "POST", "/v1/liveness" + (f"?{query}" if query else ""), payload,
                        {"Content-Type": ctype})
            except (OSError, http.client.HTTPException):
                pass

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def print_report(report: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"load: {report['requests']} requests from {report['clients']} clients in {report['wall_sec']} s", file=out)
    print("  by status: " + ", ".join(f"{k}: {v}" for k, v in report["by_status"].items()), file=out)
    for key, count in report["by_kind"].items():
        print(f"    {key}: {count}", file=out)
    lat, lat_ok = report["latency_ms"], report["latency_ms_valid_200"]
    print(f"  latency (answered, not shed): p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms", file=out)
    print(f"  latency (valid clips, 200):   p50 {lat_ok['p50']} ms, p95 {lat_ok['p95']} ms, p99 {lat_ok['p99']} ms",
          file=out)
    print(f"  shed rate (503 BUSY among clip requests): {100 * report['shed_rate']:.1f} %", file=out)
    rss = report["rss_kib"]
    print("  RSS: " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in rss.items())
          + f"; growth first->last window {100 * report['rss_growth']:+.2f} %", file=out)
    print("  RSS peak so far at each tenth of the run (MiB): " + " ".join(map(str, report["rss_timeline_mib"])),
          file=out)
    print(f"  unexpected statuses: {report['unexpected_count']}", file=out)
    for line in report["unexpected"]:
        print(f"    {line}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backoff", type=float, default=1.0,
                        help="seconds a client waits after 503 BUSY (the daemon's Retry-After is 1)")
    parser.add_argument("--max-growth", type=float, default=0.05, help="fail above this RSS growth (fraction)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args(argv)

    from conftest import Daemon, write_config

    with tempfile.TemporaryDirectory(prefix="liveness-edge-load-") as tmp:
        # Every client thread connects from 127.0.0.1, where real clients would come from addresses of their own.
        daemon = Daemon(write_config(Path(tmp), "connections-per-client: 0"))
        try:
            host, port = daemon.url.split("//")[1].split(":")
            port = int(port)
            run = LoadRun(host, port, daemon.proc.pid, 10485760, args.requests, args.clients, args.seed,
                          backoff=args.backoff)
            warm_up(host, port, run.clips)
            report = run.run()
            status, _, _ = request(host, port, "GET", "/health", timeout=10)
            report["health_after"] = status
            report["daemon_alive"] = daemon.proc.poll() is None
        finally:
            daemon.stop()
    print_report(report)
    print(f"  daemon alive after: {report['daemon_alive']}, /health {report['health_after']}")
    if args.json:
        print(json.dumps(report))
    failed = report["unexpected_count"] or report["rss_growth"] > args.max_growth or not report["daemon_alive"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
