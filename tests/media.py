"""Media for tests, made here: synthetic clips encoded with PyAV, faces pasted from a real photo.

The core suite does not depend on ../shared: its face is the public-domain NASA portrait that scikit-image ships
(``astronaut.png``), which ``make test`` extracts from the pinned PyPI wheel into .cache/testdata.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / ".cache" / "testdata" / "astronaut.png"
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"


def astronaut_rgb() -> np.ndarray:
    image = cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{ASTRONAUT} is missing: run `make test` (it extracts it from scikit-image's wheel)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def face_frames(count: int, width: int, height: int, faces: int = 1, face_px: int = 300,
                seed: int = 0) -> list[np.ndarray]:
    """Frames with ``faces`` copies of the astronaut portrait (scaled to face_px), drifting a little per frame."""
    rng = np.random.default_rng(seed)
    portrait = cv2.resize(astronaut_rgb()[0:300, 120:370], (face_px * 250 // 300, face_px))
    frames = []
    for i in range(count):
        canvas = np.full((height, width, 3), 90, np.uint8)
        canvas[:] = (70 + 10 * np.sin(i / 5), 80, 95)
        for k in range(faces):
            ph, pw = portrait.shape[:2]
            slot_w = width // faces
            x = k * slot_w + (slot_w - pw) // 2 + int(3 * np.sin(i / 4 + k)) + int(rng.integers(-1, 2))
            y = (height - ph) // 2 + int(2 * np.cos(i / 3))
            x, y = max(0, min(width - pw, x)), max(0, min(height - ph, y))
            canvas[y : y + ph, x : x + pw] = portrait
        frames.append(canvas)
    return frames


def blank_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    return [np.full((height, width, 3), (40 + i % 50, 90, 120), np.uint8) for i in range(count)]


def encode(frames: list[np.ndarray], fps: float = 30, container: str = "mp4", codec: str = "libx264",
           pix_fmt: str = "yuv420p", time_base: Fraction | None = None, pts_step: int | None = None,
           pts_start: int = 0) -> bytes:
    """Encode RGB frames into a clip in memory. ``pts_step`` overrides the timestamp spacing (to fake rates), and
    ``pts_start`` the first timestamp (a camera's running clock), both in ``time_base`` units."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        rate = Fraction(fps).limit_denominator(1001)
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        elif codec == "libx265":
            stream.options = {"preset": "ultrafast", "x265-params": "log-level=error"}  # x265 logs to stderr
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts_step is not None:
                frame.pts = pts_start + i * pts_step
                frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def face_clip(frames: int = 20, width: int = 640, height: int = 480, faces: int = 1, fps: float = 30,
              **kw) -> bytes:
    return encode(face_frames(frames, width, height, faces=faces), fps=fps, **kw)


def shared_clip(relative: str) -> bytes:
    return (SHARED_DATA / relative).read_bytes()
