import json
import signal
import subprocess
import sys

import pytest

from conftest import Daemon, write_config
from media import ROOT, face_clip


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "liveness_edge", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_config_check_accepts_the_shipped_config():
    result = run_cli("config-check", "config/liveness-edge.ini")
    assert result.returncode == 0 and "OK" in result.stdout


def test_config_check_names_the_bad_key(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("listen: :18301\nlimits:\n  video-fsp: 30\n")
    result = run_cli("config-check", str(bad))
    assert result.returncode == 2
    assert "limits.video-fsp" in result.stderr and "did you mean 'video-fps'" in result.stderr
    assert "Traceback" not in result.stderr


# A findface-liveness-api config as NtechLab documents it (FindFace Security 4.3), upstream URLs included.
FINDFACE_CONFIG = """listen: :18301
liveness-threshold: 0.75
fullframe-jpeg-quality: 75
max-decoded-frames: 30
min-selected-frames: 10

extraction-api:
  request-batch-size: 16
  timeouts:
    connect: 5s
    response_header: 30s
    overall: 35s
    idle_connection: 10s
  extraction-api: http://127.0.0.1:18666

sf-api:
  timeouts:
    connect: 5s
    response_header: 30s
    overall: 35s
    idle_connection: 10s
  sf-api: http://127.0.0.1:18411

limits:
  video-size: 10485760
  video-length-sec: 60
  video-fps: 30
  video-width-px: 1920
  video-height-px: 1080
"""


def test_a_findface_config_is_accepted_with_the_unused_urls_named(tmp_path):
    config = tmp_path / "findface-liveness-api.ini"
    config.write_text(FINDFACE_CONFIG)
    result = run_cli("config-check", str(config))
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"warning: {config}:14: extraction-api.extraction-api: 'http://127.0.0.1:18666'")
    assert warnings[1].startswith(f"warning: {config}:22: sf-api.sf-api: 'http://127.0.0.1:18411' is not used")
    assert "GET /v1/detections/{id}" in warnings[1]


def test_serve_refuses_a_bad_config_with_one_line(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("min-selected-frames: 50\n")
    result = run_cli("--config", str(bad), "serve")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "min-selected-frames" in result.stderr


def test_check_prints_the_same_json_as_the_daemon(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(face_clip(frames=12))
    config = write_config(tmp_path)
    result = run_cli("--config", str(config), "check", str(clip))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["file"] == str(clip) and set(out) == {"file", "alive", "average_liveness", "best_face"}
    d = Daemon(config)
    try:
        status, _, body = d.post_clip(clip.read_bytes())
    finally:
        d.stop()
    assert status == 200
    assert body["average_liveness"] == pytest.approx(out["average_liveness"], abs=1e-6)
    assert body["best_face"] == out["best_face"]


def test_check_reports_errors_and_exits_1(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    result = run_cli("--config", str(write_config(tmp_path)), "check", str(bad))
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "BAD_VIDEO"


def test_version_and_models():
    assert run_cli("version").stdout.startswith("liveness-edge ")
    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {m["role"] for m in report["models"]} == {"detector", "landmarks", "liveness"}
    assert all(m["warm_invoke_ms"] > 0 for m in report["models"])


def test_sigterm_exits_zero_and_detections_survive_restart(tmp_path):
    config = write_config(tmp_path)
    d = Daemon(config)
    status, _, body = d.post_clip(face_clip(frames=12), "return_detection=true")
    assert status == 200
    ident = body["best_face"]["detection_id"]
    assert d.stop(signal.SIGTERM) == 0
    assert any("stopped" in line for line in d.lines)
    again = Daemon(config)
    try:
        status, _, stored = again.request("GET", f"/v1/detections/{ident}")
    finally:
        again.stop()
    assert status == 200 and stored["id"] == ident


def test_corrupt_model_is_refused_naming_the_file(tmp_path):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(ROOT / "models" / "tflite", models)
    for victim in models.glob("face_landmark*.tflite"):  # whichever variant the runtime picks
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    config = write_config(tmp_path, f'dir: "{models}"')
    result = run_cli("--config", str(config), "serve")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("liveness-edge:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
    assert "face_landmark" in errors[0] and "sha256" in errors[0]


def test_config_is_accepted_before_or_after_the_command(tmp_path):
    config = tmp_path / "c.ini"
    config.write_text("max-decoded-frames: 7\nmin-selected-frames: 3\n")
    for args in (("--config", str(config), "config-check"), ("config-check", "--config", str(config))):
        result = run_cli(*args)
        assert result.returncode == 0 and str(config) in result.stdout, (args, result.stderr)
    from liveness_edge.cli import build_parser

    assert build_parser().parse_args(["serve", "--config", "x.ini"]).config == "x.ini"
    assert build_parser().parse_args(["--config", "y.ini", "serve"]).config == "y.ini"
    assert build_parser().parse_args(["serve"]).config is None


def test_make_run_command_line_parses():
    """`make run` is `liveness-edge serve --config config/liveness-edge.ini`: it must parse."""
    import re

    from liveness_edge.cli import build_parser

    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if "liveness-edge serve" in l)
    args = re.search(r"liveness-edge (serve.*)$", line).group(1).split()
    assert build_parser().parse_args(args).config == "config/liveness-edge.ini"
