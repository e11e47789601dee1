"""Fuzz a real daemon with mutated clips: every answer must be 200 or a 4xx in the standard error JSON.

    python -m tools.fuzz [--inputs 2000] [--seed 1] [--clients 2] [--no-shared]

Seeds are small clips made with tests/media.py (mp4/H.264, WebM/VP8, Matroska, QuickTime, MPEG-TS, raw H.264),
audio-only files (AAC in mp4, Opus in WebM and Ogg), still images, text, zero and one byte, and crafted mp4 atoms
(deeply nested boxes, boxes claiming 4 GiB or 2^62 bytes, absurd sample counts). When ../shared/data exists its real
clips are seeds too: read in place, mutated in memory, never copied anywhere. A seeded mutator then truncates, flips
bits, corrupts headers and atom sizes, deletes, duplicates and splices chunks, and sends bodies under the wrong
Content-Type.

Checks: no 5xx, every answer 200 or 4xx with {"code","desc","param"}, the daemon alive, a normal request answered
within a few seconds afterwards, and RSS back within 10 % of its warm level. Prints counts by status and code. An
input that broke a rule is saved under .cache/fuzz-failures/ (git-ignored) for replay.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import random
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from tools.load import ROOT, error_shape_ok, request, rss_kb

FAILURES = ROOT / ".cache" / "fuzz-failures"
SETTLE = 1.5  # seconds idle before reading RSS: the daemon trims freed heap once idle for a second
TYPES = ["video/mp4", "video/webm", "video/quicktime", "video/x-matroska", "application/octet-stream"]
SHARED_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".3gp", ".jpg", ".jpeg", ".png"}
MP4_BOXES = [b"ftyp", b"moov", b"mvhd", b"trak", b"tkhd", b"mdia", b"mdhd", b"hdlr", b"minf", b"stbl", b"stsd",
             b"stts", b"stss", b"stsc", b"stsz", b"stco", b"co64", b"mdat", b"avcC", b"edts", b"elst", b"avc1"]


@dataclass
class Input:
    name: str
    body: bytes
    content_type: str
    query: str = ""


# ----------------------------------------------------------------------------------------------------------------------
# Seeds.


def _audio(container: str, codec: str, rate: int = 48000, seconds: float = 0.5) -> bytes:
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        samples = int(rate * seconds)
        t = np.arange(samples) / rate
        pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
        step = 960
        pts = 0
        for start in range(0, samples, step):
            chunk = pcm[start:start + step]
            if len(chunk) < step:
                chunk = np.pad(chunk, (0, step - len(chunk)))
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
            pts += step
            if fmt != "fltp":
                frame = av.AudioResampler(format=fmt, layout="mono", rate=rate).resample(frame)[0]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    return struct.pack(">I", len(payload) + 8 if size is None else size) + kind + payload


def crafted_mp4s(valid: bytes) -> list[tuple[str, bytes]]:
    ftyp = _box(b"ftyp", b"isom\0\0\2\0isomiso2avc1mp41")
    nested = b""
    for _ in range(2000):
        nested = _box(b"trak", nested)
    out = [
        ("mp4-nested-2000", ftyp + _box(b"moov", nested)),
        ("mp4-box-4GiB", ftyp + _box(b"moov", b"\0" * 64, size=0xFFFFFFF0)),
        ("mp4-box-largesize", ftyp + struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 1 << 62) + b"\0" * 64),
        ("mp4-box-size-0", ftyp + _box(b"moov", b"", size=0)),
        ("mp4-box-size-1", ftyp + struct.pack(">I", 1) + b"moov" + struct.pack(">Q", 3)),
        ("mp4-many-boxes", ftyp + b"".join(_box(b"free", b"x" * 3) for _ in range(20000))),
        ("mp4-only-ftyp", ftyp),
    ]
    # The valid clip with one size or count field inflated: sample tables that claim billions of entries.
    for kind in (b"stsz", b"stco", b"stts", b"stsc", b"moov", b"mdat", b"avcC"):
        pos = valid.find(kind)
        if pos < 4:
            continue
        for label, value in (("huge", 0x7FFFFFFF), ("zero", 0), ("small", 9)):
            body = bytearray(valid)
            body[pos - 4:pos] = struct.pack(">I", value)
            out.append((f"mp4-{kind.decode()}-size-{label}", bytes(body)))
        if kind in (b"stsz", b"stco", b"stts", b"stsc"):  # entry count after version/flags (stsz: after sample size)
            body = bytearray(valid)
            offset = pos + 4 + 4 + (4 if kind == b"stsz" else 0)
            body[offset:offset + 4] = struct.pack(">I", 0x3FFFFFFF)
            out.append((f"mp4-{kind.decode()}-count-huge", bytes(body)))
    return out


def synthetic_seeds() -> list[Input]:
    import cv2

    from media import astronaut_rgb, encode, face_frames

    frames = face_frames(12, 320, 240, face_px=160)
    mp4 = encode(frames)
    seeds = [
        Input("mp4", mp4, "video/mp4"),
        Input("webm", encode(frames, container="webm", codec="libvpx"), "video/webm"),
        Input("mkv", encode(frames, container="matroska"), "video/x-matroska"),
        Input("mov", encode(frames, container="mov"), "video/quicktime"),
        Input("mpegts", encode(frames, container="mpegts"), "video/mp2t"),
        Input("h264", encode(frames, container="h264"), "video/h264"),
        Input("mjpeg-avi", encode(frames, container="avi", codec="mjpeg", pix_fmt="yuvj420p"), "video/x-msvideo"),
        Input("hevc-mp4", encode(frames, codec="libx265"), "video/mp4"),
        Input("mpeg2-ps", encode(frames, container="mpeg", codec="mpeg2video"), "video/mpeg"),
        Input("h264-3gp", encode(frames, container="3gp"), "video/3gpp"),
        Input("aac-m4a", _audio("mp4", "aac"), "video/mp4"),
        Input("opus-webm", _audio("webm", "libopus"), "video/webm"),
        Input("opus-ogg", _audio("ogg", "libopus"), "application/octet-stream"),
        Input("jpeg", cv2.imencode(".jpg", cv2.cvtColor(astronaut_rgb(), cv2.COLOR_RGB2BGR))[1].tobytes(),
              "application/octet-stream"),
        Input("png", cv2.imencode(".png", frames[0])[1].tobytes(), "video/mp4"),
        Input("text", b"This is not a video.\n" * 20, "video/mp4"),
        Input("json", json.dumps({"video": "clip.mp4"}).encode(), "application/octet-stream"),
        Input("html", b"<!doctype html><html><body>hello</body></html>", "video/webm"),
        Input("empty", b"", "video/mp4"),
        Input("one-byte", b"\x00", "video/mp4"),
        Input("zeros", b"\0" * 100_000, "video/mp4"),
    ]
    seeds += [Input(name, body, "video/mp4") for name, body in crafted_mp4s(mp4)]
    return seeds


def shared_seeds(limit_bytes: int = 10485760) -> list[Input]:
    """Real clips and images from ../shared/data, read in place (never copied)."""
    from media import SHARED_DATA

    if not SHARED_DATA.is_dir():
        return []
    out = []
    for path in sorted(SHARED_DATA.rglob("*")):
        if path.is_file() and path.suffix.lower() in SHARED_SUFFIXES and path.stat().st_size <= limit_bytes:
            out.append(Input(f"shared:{path.relative_to(SHARED_DATA)}", path.read_bytes(),
                             "application/octet-stream"))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Mutations.


def mutate(rng: random.Random, seed: Input, seeds: list[Input]) -> Input:
    body = bytearray(seed.body)
    kind = rng.choice(["truncate", "bitflip", "header", "atom", "delete", "duplicate", "splice", "wrong-type",
                       "zero-fill", "append", "insert", "as-is"])
    n = len(body)
    if kind == "truncate" and n:
        body = body[: rng.randrange(n)]
    elif kind == "bitflip" and n:
        for _ in range(rng.choice([1, 2, 8, 64, 512])):
            i = rng.randrange(n)
            body[i] ^= 1 << rng.randrange(8)
    elif kind == "header" and n:
        for _ in range(rng.randrange(1, 32)):
            i = rng.randrange(min(n, 1024))
            body[i] = rng.randrange(256)
    elif kind == "atom" and n:
        positions = [p for box in MP4_BOXES for p in _find_all(body, box)] or [rng.randrange(n)]
        pos = rng.choice(positions)
        value = rng.choice([0, 1, 7, 8, 0xFFFFFFFF, 0x7FFFFFFF, rng.randrange(1 << 32), n, n * 2])
        if pos >= 4:
            body[pos - 4:pos] = struct.pack(">I", value)
        if rng.random() < 0.5 and pos + 12 <= n:  # and the field after the type: version/flags/entry count
            body[pos + 8:pos + 12] = struct.pack(">I", rng.choice([0xFFFFFFFF, 0x40000000, 0]))
    elif kind == "delete" and n > 16:
        a = rng.randrange(n)
        del body[a: a + rng.randrange(1, max(2, n // 4))]
    elif kind == "duplicate" and n > 16:
        a = rng.randrange(n)
        chunk = body[a: a + rng.randrange(1, max(2, n // 4))]
        b = rng.randrange(n)
        body[b:b] = chunk * rng.choice([1, 2, 8])
    elif kind == "splice":
        other = rng.choice(seeds).body
        if n and other:
            body = body[: rng.randrange(n)] + other[rng.randrange(len(other)):]
    elif kind == "zero-fill" and n:
        a = rng.randrange(n)
        body[a: a + rng.randrange(1, 4096)] = b"\0" * len(body[a: a + rng.randrange(1, 4096)])
    elif kind == "append":
        body += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2048)))
    elif kind == "insert" and n:
        a = rng.randrange(n)
        body[a:a] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 256)))
    content_type = seed.content_type
    if kind == "wrong-type" or rng.random() < 0.15:
        content_type = rng.choice(TYPES)
    query = ""
    if rng.random() < 0.2:
        query = rng.choice(["return_photo=true", "return_normalized=true&return_detection=true",
                            "return_photo=1&return_normalized=1&return_detection=1"])
    return Input(f"{seed.name}/{kind}", bytes(body), content_type, query)


def _find_all(data: bytearray, needle: bytes, limit: int = 64) -> list[int]:
    out, start = [], 0
    while len(out) < limit:
        i = data.find(needle, start)
        if i < 0:
            break
        out.append(i)
        start = i + 1
    return out


def generate(count: int, seed: int, seeds: list[Input]) -> list[Input]:
    """``count`` inputs: every seed once as-is, then mutations of random seeds."""
    rng = random.Random(seed)
    inputs = list(seeds[:count])
    while len(inputs) < count:
        inputs.append(mutate(rng, rng.choice(seeds), seeds))
    return inputs


# ----------------------------------------------------------------------------------------------------------------------
# Running.


class FuzzRun:
    def __init__(self, host: str, port: int, pid: int, inputs: list[Input], clients: int = 2, timeout: float = 60):
        self.host, self.port, self.pid = host, port, pid
        self.inputs = inputs
        self.clients = clients
        self.timeout = timeout
        self.lock = threading.Lock()
        self.next = 0
        self.by_status: Counter[str] = Counter()
        self.by_code: Counter[str] = Counter()
        self.failures: list[str] = []
        self.slowest: tuple[float, str] = (0.0, "")

    def _one(self, index: int, item: Input) -> None:
        path = "/v1/liveness" + (f"?{item.query}" if item.query else "")
        start = time.monotonic()
        problem = ""
        try:
            status, _, body = request(self.host, self.port, "POST", path, item.body,
                                      {"Content-Type": item.content_type}, timeout=self.timeout)
        except (OSError, http.client.HTTPException) as exc:
            status, body, problem = 0, b"", f"no answer: {type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - start
        code = ""
        if not problem:
            if status >= 500 or not (status == 200 or 400 <= status < 500):
                problem = f"status {status}"
            elif not error_shape_ok(status, body):
                problem = f"status {status} with a malformed body {body[:200]!r}"
            elif status != 200:
                code = json.loads(body)["code"]
        with self.lock:
            self.by_status[str(status)] += 1
            self.by_code[f"{status} {code}".strip()] += 1
            if elapsed > self.slowest[0]:
                self.slowest = (elapsed, item.name)
            if problem:
                self.failures.append(f"#{index} {item.name} ({item.content_type}, {len(item.body)} B): {problem}")
                FAILURES.mkdir(parents=True, exist_ok=True)
                (FAILURES / f"{index:05d}.bin").write_bytes(item.body)
                (FAILURES / f"{index:05d}.json").write_text(json.dumps(
                    {"name": item.name, "content_type": item.content_type, "query": item.query, "problem": problem}))

    def _client(self) -> None:
        while True:
            with self.lock:
                if self.next >= len(self.inputs):
                    return
                index = self.next
                self.next += 1
            self._one(index, self.inputs[index])

    def run(self) -> float:
        started = time.monotonic()
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - started


def normal_request_seconds(host: str, port: int, clip: bytes) -> tuple[int, float]:
    start = time.monotonic()
    try:
        status = request(host, port, "POST", "/v1/liveness", clip, {"Content-Type": "video/mp4"}, timeout=10)[0]
    except (OSError, http.client.HTTPException):
        status = 0
    return status, time.monotonic() - start


def fuzz_daemon(host: str, port: int, pid: int, inputs: list[Input], clients: int, warm: list[Input],
                rss_tolerance: float = 0.10, warm_rounds: int = 2, settle: float = SETTLE) -> dict:
    """Warm the daemon with ``warm`` (``warm_rounds`` times), fuzz, then check liveness, responsiveness and memory
    (RSS read after ``settle`` idle seconds)."""
    for _ in range(warm_rounds):
        FuzzRun(host, port, pid, warm, clients).run()
    normal = warm[0].body
    normal_request_seconds(host, port, normal)
    time.sleep(settle)
    warm_rss = rss_kb(pid)
    run = FuzzRun(host, port, pid, inputs, clients)
    wall = run.run()
    status, seconds = normal_request_seconds(host, port, normal)
    time.sleep(settle)
    after_rss = rss_kb(pid)
    return {
        "inputs": len(inputs), "clients": clients, "wall_sec": round(wall, 1),
        "by_status": dict(sorted(run.by_status.items())), "by_code": dict(sorted(run.by_code.items())),
        "failures": run.failures[:30], "failure_count": len(run.failures),
        "slowest": {"sec": round(run.slowest[0], 2), "input": run.slowest[1]},
        "normal_after": {"status": status, "sec": round(seconds, 2)},
        "rss_kib": {"warm": warm_rss, "after": after_rss},
        "rss_change": round(after_rss / max(1, warm_rss) - 1, 4),
        "rss_tolerance": rss_tolerance,
    }


def print_report(report: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"fuzz: {report['inputs']} inputs from {report['clients']} clients in {report['wall_sec']} s", file=out)
    print("  by status: " + ", ".join(f"{k}: {v}" for k, v in report["by_status"].items()), file=out)
    print("  by status and code:", file=out)
    for key, count in report["by_code"].items():
        print(f"    {key}: {count}", file=out)
    print(f"  slowest: {report['slowest']['sec']} s ({report['slowest']['input']})", file=out)
    normal = report["normal_after"]
    print(f"  normal request afterwards: {normal['status']} in {normal['sec']} s", file=out)
    rss = report["rss_kib"]
    print(f"  RSS: warm {rss['warm'] / 1024:.1f} MiB, after {rss['after'] / 1024:.1f} MiB "
          f"({100 * report['rss_change']:+.2f} %)", file=out)
    print(f"  rule violations (5xx, malformed body, no answer): {report['failure_count']}", file=out)
    for line in report["failures"]:
        print(f"    {line}", file=out)


def ok(report: dict, alive: bool) -> bool:
    return (alive and report["failure_count"] == 0 and report["normal_after"]["status"] == 200
            and report["normal_after"]["sec"] < 5 and abs(report["rss_change"]) <= report["rss_tolerance"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--no-shared", action="store_true", help="do not use ../shared/data even if present")
    args = parser.parse_args(argv)

    from conftest import Daemon, write_config

    seeds = synthetic_seeds()
    real = [] if args.no_shared else shared_seeds()
    print(f"seeds: {len(seeds)} synthetic, {len(real)} real from ../shared/data")
    inputs = generate(args.inputs, args.seed, seeds + real)
    with tempfile.TemporaryDirectory(prefix="liveness-edge-fuzz-") as tmp:
        daemon = Daemon(write_config(Path(tmp)))
        try:
            host, port = daemon.url.split("//")[1].split(":")
            report = fuzz_daemon(host, int(port), daemon.proc.pid, inputs, args.clients, warm=seeds + real)
            alive = daemon.proc.poll() is None
        finally:
            daemon.stop()
    print_report(report)
    print(f"  daemon alive afterwards: {alive}")
    return 0 if ok(report, alive) else 1


if __name__ == "__main__":
    sys.exit(main())
