"""The findface-liveness-api contract against a real daemon on an ephemeral loopback port."""

import base64
import http.client
import json
import socket
import urllib.parse
from fractions import Fraction

import cv2
import numpy as np
import pytest

from media import blank_frames, encode, face_clip, face_frames

SEED_KEYS = {"alive", "average_liveness", "best_face"}
FACE_KEYS = {"liveness", "quality", "bbox", "frame_no", "frame_ts"}


@pytest.fixture(scope="module")
def clip():
    return face_clip(frames=20, width=640, height=480)


def read_until_closed(sock) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def assert_error(status, body, expected_status, code):
    assert status == expected_status, body
    assert set(body) >= {"code", "desc", "param"} and body["code"] == code, body
    assert "Traceback" not in body["desc"]


def test_plain_request_answers_the_seed_shape(daemon, clip):
    status, headers, body = daemon.post_clip(clip)
    assert status == 200, body
    assert set(body) == SEED_KEYS
    assert set(body["best_face"]) == FACE_KEYS
    assert isinstance(body["alive"], bool)
    assert 0.0 <= body["average_liveness"] <= 1.0
    assert body["alive"] == (body["average_liveness"] >= 0.95)
    face = body["best_face"]
    assert 0 <= face["quality"] <= 1 and 0 <= face["liveness"] <= 1
    assert 0 <= face["frame_no"] < 20
    assert face["frame_ts"] == pytest.approx(face["frame_no"] / 30, abs=1e-3)
    box = face["bbox"]
    assert 0 <= box["left"] < box["right"] <= 640 and 0 <= box["top"] < box["bottom"] <= 480
    assert box["left"] < 320 < box["right"]  # the face is pasted at the frame centre
    assert headers["Content-Type"].startswith("application/json")
    assert len(headers["X-Request-Id"]) >= 16


