"""`make bench`: the per-request cost against the unavoidable work, on this machine, in one run.

Prints a table and writes bench/results.json. These machines are noisy, so every figure is the median of >= 5 runs
(7 by default) with min and max, and the targets are ratios of figures measured back to back in the same run:
- floor: bare PyAV decode of exactly the frames the pipeline needs (no colour conversion) plus bare LiteRT invokes of
  the detector and the liveness model on the same number of inputs;
- offline: the pipeline in-process (what `liveness-edge check` runs), with its per-stage breakdown;
- end to end: the daemon over HTTP on loopback;
- the CLI: `liveness-edge check` as a command, model loading included;
- memory: daemon RSS idle and its peak under 8 concurrent 1080p requests; time from process start to ready;
- model variants: float32 vs int8 invoke time on this CPU.
Synthetic clips (a real face photo moving over a textured background) are generated into .cache/bench; the real clips
in ../shared/data are used in place when present.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from daemon import Daemon  # noqa: E402
from media import SHARED_DATA, astronaut_rgb  # noqa: E402

from liveness_edge.config import load_config  # noqa: E402
from liveness_edge.http.app import result_json  # noqa: E402
from liveness_edge.models import load_models, read_manifest  # noqa: E402
from liveness_edge.pipeline import Options, Pipeline  # noqa: E402
from liveness_edge.runtime import Model, choose_backend  # noqa: E402
from tools.load import rss_kb  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
OUT = ROOT / "bench" / "results.json"
# The Silent-Face pipeline (RetinaFace + two MiniFASNets, PyTorch, models loaded once), as measured on this machine
# kind for the performance issue: it is not installable here without PyTorch's CUDA build, so these are quoted.
PEER = {"name": "Silent-Face-Anti-Spoofing (PyTorch)", "clip_1080p_30f_ms": 1500.0, "rss_mb": 415.0}


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


# --------------------------------------------------------------------------------------------------------------------
# Clips


def synthetic_clip(path: Path, width: int, height: int, seconds: float, fps: int = 30, codec: str = "libx264",
                   container: str = "mp4") -> Path:
    """A face moving over a textured background: cheap to make, realistic enough for the decoder and detector."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    background = cv2.resize(rng.integers(40, 200, (height // 8, width // 8, 3), dtype=np.uint8), (width, height),
                            interpolation=cv2.INTER_CUBIC)
    face_px = int(min(width, height) * 0.45)
    portrait = cv2.resize(astronaut_rgb()[0:300, 120:370], (face_px * 250 // 300, face_px))
    frames = int(seconds * fps)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "30"}  # 60 s of 1080p must fit limits.video-size
        else:
            stream.bit_rate = 1_000_000
        for i in range(frames):
            canvas = background.copy()
            ph, pw = portrait.shape[:2]
            x = (width - pw) // 2 + int(width * 0.05 * np.sin(i / 15))
            y = (height - ph) // 2 + int(height * 0.03 * np.cos(i / 11))
            canvas[y : y + ph, x : x + pw] = portrait
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def bench_clips() -> dict[str, Path]:
    clips = {
        "720p-2s": synthetic_clip(CACHE / "720p_2s.mp4", 1280, 720, 2),
        "1080p-2s": synthetic_clip(CACHE / "1080p_2s.mp4", 1920, 1080, 2),
        "1080p-60s": synthetic_clip(CACHE / "1080p_60s.mp4", 1920, 1080, 59.9),
        "720p-vp8": synthetic_clip(CACHE / "720p_vp8.webm", 1280, 720, 2, codec="libvpx", container="webm"),
    }
    if (SHARED_DATA / "labels.csv").exists():
        clips["real-zalo-1080x1920"] = SHARED_DATA / "live" / "nhtlongcs_zalo_train_2_live.mp4"
        clips["real-webcam-vp8"] = SHARED_DATA / "live" / "zubaircrackscode_real.webm"
    return clips


# --------------------------------------------------------------------------------------------------------------------
# Floor


def decode_floor(data: bytes, frames: int) -> float:
    start = time.perf_counter()
    with av.open(io.BytesIO(data)) as container:
        n = 0
        for _ in container.decode(video=0):
            n += 1
            if n >= frames:
                break
    return time.perf_counter() - start


def invoke_floor(model: Model, count: int) -> float:
    x = np.zeros((1, *model.inputs[0].shape[1:]), np.float32)
    model.run(x)
    start = time.perf_counter()
    for _ in range(count):
        model.run(x)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------------------------------
# Daemon


def post_timed(daemon: Daemon, data: bytes, content_type: str) -> tuple[int, float]:
    """(status, seconds) of one clip posted to the daemon, the answer read."""
    start = time.perf_counter()
    status, _, _ = daemon.post_clip(data, content_type=content_type, timeout=120)
    return status, time.perf_counter() - start


def rss_mb(daemon: Daemon, field: str = "VmRSS") -> float:
    return rss_kb(daemon.proc.pid, field) / 1024


def bench_config(directory: Path) -> Path:
    text = (ROOT / "config" / "liveness-edge.ini").read_text()
    text = re.sub(r"^listen: .*$", "listen: 127.0.0.1:0", text, flags=re.M)
    text = re.sub(r"^state-dir: .*$", f'state-dir: "{directory / "state"}"', text, flags=re.M)
    # Room for 8 concurrent clients: enough HTTP workers and queue that the burst is served, not shed.
    text = re.sub(r"^(\s*)workers: .*$", r"\1workers: 10", text, flags=re.M)
    text = re.sub(r"^(\s*)queue: .*$", r"\1queue: 8", text, flags=re.M)
    path = directory / "bench.ini"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------------------------------


def bench_clip(path: Path, pipeline: Pipeline, daemon: Daemon, det: Model, live: Model, need: int,
               runs: int) -> dict:
    data = path.read_bytes()
    ctype = "video/webm" if path.suffix == ".webm" else "video/mp4"
    pipeline.run(data, Options())
    post_timed(daemon, data, ctype)  # warm: the first request builds buffers
    floors, offline, http, stages = [], [], [], []
    for _ in range(runs):
        floors.append(decode_floor(data, need) + invoke_floor(det, need) + invoke_floor(live, need))
        start = time.perf_counter()
        result = pipeline.run(data, Options())
        offline.append(time.perf_counter() - start)
        stages.append({**result.stage_seconds,
                       **{f"thread_{k}": v for k, v in result.decode_thread_seconds.items()}})
        status, seconds = post_timed(daemon, data, ctype)
        http.append(seconds)
    decode_only = stats([decode_floor(data, need) * 1000 for _ in range(runs)])
    # Encoding is paid only when asked: one more run with every flag, and the JSON answer's serialization.
    full = pipeline.run(data, Options(return_photo=True, return_normalized=True))
    start = time.perf_counter()
    json.dumps(result_json(full))
    json_ms = (time.perf_counter() - start) * 1000
    breakdown = {k: statistics.median(s.get(k, 0.0) for s in stages) * 1000 for k in stages[0]}
    breakdown["encode_photo_png"] = full.stage_seconds.get("encode", 0.0) * 1000
    breakdown["json"] = json_ms
    return {"file": str(path), "bytes": len(data), "frames": result.frames_decoded,
            "floor_ms": stats([f * 1000 for f in floors]), "decode_only_ms": decode_only,
            "offline_ms": stats([o * 1000 for o in offline]), "http_ms": stats([h * 1000 for h in http]),
            "http_status": status, "http_over_floor": stats([h / f for h, f in zip(http, floors)]),
            "stages_ms": breakdown}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = max(5, args.runs)
    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    models = load_models(cfg)
    pipeline = Pipeline(cfg, models)
    need = cfg.max_decoded_frames
    results: dict = {"machine": {"cpus": os.cpu_count(), "machine": platform.machine(),
                                 "python": platform.python_version(), "processor": platform.processor()},
                     "config": {"max_decoded_frames": need, "detector": cfg.models.detector,
                                "liveness": cfg.models.liveness, "threads": cfg.runtime.threads},
                     "clips": {}, "models": {}, "peer": PEER}
    print(f"liveness-edge bench: {os.cpu_count()} CPUs, {platform.machine()}, {runs} runs each, "
          f"{need} frames per clip\n")

    # Model variants: float32 vs int8 on this CPU.
    manifest = read_manifest(cfg.models.dir)
    backend = choose_backend("cpu", cfg.runtime.threads)
    for name, entry in sorted(manifest["models"].items()):
        row = {}
        for variant, spec in entry["variants"].items():
            model = Model(cfg.models.dir / spec["file"], backend)
            row[variant] = stats([invoke_floor(model, 50) * 1000 / 50 for _ in range(runs)])
        results["models"][name] = row
    print(f"{'model':28} {'float32 ms':>11} {'int8 ms':>9} {'int8/float':>10}")
    for name, row in results["models"].items():
        f32 = row.get("float32", {}).get("median")
        i8 = row.get("int8", {}).get("median")
        ratio = f"{i8 / f32:.2f}" if f32 and i8 else "-"
        print(f"{name:28} {f32 or 0:11.2f} {(i8 or 0):9.2f} {ratio:>10}" if i8 else f"{name:28} {f32:11.2f} "
              f"{'-':>9} {'-':>10}")
    print()

    # Per clip and per run: floor, offline and HTTP back to back, so a slow spell of this shared machine hits all
    # three alike; the ratios are the medians of the per-run ratios.
    det, live = models.detector.model, models.liveness.model
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(bench_config(Path(tmp)))
        try:
            results["ready_seconds"] = daemon.ready_seconds
            time.sleep(1.0)
            results["rss_idle_mb"] = rss_mb(daemon)
            for label, path in bench_clips().items():
                results["clips"][label] = bench_clip(path, pipeline, daemon, det, live, need, runs)
            # 60 s vs 2 s: the two posted back to back in every run, so the ratio does not carry the drift between
            # the two clips' blocks above.
            short, long_ = (CACHE / "1080p_2s.mp4").read_bytes(), (CACHE / "1080p_60s.mp4").read_bytes()
            # (a pair's ratio swings 0.8-1.3 on this VM, so more pairs than the other figures' runs)
            pairs = [(post_timed(daemon, short, "video/mp4")[1], post_timed(daemon, long_, "video/mp4")[1])
                     for _ in range(max(runs, 15))]
            results["long_over_short"] = stats([b / a for a, b in pairs])
            # One request at a time, as the peer's figure was taken: the daemon's peak RSS (high-water mark) so far.
            results["rss_one_stream_mb"] = rss_mb(daemon, "VmHWM")
            peak = [rss_mb(daemon)]
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(post_timed, daemon, short, "video/mp4") for _ in range(16)]
                while not all(f.done() for f in futures):
                    peak.append(rss_mb(daemon))
                    time.sleep(0.02)
                statuses = [f.result()[0] for f in futures]
            results["rss_peak_8x1080p_mb"] = max(max(peak), rss_mb(daemon, "VmHWM"))
            results["concurrent_statuses"] = {str(s): statuses.count(s) for s in sorted(set(statuses))}
            four_k = synthetic_clip(CACHE / "2160p_1s.mp4", 3840, 2160, 1)
            refusals = []
            for _ in range(runs):
                status, seconds = post_timed(daemon, four_k.read_bytes(), "video/mp4")
                refusals.append(seconds * 1000)
            results["refuse_4k_ms"] = stats(refusals)
            results["refuse_4k_status"] = status
        finally:
            daemon.stop()

    # The CLI, model loading included.
    cli_times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "liveness_edge", "check", str(CACHE / "1080p_2s.mp4")], cwd=ROOT,
                       capture_output=True, check=False)
        cli_times.append((time.perf_counter() - start) * 1000)
    results["cli_check_1080p_ms"] = stats(cli_times)

    report(results)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {OUT.relative_to(ROOT)}")
    return 0


