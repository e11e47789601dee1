"""The demo page (GET /): what the daemon serves, and what a user sees in a real browser.

The browser tests (the ``browser`` fixture in conftest.py: Debian's Chromium headless through chromedriver) choose a
file, drop one, record from a camera (Chromium's fake capture device playing a clip made here), and read the page.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Daemon, write_config
from media import face_clip


# -- what the daemon serves ------------------------------------------------------------------------------------------

def test_page_and_assets_are_served_with_a_strict_policy(daemon):
    status, headers, page = daemon.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = page.decode()
    assert '<script src="/demo/demo.js?v=' in text and '<link rel="stylesheet" href="/demo/demo.css?v=' in text
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "<script>" not in text  # no inline script for the policy to allow
    assert headers["X-Content-Type-Options"] == "nosniff"
    for name, kind in (("demo.js", "text/javascript"), ("demo.css", "text/css")):
        status, headers, body = daemon.request("GET", f"/demo/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000


def test_unknown_asset_is_a_json_404(daemon):
    status, _, body = daemon.request("GET", "/demo/../../etc/passwd")
    assert status == 404 and body["code"] == "NOT_FOUND"
    status, _, body = daemon.request("GET", "/demo/app.js")
    assert status == 404 and body == {"code": "NOT_FOUND", "desc": "no demo asset 'app.js'", "param": "path"}


def test_health_tells_the_page_the_threshold_and_limits(daemon):
    status, _, health = daemon.request("GET", "/health")
    assert status == 200
    assert health["liveness_threshold"] == 0.95 and health["min_selected_frames"] == 10
    assert health["limits"] == {"video-size": 10485760, "video-length-sec": 60.0, "video-fps": 30.0,
                                "video-width-px": 1920, "video-height-px": 1080}
    assert health["auth_required"] is False


def test_demo_page_can_be_switched_off(tmp_path):
    d = Daemon(write_config(tmp_path, "demo-page: false"))
    try:
        for path in ("/", "/demo/demo.js"):
            status, _, body = d.request("GET", path)
            assert status == 404 and body["code"] == "NOT_FOUND", path
    finally:
        d.stop()


def test_page_needs_no_token_but_the_api_still_does(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    d = Daemon(write_config(tmp_path, f'token-file: "{token}"'))
    try:
        assert d.request("GET", "/")[0] == 200 and d.request("GET", "/demo/demo.js")[0] == 200
        assert d.post_clip(b"x")[0] == 401
        assert d.request("GET", "/health")[2]["auth_required"] is True  # so the page can ask for the token first
    finally:
        d.stop()


# -- in a browser ----------------------------------------------------------------------------------------------------

def open_page(browser, daemon, host: str = "127.0.0.1"):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")  # start each test with an empty console (an earlier test's 4xx answers are logged)
    browser.get(daemon.url.replace("127.0.0.1", host) + "/")
    WebDriverWait(browser, 20).until(lambda b: "version" in b.find_element("id", "health").text)
    return WebDriverWait


def wait_for_answer(browser, wait, timeout: float = 90):
    wait(browser, timeout).until(lambda b: b.find_elements("id", "verdict") or b.find_elements("id", "error"))


def send_file(browser, daemon, path: Path, host: str = "127.0.0.1"):
    """Open the page, choose ``path``, press the button and wait for the answer (a verdict or an error)."""
    wait = open_page(browser, daemon, host)
    browser.find_element("id", "file").send_keys(str(path))
    browser.find_element("id", "send").click()
    wait_for_answer(browser, wait)
    return wait


def console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_browser_chooses_a_file_and_sees_the_daemons_answer(browser, daemon, tmp_path):
    clip = face_clip(frames=20)
    path = tmp_path / "face.mp4"
    path.write_bytes(clip)
    _, _, expected = daemon.post_clip(clip, "return_frames=true")

    send_file(browser, daemon, path)
    assert "threshold 0.95" in browser.find_element("id", "health").text
    health = browser.find_element("id", "health").text  # how the answer is made, from /health
    assert "camera: fixed" in health and "cues: " in health and "surround" in health
    assert "face.mp4" in browser.find_element("id", "clip").text
    assert "decoded h264 in mov,mp4,m4a,3gp,3g2,mj2, 640x480, 30.0 fps" in browser.find_element("id", "clip-seen").text
    assert not browser.find_elements("id", "clip-note")

    verdict = browser.find_element("id", "verdict")
    assert verdict.get_attribute("data-alive") == str(expected["alive"]).lower()
    assert float(verdict.get_attribute("data-average")) == pytest.approx(expected["average_liveness"], abs=1e-6)
    assert ("NOT ALIVE" in verdict.text) == (not expected["alive"]) and "threshold 0.95" in verdict.text
    # The pictures decoded and the box sits inside the photo.
    photo = browser.find_element("id", "photo")
    assert browser.execute_script("return arguments[0].naturalWidth", photo) == 640
    assert browser.execute_script("return arguments[0].naturalWidth",
                                  browser.find_element("id", "normalized")) == 192
    box = browser.find_element("id", "bbox").rect
    frame = photo.rect
    assert 0 < box["width"] < frame["width"] and frame["x"] <= box["x"] <= frame["x"] + frame["width"]
    # One row per selected frame, and every cue the daemon reported.
    rows = browser.find_elements("css selector", "#frames tbody tr")
    assert len(rows) == len(expected["frames"])
    cues = [r.find_element("css selector", "td").text for r in browser.find_elements("css selector", "#cues tbody tr")]
    assert cues == list(expected["cues"])
    shown = json.loads(browser.find_element("id", "json").get_attribute("textContent"))
    assert shown["best_face"]["photo"].startswith("<JPEG,") and shown["alive"] == expected["alive"]
    # The same request, for the integrator to copy: the flags ticked on the page.
    curl = browser.find_element("id", "curl").text
    assert "--data-binary @clip.mp4" in curl
    assert f"{daemon.url}/v1/liveness?return_photo=true&return_normalized=true&return_frames=true" in curl
    assert console_errors(browser) == []  # the CSP blocked nothing the page needs


def test_browser_shows_an_error_with_its_code_and_advice(browser, daemon, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a video\n" * 20)
    send_file(browser, daemon, path)
    assert browser.find_element("id", "error-code").text == "BAD_VIDEO"
    assert "Send an MP4, WebM, MOV or MKV clip" in browser.find_element("id", "error").text
    assert "HTTP 400" in browser.find_element("id", "meta").text


def test_browser_shows_why_frames_were_not_enough(browser, daemon, tmp_path):
    path = tmp_path / "two.mp4"
    path.write_bytes(face_clip(frames=12, width=960, faces=2))
    _, _, expected = daemon.post_clip(path.read_bytes())
    assert expected["code"] == "MULTIPLE_FACES"
    send_file(browser, daemon, path)
    assert browser.find_element("id", "error-code").text == "MULTIPLE_FACES"
    counts = browser.find_element("id", "error-counts").text
    assert f"{expected['frames_decoded']} frames decoded, 0 selected (at least 10 needed)" in counts
    assert "several faces" in counts


def test_browser_records_from_the_camera_and_checks_it(browser, daemon):
    before = daemon.request("GET", "/metrics")[2].decode()
    wait = open_page(browser, daemon)
    browser.find_element("id", "seconds").clear()
    browser.find_element("id", "seconds").send_keys("2")
    browser.find_element("id", "camera-start").click()
    wait(browser, 20).until(lambda b: b.find_element("id", "record").is_enabled())
    browser.find_element("id", "record").click()
    wait_for_answer(browser, wait)
    # The recording (WebM from the browser's MediaRecorder) went through the whole pipeline: the face was found in
    # the frames and an answer came back, not an error about the container, its frame rate or its size.
    assert not browser.find_elements("id", "error"), browser.find_element("id", "answer").text
    assert "camera recording" in browser.find_element("id", "clip").text
    assert len(browser.find_elements("css selector", "#frames tbody tr")) >= 10
    after = daemon.request("GET", "/metrics")[2].decode()
    assert _count(after) == _count(before) + 1
    # The camera is released after the recording (its light goes off) and can be opened again.
    assert browser.find_element("id", "camera-start").is_enabled()
    assert not browser.find_element("id", "record").is_enabled()
    assert browser.execute_script("return document.getElementById('preview').srcObject") is None
    assert console_errors(browser) == []


def _count(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('liveness_edge_requests_total{code="200",endpoint="liveness"}'):
            return float(line.split()[-1])
    return 0.0


def test_browser_off_localhost_explains_why_there_is_no_camera_and_still_checks_files(browser, daemon, tmp_path):
    path = tmp_path / "face.mp4"
    path.write_bytes(face_clip(frames=12))
    send_file(browser, daemon, path, host="box.test")
    assert browser.execute_script("return window.isSecureContext") is False
    assert not browser.find_element("id", "camera-start").is_enabled()
    assert "only on https:// or http://localhost" in browser.find_element("id", "camera-note").text
    assert browser.find_elements("id", "verdict")  # files are checked all the same


def test_browser_with_auth_asks_for_the_token_then_uses_it(browser, tmp_path):
    token = "s3cret-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    path = tmp_path / "face.mp4"
    path.write_bytes(face_clip(frames=12))
    d = Daemon(write_config(tmp_path, f'token-file: "{tmp_path / "token"}"'))
    try:
        wait = send_file(browser, d, path)
        assert "needs its token" in browser.find_element("id", "token-note").text  # said before anything is sent
        assert browser.find_element("id", "error-code").text == "UNAUTHORIZED"
        assert "type it into the token field" in browser.find_element("id", "error").text
        assert browser.switch_to.active_element.get_attribute("id") == "token"
        assert 'Authorization: Bearer $TOKEN' in browser.find_element("id", "curl").text
        browser.find_element("id", "token").send_keys("a-wrong-token-0123456789")
        browser.find_element("id", "send").click()
        wait(browser, 30).until(lambda b: "refused this token" in b.find_element("id", "answer").text)
        browser.find_element("id", "token").clear()
        browser.find_element("id", "token").send_keys(token)
        browser.find_element("id", "send").click()
        wait(browser, 60).until(lambda b: b.find_elements("id", "verdict"))
        curl = browser.find_element("id", "curl").text
        assert 'Authorization: Bearer $TOKEN' in curl and token not in curl
    finally:
        d.stop()


def test_browser_takes_a_clip_dropped_on_the_page(browser, daemon):
    import base64

    clip = base64.b64encode(face_clip(frames=12)).decode()
    wait = open_page(browser, daemon)
    # What a drag from the file manager delivers: a drop event carrying the file.
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.mp4", {type: "video/mp4"}));
        document.getElementById(arguments[1]).dispatchEvent(new DragEvent("drop", {dataTransfer: transfer,
                                                                                   bubbles: true, cancelable: true}));
    """, clip, "result")  # dropped on the answer area, not on the dashed box: the whole page takes it
    assert "dropped.mp4" in browser.find_element("id", "clip").text
    browser.find_element("id", "send").click()
    wait_for_answer(browser, wait)
    assert browser.find_elements("id", "verdict")