def test_all_flags_return_photo_normalized_and_a_retrievable_detection(daemon, clip):
    status, _, body = daemon.post_clip(clip, "return_photo=true&return_normalized=1&return_detection=true")
    assert status == 200, body
    face = body["best_face"]
    photo = cv2.imdecode(np.frombuffer(base64.b64decode(face["photo"]), np.uint8), cv2.IMREAD_COLOR)
    assert photo.shape == (480, 640, 3)
    normalized = base64.b64decode(face["normalized"])
    assert normalized.startswith(b"\x89PNG")
    crop = cv2.imdecode(np.frombuffer(normalized, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape[0] == crop.shape[1] >= 112
    status, _, stored = daemon.request("GET", f"/v1/detections/{face['detection_id']}")
    assert status == 200
    assert stored["id"] == face["detection_id"] and stored["bbox"] == face["bbox"]
    assert stored["liveness"] == pytest.approx(face["liveness"])
    assert base64.b64decode(stored["normalized"]) == normalized


def test_flags_false_return_nothing_extra(daemon, clip):
    status, _, body = daemon.post_clip(clip, "return_photo=false&return_normalized=0&return_detection=FALSE")
    assert status == 200 and set(body["best_face"]) == FACE_KEYS


def test_webm_and_octet_stream_are_sniffed(daemon):
    webm = face_clip(frames=12, container="webm", codec="libvpx")
    for content_type in ("video/webm", "application/octet-stream"):
        status, _, body = daemon.post_clip(webm, content_type=content_type)
        assert status == 200, body
    status, _, body = daemon.post_clip(face_clip(frames=12, container="mov"), content_type="video/quicktime")
    assert status == 200, body


def test_camera_recordings_mpegts_and_mjpeg_avi_are_answered_with_times_from_the_clip_start(daemon):
    # An MPEG-TS recording as an IP camera cuts it: its 90 kHz clock is 2 hours in at the first frame.
    mpegts = encode(face_frames(12, 640, 480), container="mpegts", time_base=Fraction(1, 90000), pts_step=3000,
                    pts_start=2 * 3600 * 90000)
    mjpeg = face_clip(frames=12, container="avi", codec="mjpeg", pix_fmt="yuvj420p")
    answers = {}
    for name, clip, content_type in (("mpegts", mpegts, "video/mp2t"), ("mjpeg", mjpeg, "video/x-msvideo")):
        status, _, body = daemon.post_clip(clip, "return_frames=true", content_type=content_type)
        assert status == 200, body
        # The answer counts from the first frame.
        assert [f["frame_ts"] for f in body["frames"][:2]] == [0.0, pytest.approx(1 / 30, abs=1e-3)]
        answers[name] = body["clip"]
    # The debug answer says what the decoder saw, and warns about the codec the cues misread.
    assert answers["mpegts"] == {"container": "mpegts", "codec": "h264", "width": 640, "height": 480, "fps": 30.0,
                                 "duration": pytest.approx(0.4, abs=0.05)}
    assert answers["mjpeg"]["codec"] == "mjpeg" and answers["mjpeg"]["note"].startswith("MJPEG: the texture cue")


def test_a_form_upload_gets_415_saying_what_to_send(daemon, clip):
    status, _, body = daemon.post_clip(clip, content_type="multipart/form-data; boundary=xyz")
    assert_error(status, body, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "--data-binary" in body["desc"]


@pytest.mark.parametrize("query, param", [("return_photo=yes", "return_photo"), ("retrun_photo=true", "retrun_photo"),
                                          ("return_photo=true&return_photo=false", "return_photo"),
                                          ("x=" + "a" * 5000, "query")])
def test_bad_query_flags(daemon, clip, query, param):
    status, headers, body = daemon.post_clip(clip, query)
    assert_error(status, body, 400, "BAD_PARAM")
    assert body["param"] == param
    assert headers["X-Request-Id"]


def test_unsupported_content_type(daemon, clip):
    status, _, body = daemon.post_clip(clip, content_type="image/jpeg")
    assert_error(status, body, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_garbage_is_bad_video(daemon):
    status, _, body = daemon.post_clip(b"\x00\x01garbage" * 100)
    assert_error(status, body, 400, "BAD_VIDEO")


def test_too_large_by_content_length_is_413_before_the_body(daemon):
    host, port = daemon.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
                     b"Content-Length: 10485761\r\n\r\n")
        reply = read_until_closed(sock).decode()
    head, _, payload = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413")
    assert json.loads(payload)["code"] == "VIDEO_TOO_LARGE"


def test_limits_exceeded_names_the_limit(daemon):
    status, _, body = daemon.post_clip(encode(blank_frames(3, 2560, 1440)))
    assert_error(status, body, 422, "VIDEO_LIMITS_EXCEEDED")
    assert body["param"] == "limits.video-width-px"
    status, _, body = daemon.post_clip(encode(blank_frames(10, 160, 120), fps=60))
    assert_error(status, body, 422, "VIDEO_LIMITS_EXCEEDED")
    assert body["param"] == "limits.video-fps"


def test_no_face_reports_counts(daemon):
    status, _, body = daemon.post_clip(encode(blank_frames(15, 320, 240)))
    assert_error(status, body, 422, "NO_FACE")
    assert body["frames_decoded"] == 15 and body["frames_selected"] == 0 and body["dropped"]["no_face"] == 15


def test_too_few_frames_is_not_enough_frames(daemon):
    status, _, body = daemon.post_clip(face_clip(frames=6))
    assert_error(status, body, 422, "NOT_ENOUGH_FRAMES")
    assert body["frames_selected"] == 6 and body["min_selected_frames"] == 10


def test_two_faces_rejected_or_biggest(daemon, daemon_biggest):
    two = face_clip(frames=12, width=960, height=480, faces=2)
    status, _, body = daemon.post_clip(two)
    assert_error(status, body, 422, "MULTIPLE_FACES")
    assert body["dropped"]["multiple_faces"] == 12
    status, _, body = daemon_biggest.post_clip(two)
    assert status == 200, body


def test_unknown_paths_and_ids_are_404_json(daemon):
    status, _, body = daemon.request("GET", "/v2/nothing")
    assert_error(status, body, 404, "NOT_FOUND")
    for ident in ("0" * 32, "../../etc/passwd", "x"):
        status, _, body = daemon.request("GET", "/v1/detections/" + urllib.parse.quote(ident, safe=""))
        assert_error(status, body, 404, "NOT_FOUND")


def test_wrong_method_is_405_with_allow(daemon):
    status, headers, body = daemon.request("GET", "/v1/liveness")
    assert_error(status, body, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in headers["Allow"]


def test_client_request_id_is_echoed_and_insane_ones_replaced(daemon, clip):
    _, headers, _ = daemon.post_clip(clip, headers={"X-Request-Id": "turnstile-7.42"})
    assert headers["X-Request-Id"] == "turnstile-7.42"
    _, headers, _ = daemon.post_clip(b"x", headers={"X-Request-Id": "bad id\twith spaces"})
    assert headers["X-Request-Id"] != "bad id\twith spaces" and len(headers["X-Request-Id"]) == 32


def test_expect_100_continue_like_curl(daemon, clip):
    host, port = daemon.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nExpect: 100-continue\r\n"
                     + f"Content-Length: {len(clip)}\r\n\r\n".encode())
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(clip)
        conn_reply = b""
        while b"\r\n\r\n" not in conn_reply or len(conn_reply.split(b"\r\n\r\n", 1)[1]) < 10:
            conn_reply += sock.recv(65536)
    assert conn_reply.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"


def test_health_and_metrics(daemon, clip):
    daemon.post_clip(clip)
    status, _, health = daemon.request("GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert {m["role"] for m in health["models"]} == {"detector", "landmarks", "liveness"}
    assert all(m["sha256_ok"] for m in health["models"])
    assert all(m["variant"] in ("float32", "int8") for m in health["models"])
    # what scores a clip: the shipped fusion for the bundled model runs the clip cues and not the CNN it gives no weight
    assert health["camera"] == "fixed"
    assert health["scoring"]["fusion"].startswith("logistic") and health["scoring"]["cnn_run"] is False
    assert {"texture", "planarity", "surround"} <= set(health["scoring"]["cues"])
    conn = http.client.HTTPConnection(daemon.url.split("//")[1], timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    assert 'liveness_edge_requests_total{code="200",endpoint="liveness"}' in text
    assert 'liveness_edge_stage_seconds_count{stage="detect"}' in text
    assert 'liveness_edge_frames_total{outcome="selected"}' in text


def test_camera_hand_held_turns_off_the_surround_cue(tmp_path, clip):
    # A phone held by the person moves the background with a still head: the cue that expects a still one is not run,
    # /health says so, and a debug answer carries no result for it.
    from conftest import Daemon, write_config

    d = Daemon(write_config(tmp_path, extra="camera: hand-held"))
    try:
        _, _, health = d.request("GET", "/health")
        assert health["camera"] == "hand-held" and "surround" not in health["scoring"]["cues"]
        status, _, answer = d.post_clip(clip, "return_frames=true")
        assert status == 200, answer
        assert "surround" not in answer["cues"] and "texture" in answer["cues"]
    finally:
        d.stop()


def test_ipv6_loopback_listen(tmp_path):
    """`listen: "[::1]:PORT"` binds the IPv6 loopback only (skipped where the box has no IPv6)."""
    import re as _re

    from conftest import Daemon, write_config

    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    d = Daemon(write_config(tmp_path, listen='"[::1]:0"'))
    try:
        port = int(next(_re.search(r"serving on ::1 port (\d+)", line).group(1)
                        for line in d.lines if "serving on ::1" in line))
        with socket.create_connection(("::1", port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = read_until_closed(sock).decode()
        assert reply.startswith("HTTP/1.1 200") and '"status": "ok"' in reply
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        d.stop()
