from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon import Daemon  # noqa: F401  (tests import it from here)
from media import ASTRONAUT, ROOT, SHARED_DATA, face_frames

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def pytest_configure(config):
    if not ASTRONAUT.exists():
        pytest.exit(f"{ASTRONAUT} is missing; run the suite with `make test`, which extracts it", returncode=4)


@pytest.fixture
def needs_shared():
    if not (SHARED_DATA / "labels.csv").exists():
        pytest.skip(f"real labelled media not available: {SHARED_DATA} is absent (see ../shared/README.md)")
    return SHARED_DATA


def write_config(directory: Path, extra: str = "", listen: str = "127.0.0.1:0") -> Path:
    """A config for tests: the shipped one with a loopback ephemeral port, a private state dir and ``extra`` keys."""
    text = (ROOT / "config" / "liveness-edge.ini").read_text()
    text = re.sub(r"^listen: .*$", f"listen: {listen}", text, flags=re.M)
    text = re.sub(r'^state-dir: .*$', f'state-dir: "{directory / "state"}"', text, flags=re.M)
    overrides = _parse_overrides(extra)
    for key, value in overrides.items():
        # Replace a top-level or nested "key: value" line in place so the file stays one valid document.
        pattern = rf"^(\s*){re.escape(key)}: [^#\n]*"
        text, n = re.subn(pattern, lambda m: f"{m.group(1)}{key}: {value}  ", text, count=1, flags=re.M)
        assert n == 1, f"no key {key} in the shipped config"
    path = directory / "liveness-edge.ini"
    path.write_text(text)
    return path


def _parse_overrides(extra: str) -> dict[str, str]:
    out = {}
    for line in extra.strip().splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    d = Daemon(write_config(tmp_path_factory.mktemp("daemon")))
    yield d
    d.stop()


@pytest.fixture(scope="session")
def daemon_biggest(tmp_path_factory):
    d = Daemon(write_config(tmp_path_factory.mktemp("daemon-biggest"), "mf-selector: biggest"))
    yield d
    d.stop()


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """A raw YUV4MPEG2 clip, the format Chromium's fake capture device plays (looping) as the camera."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, driven through chromedriver (selenium). `make test` installs both and sets
    LIVENESS_EDGE_REQUIRE_BROWSER=1, so there the browser tests fail rather than skip when it is missing."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = "Chromium and chromedriver are not installed (make test installs Debian's chromium-driver)"
        if os.environ.get("LIVENESS_EDGE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    folder = tmp_path_factory.mktemp("browser")
    camera = write_y4m(folder / "camera.y4m", face_frames(60, 640, 480))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={folder / 'profile'}", "--window-size=1280,1400",
                # box.test: the daemon under a name that is not localhost (the page as seen from another machine),
                # still reached on loopback.
                "--host-resolver-rules=MAP box.test 127.0.0.1",
                # A camera without a person at the keyboard: grant the permission, play the clip made above.
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False