def test_browser_warns_about_an_mjpeg_clip(browser, daemon, tmp_path):
    path = tmp_path / "webcam.avi"
    path.write_bytes(face_clip(frames=12, container="avi", codec="mjpeg", pix_fmt="yuvj420p"))
    send_file(browser, daemon, path)
    assert "send H.264, H.265, VP8 or VP9" in browser.find_element("id", "clip-note").text


def test_browser_stores_the_best_face_and_looks_it_up_in_the_cache(browser, daemon, tmp_path):
    path = tmp_path / "face.mp4"
    path.write_bytes(face_clip(frames=12))
    wait = open_page(browser, daemon)
    browser.find_element("id", "return_detection").click()  # off by default on the page
    browser.find_element("id", "file").send_keys(str(path))
    browser.find_element("id", "send").click()
    wait_for_answer(browser, wait)
    detection_id = browser.find_element("id", "detection-id").text
    _, _, stored = daemon.request("GET", f"/v1/detections/{detection_id}")
    browser.find_element("id", "lookup").click()
    wait(browser, 10).until(lambda b: b.find_element("id", "stored").text)
    shown = browser.find_element("id", "stored").text
    assert "stored" in shown and f"liveness {stored['liveness']:.3f}" in shown and f"frame {stored['frame_no']}" in shown