def report(results: dict) -> None:
    print(f"{'clip':22} {'floor ms':>9} {'offline ms':>11} {'http ms':>9} {'http/floor':>10}   stages (offline, ms)")
    for label, row in results["clips"].items():
        floor, http, off = row["floor_ms"]["median"], row["http_ms"]["median"], row["offline_ms"]["median"]
        stages = " ".join(f"{k}={v:.0f}" for k, v in row["stages_ms"].items() if v >= 0.5)
        print(f"{label:22} {floor:9.0f} {off:11.0f} {http:9.0f} {row['http_over_floor']['median']:10.2f}   {stages}")
        print(f"{'':22} min/max http {row['http_ms']['min']:.0f}/{row['http_ms']['max']:.0f} ms, "
              f"decode-only {row['decode_only_ms']['median']:.0f} ms, {row['frames']} frames, {row['bytes']} bytes")
    clips = results["clips"]
    long_ratio = results["long_over_short"]["median"]
    hd_ratio = clips["1080p-2s"]["http_over_floor"]["median"]
    sd_ratio = clips["720p-2s"]["http_over_floor"]["median"]
    peer = results["peer"]
    targets = [
        ("1080p 30 frames, http / floor", hd_ratio, "<= 1.3"),
        ("720p 30 frames, http / floor", sd_ratio, "<= 1.5"),
        ("60 s clip / 2 s clip (1080p, posted in pairs)", long_ratio, "<= 1.1"),
        ("idle RSS MB", results["rss_idle_mb"], "<= 120"),
        ("peak RSS MB, 8 concurrent 1080p", results["rss_peak_8x1080p_mb"], "<= 300"),
        ("start to ready s", results["ready_seconds"], "<= 1.5"),
        ("4K refusal ms", results["refuse_4k_ms"]["median"], f"(status {results['refuse_4k_status']})"),
        ("speed-up vs Silent-Face 1080p clip", peer["clip_1080p_30f_ms"] / clips["1080p-2s"]["http_ms"]["median"],
         ">= 5 (peer figure quoted)"),
        ("peak RSS MB, every clip one at a time", results["rss_one_stream_mb"], ""),
        ("memory vs Silent-Face, idle", results["rss_idle_mb"] / peer["rss_mb"], "<= 0.25 (peer figure quoted)"),
        ("memory vs Silent-Face, one stream", results["rss_one_stream_mb"] / peer["rss_mb"], "<= 0.25"),
        ("memory vs Silent-Face, 8 concurrent", results["rss_peak_8x1080p_mb"] / peer["rss_mb"], "(peer: one stream)"),
        ("`liveness-edge check` 1080p, whole command ms", results["cli_check_1080p_ms"]["median"], ""),
    ]
    results["targets"] = {name: {"value": value, "target": target} for name, value, target in targets}
    print()
    for name, value, target in targets:
        print(f"{name:48} {value:9.2f}  {target}")
    print(f"concurrent statuses: {results['concurrent_statuses']}")


if __name__ == "__main__":
    raise SystemExit(main())
