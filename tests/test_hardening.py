"""Issue 5 (service hardening) against real daemons: admission, body limits, slow clients, header and query abuse,
auth, metrics and access logs."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse

import pytest

from conftest import Daemon, wait_for, write_config
from media import blank_frames, encode, face_frames
from tools.load import parse_reply, raw, request

LIMIT = 400_000


def small_clip(frames: int = 12, seed: int = 0) -> bytes:
    return encode(face_frames(frames, 320, 240, face_px=160, seed=seed))


def addr(daemon: Daemon) -> tuple[str, int]:
    host, port = daemon.url.split("//")[1].split(":")
    return host, int(port)


def assert_json_error(status: int, body, expected_status: int, code: str):
    if isinstance(body, (bytes, str)):
        body = json.loads(body)
    assert status == expected_status, body
    assert {"code", "desc", "param"} <= set(body) and body["code"] == code, body


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """One clip at a time, no queue, a 2 s read timeout and a 400 kB body limit."""
    d = Daemon(write_config(tmp_path_factory.mktemp("tight"),
                            f"max-concurrent-requests: 1\nqueue: 0\nread-timeout: 2s\nvideo-size: {LIMIT}"))
    yield d
    d.stop()


# -- load and admission ------------------------------------------------------------------------------------------------


def test_burst_beyond_the_gate_is_shed_with_503_busy_and_health_stays_up(tight):
    clip = encode(face_frames(20, 640, 480, face_px=300))
    results: list[tuple[int, dict, object]] = []
    health: list[tuple[int, float]] = []
    burst_over = threading.Event()

    def client():
        results.append(tight.post_clip(clip))

    def prober():
        while not burst_over.is_set():
            start = time.monotonic()
            status, _, _ = tight.request("GET", "/health", timeout=10)
            health.append((status, time.monotonic() - start))
            time.sleep(0.05)

    probe = threading.Thread(target=prober)
    probe.start()
    clients = [threading.Thread(target=client) for _ in range(6)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    burst_over.set()
    probe.join()
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) == {200, 503}, statuses
    for status, headers, body in results:
        if status == 503:
            assert_json_error(status, body, 503, "BUSY")
            assert headers["Retry-After"] == "1"
        else:
            assert "alive" in body
    assert health and all(status == 200 for status, _ in health), health
    assert max(seconds for _, seconds in health) < 2.0, health
    status, _, _ = tight.post_clip(small_clip())  # the gate is open again afterwards
    assert status == 200


def test_content_length_over_the_limit_is_413_without_reading_the_body(tight):
    head = (f"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: {LIMIT + 1}\r\n\r\n").encode()
    start = time.monotonic()
    status, headers, body = parse_reply(raw(*addr(tight), head, timeout=5))
    assert time.monotonic() - start < 2  # answered at once: the body was never sent
    assert_json_error(status, body, 413, "VIDEO_TOO_LARGE")
    error = json.loads(body)
    assert error["desc"] == f"the request body is larger than limits.video-size ({LIMIT} bytes)"
    assert error["param"] == "limits.video-size"
    assert headers["connection"] == "close" and headers["x-request-id"]


def test_expect_100_continue_over_the_limit_gets_413_instead_of_continue(tight):
    # curl sends "Expect: 100-continue" before a large upload: it must read the 413 and never send the body.
    head = (f"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nExpect: 100-continue\r\n"
            f"Content-Length: {LIMIT + 1}\r\n\r\n").encode()
    start = time.monotonic()
    reply = raw(*addr(tight), head, timeout=5)
    assert time.monotonic() - start < 2 and b"100 Continue" not in reply
    status, _, body = parse_reply(reply)
    assert_json_error(status, body, 413, "VIDEO_TOO_LARGE")


def test_a_body_of_exactly_the_limit_is_read(tight):
    # limits.video-size is the largest body allowed: one of exactly that size is read and judged (not a clip: 400)
    head = (f"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nConnection: close\r\n"
            f"Content-Length: {LIMIT}\r\n\r\n").encode()
    status, _, body = parse_reply(raw(*addr(tight), head + b"\0" * LIMIT, timeout=10))
    assert_json_error(status, body, 400, "BAD_VIDEO")


def test_chunked_body_is_cut_off_at_the_limit(tight):
    host, port = addr(tight)
    chunk = b"\0" * 65536
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent, reply = 0, b""
        sock.settimeout(0.2)
        while sent < 4 * LIMIT:  # keep sending well past the limit unless the daemon answers and closes first
            try:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            except OSError:
                break
            try:
                got = sock.recv(65536)
                reply += got
                if not got or b"\r\n\r\n" in reply:
                    break
            except socket.timeout:
                pass
        sock.settimeout(5)
        try:
            while chunk_in := sock.recv(65536):
                reply += chunk_in
        except OSError:
            pass
    assert sent <= LIMIT + 2 * len(chunk)  # refused about when the limit was crossed, not after the whole body
    status, headers, body = parse_reply(reply)
    assert_json_error(status, body, 413, "VIDEO_TOO_LARGE")
    assert headers["connection"] == "close"


def test_a_chunked_body_within_the_limit_is_served(tight):
    clip = small_clip()
    data = (b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + b"%x\r\n" % len(clip) + clip + b"\r\n0\r\n\r\n")
    status, _, body = parse_reply(raw(*addr(tight), data, timeout=30))
    assert status == 200, body


def test_a_client_trickling_its_body_is_cut_off_and_others_are_served(tight):
    host, port = addr(tight)
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nContent-Length: 100000\r\n\r\n")
    start = time.monotonic()
    served_meanwhile = []
    closed_after = None
    reply = b""
    sock.settimeout(0.3)
    while time.monotonic() - start < 10:
        try:
            sock.sendall(b"x")  # one byte every 0.3 s: never idle long enough for a plain idle timeout
        except OSError:
            closed_after = time.monotonic() - start
            break
        try:
            got = sock.recv(4096)
            if not got:
                closed_after = time.monotonic() - start
                break
            reply += got
        except socket.timeout:
            pass
        except OSError:  # reset: the daemon closed with our trickled bytes unread
            closed_after = time.monotonic() - start
            break
        if len(served_meanwhile) < 2:
            served_meanwhile.append(tight.request("GET", "/health", timeout=5)[0])
    sock.close()
    assert closed_after is not None and 1.5 < closed_after < 5, closed_after
    assert served_meanwhile == [200, 200]
    if reply:  # the 408 usually arrives before the close
        status, _, body = parse_reply(reply)
        assert_json_error(status, body, 408, "REQUEST_TIMEOUT")


def test_an_idle_connection_is_closed_after_the_read_timeout(tight):
    host, port = addr(tight)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        start = time.monotonic()
        while sock.recv(4096):
            pass
        assert time.monotonic() - start < 6


# -- crafted files: the limits hold whatever the container claims ------------------------------------------------------


def _remux(data: bytes, fmt: str, in_fmt: str | None = None) -> bytes:
    import io

    import av

    out = io.BytesIO()
    with av.open(io.BytesIO(data), format=in_fmt) as src, av.open(out, "w", format=fmt) as dst:
        stream = src.streams.video[0]
        ostream = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None and packet.size == 0:
                continue
            packet.stream = ostream
            dst.mux(packet)
    return out.getvalue()


def test_frames_bigger_than_the_header_says_are_refused_while_decoding(daemon):
    """Raw H.264 whose first SPS says 320x240 and whose later frames are 2560x1440."""
    small = encode(face_frames(12, 320, 240, face_px=160), container="h264")
    big = encode(blank_frames(3, 2560, 1440), container="h264")
    status, _, body = daemon.post_clip(small + big, content_type="application/octet-stream")
    assert_json_error(status, body, 422, "VIDEO_LIMITS_EXCEEDED")
    assert body["param"] == "limits.video-width-px"


def _jumping_ts(last_pts: int, frames: int = 12, step: int = 1, rate: int = 30) -> bytes:
    """MPEG-TS (no duration in any header) whose frames are ``step`` ticks of 1/rate apart, the last at last_pts."""
    import io
    from fractions import Fraction

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = Fraction(1, rate)
        for i, image in enumerate(blank_frames(frames, 160, 120)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = (i * step if i < frames - 1 else last_pts), Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def test_ten_thousand_fps_is_refused_from_metadata_and_from_timestamps(daemon):
    from fractions import Fraction

    declared = encode(blank_frames(12, 160, 120), fps=10000, time_base=Fraction(1, 10000), pts_step=1)
    status, _, body = daemon.post_clip(declared)
    assert_json_error(status, body, 422, "VIDEO_LIMITS_EXCEEDED")
    assert body["param"] == "limits.video-fps" and "exceeds the limit" in body["desc"]  # from the stream metadata
    # Matroska keeps no frame rate; the timestamps 1/10000 s apart give it away while decoding.
    lying = encode(blank_frames(12, 160, 120), time_base=Fraction(1, 10000), pts_step=1, container="matroska")
    status, _, body = daemon.post_clip(lying, content_type="video/x-matroska")
    assert_json_error(status, body, 422, "VIDEO_LIMITS_EXCEEDED")
    assert body["param"] == "limits.video-fps" and "timestamps show" in body["desc"]


def test_a_ten_hour_clip_is_refused_from_metadata_and_from_timestamps(daemon):
    from fractions import Fraction

    hourly = encode(blank_frames(12, 160, 120), fps=1, time_base=Fraction(1, 1), pts_step=3600, container="matroska")
    status, _, body = daemon.post_clip(hourly, content_type="video/x-matroska")
    assert_json_error(status, body, 422, "VIDEO_LIMITS_EXCEEDED")
    assert body["param"] == "limits.video-length-sec" and body["desc"].startswith("duration")
    # MPEG-TS carries no duration: 11 frames at 30 fps, then one 10 hours later, caught on that frame.
    status, _, body = daemon.post_clip(_jumping_ts(last_pts=30 * 36000), content_type="application/octet-stream")
    assert_json_error(status, body, 422, "VIDEO_LIMITS_EXCEEDED")
    assert body["param"] == "limits.video-length-sec" and body["desc"].startswith("frame at")


# -- query and header abuse --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query, param", [
    ("return_everything=true", "return_everything"),
    ("return_photo=true&return_photo=0", "return_photo"),
    ("&".join(["return_photo=true"] * 40), "query"),
    ("return_photo=" + "1" * 3000, "query"),
    ("return_photo=%00", "return_photo"),
    ("return_photo=true;return_normalized=true", "return_photo"),
])
def test_query_abuse_is_400_bad_param(tight, query, param):
    status, _, body = tight.post_clip(b"x", query)
    assert_json_error(status, body, 400, "BAD_PARAM")
    assert body["param"] == param


def test_repeated_identical_flags_are_fine(tight):
    status, _, body = tight.post_clip(small_clip(), "return_photo=true&return_photo=1")
    assert status == 200 and "photo" in body["best_face"]


@pytest.mark.parametrize("content_type", ["", "text/plain", "multipart/form-data; boundary=x", "video/mp4x",
                                          "image/jpeg", "\u00e9t\u00e9"])
def test_bad_content_type_is_415(tight, content_type):
    host, port = addr(tight)
    headers = {"Content-Type": content_type.encode("utf-8").decode("latin-1")} if content_type else {}
    status, _, body = request(host, port, "POST", "/v1/liveness", b"xx", headers)
    assert_json_error(status, body, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("expect", ["100-continue-please", "nothing", "200-ok"])
def test_bad_expect_is_417(tight, expect):
    status, headers, body = tight.post_clip(b"x", headers={"Expect": expect})
    assert_json_error(status, body, 417, "BAD_REQUEST")
    assert body["param"] == "Expect" and headers["X-Request-Id"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_on_liveness_are_405_with_allow(tight, method):
    status, headers, body = tight.request(method, "/v1/liveness")
    assert_json_error(status, body, 405, "METHOD_NOT_ALLOWED")
    assert headers["Allow"].split(",")[0].strip() == "POST"


@pytest.mark.parametrize("data, status, code", [
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n", 431, "HEADERS_TOO_LARGE"),
    (b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "BAD_REQUEST"),
    (b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "BAD_REQUEST"),
    (b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "BAD_REQUEST"),
    (b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 413, "VIDEO_TOO_LARGE"),
    (b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "BAD_REQUEST"),
    (b"NONSENSE\r\n\r\n", 400, "BAD_REQUEST"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n", 400, "BAD_REQUEST"),
])
def test_malformed_requests_get_json_errors(tight, data, status, code):
    got, headers, body = parse_reply(raw(*addr(tight), data, timeout=5))
    assert got == status, (got, body)
    parsed = json.loads(body)
    assert {"code", "desc", "param"} <= set(parsed)
    if code:
        assert parsed["code"] == code
    assert tight.request("GET", "/health")[0] == 200


# -- auth --------------------------------------------------------------------------------------------------------------

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def authed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("auth")
    (directory / "token").write_text(TOKEN + "\n")
    d = Daemon(write_config(directory, f'token-file: "{directory / "token"}"'))
    yield d
    d.stop()


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}",
                                           f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"])
@pytest.mark.parametrize("method, path", [("POST", "/v1/liveness"), ("GET", "/metrics"),
                                          ("GET", "/v1/detections/" + "0" * 32)])
def test_auth_refuses_missing_or_wrong_tokens(authed, authorization, method, path):
    headers = {"Content-Type": "video/mp4"}
    if authorization is not None:
        headers["Authorization"] = authorization
    status, hdrs, body = authed.request(method, path, b"x" if method == "POST" else None, headers)
    assert_json_error(status, body, 401, "UNAUTHORIZED")
    assert hdrs["WWW-Authenticate"].startswith("Bearer")


def test_auth_accepts_the_token_and_health_needs_none(authed):
    assert authed.request("GET", "/health")[0] == 200
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = authed.post_clip(small_clip(), "return_detection=true", headers=bearer)
    assert status == 200, body
    ident = body["best_face"]["detection_id"]
    assert authed.request("GET", f"/v1/detections/{ident}", headers=bearer)[0] == 200
    assert authed.request("GET", f"/v1/detections/{ident}")[0] == 401
    status, _, text = authed.request("GET", "/metrics", headers={"Authorization": f"bearer  {TOKEN}"})
    assert status == 200 and b"liveness_edge_requests_total" in text


# -- observability -----------------------------------------------------------------------------------------------------


def metric(text: str, name: str, **labels) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric_name, _, label_text = key.partition("{")
        if metric_name != name:
            continue
        got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if got == want:
            return float(value)
    return None


def test_metrics_families_have_sane_values_after_traffic(tmp_path):
    d = Daemon(write_config(tmp_path, "max-concurrent-requests: 1\nqueue: 0"))
    try:
        clip = small_clip()
        assert d.post_clip(clip, "return_photo=true&return_normalized=true")[0] == 200
        assert d.post_clip(clip)[0] == 200
        assert d.post_clip(encode(blank_frames(12, 160, 120)))[0] == 422
        assert d.post_clip(b"junk")[0] == 400
        assert d.request("GET", "/nope")[0] == 404
        host, port = addr(d)
        parse_reply(raw(host, port, b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"))
        big = encode(face_frames(20, 640, 480, face_px=300))
        threads = [threading.Thread(target=d.post_clip, args=(big,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status, _, text = d.request("GET", "/metrics")
        assert status == 200
        text = text.decode()
    finally:
        d.stop()
    assert metric(text, "liveness_edge_requests_total", endpoint="liveness", code="200") >= 3
    assert metric(text, "liveness_edge_requests_total", endpoint="liveness", code="422") == 1
    assert metric(text, "liveness_edge_requests_total", endpoint="liveness", code="400") == 1
    assert metric(text, "liveness_edge_requests_total", endpoint="other", code="404") == 1
    assert metric(text, "liveness_edge_requests_total", endpoint="other", code="413") == 1
    shed = metric(text, "liveness_edge_shed_total")
    assert shed >= 1 and metric(text, "liveness_edge_requests_total", endpoint="liveness", code="503") == shed
    ok = metric(text, "liveness_edge_requests_total", endpoint="liveness", code="200")
    for stage in ("decode", "detect", "liveness", "encode", "total"):
        count = metric(text, "liveness_edge_stage_seconds_count", stage=stage)
        total = metric(text, "liveness_edge_stage_seconds_sum", stage=stage)
        assert count is not None and count >= 1, stage
        assert 0 < total < 60 * count, stage
    assert metric(text, "liveness_edge_stage_seconds_count", stage="total") == ok
    decoded = metric(text, "liveness_edge_frames_total", outcome="decoded")
    selected = metric(text, "liveness_edge_frames_total", outcome="selected")
    no_face = metric(text, "liveness_edge_frames_total", outcome="no_face")
    assert selected >= 12 * ok and no_face == 12 and decoded >= selected + no_face
    alive = metric(text, "liveness_edge_decisions_total", alive="true") or 0
    not_alive = metric(text, "liveness_edge_decisions_total", alive="false") or 0
    assert alive + not_alive == ok
    assert metric(text, "liveness_edge_in_flight") == 0
    assert metric(text, "liveness_edge_cache_entries") == 0


def test_one_json_log_line_per_request_with_the_request_id(tight):
    before = len(tight.lines)
    tight.post_clip(b"x", headers={"X-Request-Id": "gate-3:req.17"})
    tight.post_clip(b"x", headers={"X-Request-Id": "bad id!" + "x" * 200})
    tight.request("GET", "/v1/detections/" + "f" * 32, headers={"X-Request-Id": "det-1"})
    assert wait_for(lambda: len(tight.lines) >= before + 3, 5)
    lines = [json.loads(line) for line in tight.lines[before:] if line.startswith("{")]
    assert len(lines) == len(tight.lines[before:]), tight.lines[before:]  # log.format: json: every line is JSON
    records = [r for r in lines if r["logger"] == "liveness_edge.access"]
    assert len(records) == 3, tight.lines[before:]
    first, second, third = records
    assert first["request_id"] == "gate-3:req.17" and first["status"] == 400 and first["error"] == "BAD_VIDEO"
    assert len(second["request_id"]) == 32 and second["request_id"] != "bad id!"
    assert third["request_id"] == "det-1" and third["status"] == 404 and third["endpoint"] == "detections"
    for record in records:
        assert {"request_id", "method", "path", "endpoint", "status", "ms", "remote"} <= set(record)
        assert record["path"].startswith("/v1/")


def test_request_id_is_echoed_on_every_kind_of_answer(tight):
    for method, path in (("GET", "/health"), ("GET", "/nope"), ("DELETE", "/v1/liveness")):
        _, headers, _ = tight.request(method, path, headers={"X-Request-Id": "probe-1"})
        assert headers["X-Request-Id"] == "probe-1", (method, path)
    quoted = urllib.parse.quote("x" * 129)
    _, headers, _ = tight.request("GET", "/health", headers={"X-Request-Id": quoted})
    assert headers["X-Request-Id"] != quoted


def test_health_reports_version_uptime_models_delegate_and_cache(tight):
    from liveness_edge import __version__

    status, _, first = tight.request("GET", "/health")
    assert status == 200 and first["status"] == "ok" and first["version"] == __version__
    assert first["delegate"] and first["uptime_sec"] > 0
    for model in first["models"]:
        assert model["sha256_ok"] is True and model["delegate"] and model["warm_invoke_ms"] > 0
    status, _, answer = tight.post_clip(small_clip(), "return_detection=true")
    assert status == 200, answer
    time.sleep(0.05)
    _, _, second = tight.request("GET", "/health")
    assert second["uptime_sec"] > first["uptime_sec"]
    assert second["cache_entries"] == first["cache_entries"] + 1


def test_a_text_log_line_cannot_be_forged_through_the_path(tmp_path):
    # log.format: text writes the request's path into the line: a %0a in it must not start a second, forged line.
    d = Daemon(write_config(tmp_path, "format: text"))
    try:
        before = len(d.lines)
        status, _, body = d.request("GET", "/v1/x%0aINFO%20liveness_edge.access:%20request_id=forged%20status=200")
        assert status == 404 and body["code"] == "NOT_FOUND"
        assert wait_for(lambda: any("liveness_edge.access" in line for line in d.lines[before:]), 5)
        new = d.lines[before:]
        assert not any(line.startswith("INFO liveness_edge.access: request_id=forged") for line in new), new
        assert any("\\nINFO liveness_edge.access: request_id=forged" in line for line in new), new  # escaped, kept
    finally:
        d.stop()


def test_one_client_cannot_hold_every_connection(tmp_path):
    # A client that opens connections and sends half a request line, again and again, used to fill waitress's
    # 100 connections until /health timed out for everyone. Past server.connections-per-client from one address,
    # a new connection gets 503 BUSY at once; other clients are still served.
    d = Daemon(write_config(tmp_path, "connections-per-client: 4"))
    held = []
    try:
        host, port = addr(d)

        def connect_from(source: str) -> socket.socket:
            sock = socket.socket()
            sock.bind((source, 0))  # all of 127.0.0.0/8 is this machine: a second "client address"
            sock.settimeout(5)
            sock.connect((host, port))
            return sock

        for _ in range(4):
            sock = connect_from("127.0.0.2")
            sock.sendall(b"GET /hea")
            held.append(sock)
        extra = connect_from("127.0.0.2")
        reply = b""
        while chunk := extra.recv(65536):
            reply += chunk
        status, headers, body = parse_reply(reply)
        assert status == 503 and json.loads(body)["code"] == "BUSY" and headers["retry-after"] == "1"
        assert json.loads(body)["param"] == "server.connections-per-client"
        metrics = d.request("GET", "/metrics")[2].decode()
        assert metric(metrics, "liveness_edge_shed_total") == 1
        assert d.request("GET", "/health", timeout=5)[0] == 200  # from 127.0.0.1, another client
        held.pop().close()  # a slot freed: the same client may connect again
        assert wait_for(lambda: _health_from(connect_from("127.0.0.2")) == 200, 5)
    finally:
        for sock in held:
            sock.close()
        d.stop()


def _health_from(sock: socket.socket) -> int:
    """/health's status on ``sock``; 0 when the connection was refused before the request was read (until the
    daemon has seen the freed connection, a new one is still over the cap: answered 503 and closed, and the request
    it had sent unread makes that close a reset)."""
    with sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            return 0
    return parse_reply(reply)[0]