def test_browser_answer_without_frames_stale_answers_and_short_clips(browser, daemon, tmp_path):
    face, short = tmp_path / "face.mp4", tmp_path / "short.mp4"
    face.write_bytes(face_clip(frames=12))
    short.write_bytes(face_clip(frames=4))
    wait = open_page(browser, daemon)
    browser.find_element("id", "return_frames").click()  # off: the answer has no clip, cues or frames
    browser.find_element("id", "file").send_keys(str(face))
    browser.find_element("id", "send").click()
    wait_for_answer(browser, wait)
    answer = browser.find_element("id", "answer").text
    assert browser.find_elements("id", "verdict") and "null" not in answer and "undefined" not in answer
    # The answer is announced in one line and brought into view with the focus on its heading.
    assert browser.find_element("id", "status").text.startswith(("Alive:", "Not alive:"))
    assert browser.switch_to.active_element.get_attribute("id") == "result-title"
    # A new clip clears the old clip's answer instead of showing it beside the new name.
    browser.find_element("id", "file").send_keys(str(short))
    assert not browser.find_elements("id", "verdict") and "short.mp4" in browser.find_element("id", "clip").text
    browser.find_element("id", "send").click()
    wait_for_answer(browser, wait)
    assert browser.find_element("id", "error-code").text == "NOT_ENOUGH_FRAMES"
    assert "only 4 frame(s)" in browser.find_element("id", "error").text  # too short, not "blurred or dark"
