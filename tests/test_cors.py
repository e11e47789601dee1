"""CORS (server.cors-origins): a kiosk page from another origin may call the API and read its answers only when listed.

The last test is the real thing: a page served from another loopback port, in Chromium, POSTs a clip to the daemon
with fetch() and reads the answer, which the browser allows only with the daemon's CORS headers.
"""

from __future__ import annotations

import functools
import json
import http.server
import threading

import pytest

from conftest import Daemon, write_config
from media import face_clip

KIOSK = "http://kiosk.test:8080"


@pytest.fixture(scope="module")
def cors_daemon(tmp_path_factory):
    d = Daemon(write_config(tmp_path_factory.mktemp("cors"), f'cors-origins: "{KIOSK} http://127.0.0.1:1"'))
    yield d
    d.stop()


def preflight(daemon, origin: str, path: str = "/v1/liveness"):
    return daemon.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})


def test_a_listed_origin_gets_its_preflight_and_can_read_answers_and_errors(cors_daemon):
    status, headers, _ = preflight(cors_daemon, KIOSK)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == KIOSK
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert {"Content-Type", "Authorization"} <= {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
    for body, expected in ((face_clip(frames=12), 200), (b"not a video", 400)):
        status, headers, _ = cors_daemon.post_clip(body, headers={"Origin": KIOSK})
        assert status == expected
        assert headers["Access-Control-Allow-Origin"] == KIOSK and headers["Vary"] == "Origin"
        assert "X-Request-Id" in headers["Access-Control-Expose-Headers"]


def test_errors_answered_before_routing_carry_cors_and_preflights_a_request_id(cors_daemon):
    # a 413 comes from the HTTP layer before the app sees the request; the page must still read it
    from tools.load import parse_reply, raw

    host, port = cors_daemon.url.split("//")[1].split(":")
    head = (f"POST /v1/liveness HTTP/1.1\r\nHost: x\r\nOrigin: {KIOSK}\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: {10 ** 9}\r\n\r\n").encode()
    status, headers, body = parse_reply(raw(host, int(port), head, timeout=5))
    assert status == 413 and json.loads(body)["code"] == "VIDEO_TOO_LARGE"
    assert headers["access-control-allow-origin"] == KIOSK and headers["x-request-id"]
    status, headers, _ = preflight(cors_daemon, KIOSK)
    assert status == 204 and headers["X-Request-Id"]


def test_an_unlisted_origin_gets_nothing_to_read_with(cors_daemon):
    status, headers, body = preflight(cors_daemon, "http://evil.test")
    assert status == 405 and body["code"] == "METHOD_NOT_ALLOWED"
    assert "Access-Control-Allow-Origin" not in headers
    status, headers, _ = cors_daemon.request("GET", "/health", headers={"Origin": "http://evil.test"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_without_cors_origins_nothing_changes(daemon):
    status, headers, _ = preflight(daemon, KIOSK)
    assert status == 405 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = daemon.request("GET", "/health", headers={"Origin": KIOSK})
    assert "Access-Control-Allow-Origin" not in headers


@pytest.fixture
def kiosk_page(tmp_path):
    """A kiosk app's own web server on another loopback port: one empty page and the clip it will send."""
    (tmp_path / "index.html").write_text("<!doctype html><title>kiosk</title>")
    (tmp_path / "clip.mp4").write_bytes(face_clip(frames=12))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


FETCH_FROM_PAGE = """
const [daemon, done] = [arguments[0], arguments[arguments.length - 1]];
fetch("/clip.mp4").then((r) => r.blob())
  .then((clip) => fetch(daemon + "/v1/liveness", {method: "POST", headers: {"Content-Type": "video/mp4"}, body: clip}))
  .then((r) => r.json()).then((answer) => done({answer}), (err) => done({error: String(err)}));
"""


def test_a_kiosk_page_on_another_origin_reads_the_answer_only_when_listed(browser, kiosk_page, tmp_path):
    browser.set_script_timeout(60)
    answers = {}
    for listed in (True, False):
        folder = tmp_path / ("listed" if listed else "unlisted")
        folder.mkdir()
        d = Daemon(write_config(folder, f'cors-origins: "{kiosk_page}"' if listed else ""))
        try:
            browser.get(kiosk_page + "/index.html")
            answers[listed] = browser.execute_async_script(FETCH_FROM_PAGE, d.url)
        finally:
            d.stop()
    assert "alive" in answers[True]["answer"], answers[True]
    assert answers[False] == {"error": "TypeError: Failed to fetch"}  # the browser kept the answer from the page


def test_allowed_hosts_refuses_a_rebound_name_and_keeps_addresses(tmp_path):
    # A page on attacker.example whose name was re-pointed at the box is "same origin" with the API for the browser:
    # with server.allowed-hosts set, only the listed names, IP addresses and localhost are answered.
    from tools.load import parse_reply, raw

    d = Daemon(write_config(tmp_path, 'allowed-hosts: "kiosk.local"'))
    try:
        host, port = d.url.rsplit("/", 1)[-1].split(":")

        def status_for(host_header: str) -> tuple[int, dict]:
            head = f"GET /health HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode()
            status, _, body = parse_reply(raw(host, int(port), head, timeout=5))
            return status, json.loads(body)

        status, body = status_for(f"attacker.example:{port}")
        assert status == 421 and body["code"] == "MISDIRECTED_HOST" and body["param"] == "server.allowed-hosts"
        for ok in (f"kiosk.local:{port}", f"KIOSK.local:{port}", f"127.0.0.1:{port}", f"[::1]:{port}",
                   f"localhost:{port}", f"192.168.1.20:{port}", "kiosk.local"):
            assert status_for(ok)[0] == 200, ok
    finally:
        d.stop()


def test_without_allowed_hosts_any_host_is_answered(daemon):
    from tools.load import parse_reply, raw

    host, port = daemon.url.rsplit("/", 1)[-1].split(":")
    head = b"GET /health HTTP/1.1\r\nHost: anything.example\r\nConnection: close\r\n\r\n"
    assert parse_reply(raw(host, int(port), head, timeout=5))[0] == 200  # the seed's behaviour, the default
