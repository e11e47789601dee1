"""Issue 5, faults and lifecycle, against real daemons: SIGTERM drain, systemd notifications, start-up failures."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Daemon, wait_for, write_config
from media import ROOT, encode, face_frames


def addr(daemon: Daemon) -> tuple[str, int]:
    host, port = daemon.url.split("//")[1].split(":")
    return host, int(port)


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


@pytest.fixture(scope="module")
def slow_clip() -> bytes:
    """30 frames of 1080p: the slowest clip the default limits allow, about a second of work on 2 cores."""
    return encode(face_frames(30, 1920, 1080, face_px=500))


def test_sigterm_drains_in_flight_requests_then_exits_zero(tmp_path, slow_clip):
    d = Daemon(write_config(tmp_path))
    host, port = addr(d)
    keep_alive = http.client.HTTPConnection(host, port, timeout=30)
    keep_alive.request("GET", "/health")
    first = keep_alive.getresponse()
    assert first.status == 200 and json.loads(first.read())["status"] == "ok"
    result = {}

    def slow():
        result["answer"] = d.post_clip(slow_clip, "return_photo=true")

    client = threading.Thread(target=slow)
    client.start()
    assert wait_for(lambda: _in_flight(d) >= 1, 10)
    d.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: refused(host, port), 5), "still accepting new connections after SIGTERM"
    keep_alive.request("GET", "/health")  # an already open connection is still served while draining
    during = keep_alive.getresponse()
    body = json.loads(during.read())
    keep_alive.close()
    assert during.status == 503 and body["status"] == "draining"
    client.join(60)
    status, _, answer = result["answer"]
    assert status == 200 and "alive" in answer, answer
    assert d.proc.wait(30) == 0
    time.sleep(0.3)
    text = "\n".join(d.lines)
    assert "draining" in text and "stopped" in text and "Traceback" not in text, text


def _in_flight(d: Daemon) -> float:
    status, _, text = d.request("GET", "/metrics", timeout=5)
    for line in text.decode().splitlines():
        if line.startswith("liveness_edge_in_flight "):
            return float(line.split()[1])
    return 0.0


def test_drain_timeout_abandons_what_is_still_running_and_still_exits_zero(tmp_path, slow_clip):
    d = Daemon(write_config(tmp_path, "drain-timeout: 1ms"))
    for _ in range(3):  # two clips at once and one queued: something is still running 1 ms into the drain
        threading.Thread(target=lambda: d.post_clip(slow_clip), daemon=True).start()
    assert wait_for(lambda: _in_flight(d) >= 2, 10)
    start = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    assert time.monotonic() - start < 5
    time.sleep(0.3)
    text = "\n".join(d.lines)
    assert "abandoned" in text and "stopped" in text, text
    assert "Traceback" not in text, text


# -- systemd notification ----------------------------------------------------------------------------------------------


def test_systemd_ready_watchdog_and_stopping(tmp_path):
    path = tmp_path / "notify.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(path))
    sink.settimeout(0.2)
    messages: list[tuple[float, str, int | None]] = []  # (time, message, /health status right after READY)
    stop = threading.Event()
    ports: list[int] = []

    def collect():
        while not stop.is_set():
            try:
                data = sink.recv(4096).decode()
            except socket.timeout:
                continue
            health = None
            if "READY=1" in data:  # at READY the daemon must already answer: models loaded, socket bound
                assert wait_for(lambda: bool(ports), 10)
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=5)
                    conn.request("GET", "/health")
                    health = conn.getresponse().status
                except OSError:
                    health = -1
            messages.append((time.monotonic(), data, health))

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        started = time.monotonic()
        d = Daemon(write_config(tmp_path), env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        ports.append(addr(d)[1])
        time.sleep(2.6)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0
        time.sleep(0.3)
    finally:
        stop.set()
        collector.join()
        sink.close()
    texts = [m for _, m, _ in messages]
    ready = [i for i, m in enumerate(texts) if "READY=1" in m]
    assert len(ready) == 1, texts
    assert messages[ready[0]][2] == 200, "READY=1 was sent before the daemon could answer /health"
    assert messages[ready[0]][0] - started > 0.1
    pings = [i for i, m in enumerate(texts) if m.strip() == "WATCHDOG=1"]
    assert len(pings) >= 3, texts  # every half period (0.5 s) for 2.6 s
    assert all(i > ready[0] for i in pings)
    stopping = [i for i, m in enumerate(texts) if "STOPPING=1" in m]
    assert len(stopping) == 1 and stopping[0] > max(pings), texts


def test_no_watchdog_pings_without_watchdog_usec(tmp_path):
    path = tmp_path / "notify.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(path))
    sink.settimeout(2)
    d = Daemon(write_config(tmp_path), env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": ""})
    try:
        assert "READY=1" in sink.recv(4096).decode()
        sink.settimeout(1.2)
        with pytest.raises(socket.timeout):
            sink.recv(4096)
    finally:
        d.stop()
        sink.close()


# -- start-up failures: exit 2 (75 when waiting may help), one line naming the file and the problem -------------------


def serve(config) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liveness_edge", "--config", str(config), "serve"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def assert_one_line_failure(result: subprocess.CompletedProcess, *needles: str, code: int = 2):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("liveness-edge: ")]
    assert len(ours) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == ours[0]  # the last thing printed
    for needle in needles:
        assert needle in ours[0], (needle, ours[0])


@pytest.fixture
def models_copy(tmp_path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(ROOT / "models" / "tflite", target)
    return target


def test_missing_model_file(tmp_path, models_copy):
    for victim in models_copy.glob("face_landmark*.tflite"):
        victim.unlink()
    result = serve(write_config(tmp_path, f'dir: "{models_copy}"'))
    assert_one_line_failure(result, "face_landmark", "missing")


def test_model_file_that_is_a_directory(tmp_path, models_copy):
    for victim in models_copy.glob("face_landmark*.tflite"):
        victim.unlink()
        victim.mkdir()
    result = serve(write_config(tmp_path, f'dir: "{models_copy}"'))
    assert_one_line_failure(result, "face_landmark")


def test_missing_manifest(tmp_path, models_copy):
    (models_copy / "manifest.json").unlink()
    result = serve(write_config(tmp_path, f'dir: "{models_copy}"'))
    assert_one_line_failure(result, "manifest.json", "missing")


def test_corrupt_manifest(tmp_path, models_copy):
    manifest = models_copy / "manifest.json"
    manifest.write_text(manifest.read_text()[:200])
    result = serve(write_config(tmp_path, f'dir: "{models_copy}"'))
    assert_one_line_failure(result, "manifest.json")


def test_config_path_is_a_directory(tmp_path):
    result = serve(tmp_path)
    assert_one_line_failure(result, str(tmp_path), "directory")


def test_missing_config(tmp_path):
    result = serve(tmp_path / "nope.ini")
    assert_one_line_failure(result, "nope.ini", "No such file")


def test_config_that_is_not_text(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_bytes(b"\xff\xfe\x00\x01 listen: :1\n")
    assert_one_line_failure(serve(bad), "bad.ini", "UTF-8")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway (the directory case covers EISDIR)")
def test_unreadable_config(tmp_path):
    config = write_config(tmp_path)
    config.chmod(0)
    assert_one_line_failure(serve(config), config.name, "Permission denied")


def test_missing_token_file(tmp_path):
    result = serve(write_config(tmp_path, f'token-file: "{tmp_path / "token"}"'))
    assert_one_line_failure(result, "auth.token-file", str(tmp_path / "token"))


def test_short_token_is_refused(tmp_path):
    (tmp_path / "token").write_text("short\n")
    result = serve(write_config(tmp_path, f'token-file: "{tmp_path / "token"}"'))
    assert_one_line_failure(result, "auth.token-file", "at least 16")


def test_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = serve(write_config(tmp_path, listen=f"127.0.0.1:{port}"))
    # 75 (EX_TEMPFAIL), not 2: the unit restarts it, since an address that is taken or not up yet at boot frees up
    assert_one_line_failure(result, f"127.0.0.1:{port}", "cannot bind", code=75)


def test_watchdog_withholds_pings_when_the_loop_stalls_or_a_worker_is_stuck():
    """Runner.watchdog_ok on a stand-in service: the HTTP side of this is the sd_notify test above."""
    from types import SimpleNamespace

    from liveness_edge.http import server

    class FakeService:
        cfg = SimpleNamespace(server=SimpleNamespace(read_timeout=30.0))
        oldest = 0.0

        def oldest_handler_seconds(self, now):
            return self.oldest

    service = FakeService()
    runner = server.Runner.__new__(server.Runner)
    runner.service, runner.last_tick, runner._stuck_logged = service, 100.0, False
    assert runner.watchdog_ok(100.2, period=1.0)
    assert not runner.watchdog_ok(100.6, period=1.0)  # the loop has not turned for over half a period
    service.oldest = 30.0 + server.STUCK_GRACE - 1
    assert runner.watchdog_ok(100.1, period=1.0)  # a long request, not yet a stuck one
    service.oldest = 30.0 + server.STUCK_GRACE + 1
    assert not runner.watchdog_ok(100.1, period=1.0)
    service.oldest = 0.0
    assert runner.watchdog_ok(100.1, period=1.0)
