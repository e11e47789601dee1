"""Screen bezel / sheet border: a straight-edged frame around the face, as a phone, tablet, monitor or a cut print
puts one there.

In a wide grey window around the face (``WINDOW_SCALE`` x the face box, like MiniFASNet's 2.7x crop), long straight
edge segments (probabilistic Hough on Canny edges) are looked for OUTSIDE the face: near-vertical ones left and right
of it, near-horizontal ones above and below it, each at least ``MIN_LENGTH`` x the face size. A frame is *framed* when
an opposite pair of sides (left and right, or top and bottom) both have one: the face sits inside a rectangle.
A room has straight edges too (door and window frames), so one side is not enough, and the edges must also keep
their place relative to the face (a held device moves WITH the face; a door frame does not) whenever the face moves.

One-sided, like blink: a framed face in most sampled frames is evidence of an attack (value ``FRAMED_VALUE``);
anything else abstains, so a live person is never penalised for standing in front of a plain wall. A replay that fills
the whole camera view (no border in sight) is not caught here (texture looks for its moire instead).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import CueScore, EveryNth
from .pixels import luma_scaled

WINDOW_SCALE = 2.7
WORK_SIZE = 160
EVERY = 3  # look at every 3rd selected frame (10 of 30)
MIN_LENGTH = 0.9  # segment length, in face-box sides
MAX_TILT = math.radians(15)  # from vertical / horizontal
FACE_MARGIN = 0.05  # the segment must lie this far (face sides) outside the face box
MIN_FRAMED = 0.5  # share of sampled frames that must be framed
MAX_DRIFT = 0.15  # rigidity: a side's position may wander this much (face sides) while the face moves
FRAMED_VALUE = 0.1


def find_sides(grey: np.ndarray, face_px: float) -> dict[str, float]:
    """Per side ("left", "right", "top", "bottom") the position (window pixels, from the window centre) of the
    nearest long straight segment outside the face, for the sides that have one."""
    n = grey.shape[0]
    edges = cv2.Canny(cv2.GaussianBlur(grey, (3, 3), 0), 40, 120)
    min_len = MIN_LENGTH * face_px
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=int(0.6 * min_len), minLineLength=int(min_len),
                            maxLineGap=3)
    sides: dict[str, float] = {}
    if lines is None:
        return sides
    half = face_px / 2 * (1 + 2 * FACE_MARGIN)
    c = n / 2
    for x1, y1, x2, y2 in np.asarray(lines).reshape(-1, 4).astype(np.float64):
        dx, dy = x2 - x1, y2 - y1
        angle = math.atan2(abs(dy), abs(dx))  # 0 horizontal, pi/2 vertical
        mx, my = (x1 + x2) / 2 - c, (y1 + y2) / 2 - c
        if angle >= math.pi / 2 - MAX_TILT:  # vertical: left or right of the face, spanning its height band
            if abs(my) > face_px:
                continue
            side, pos = ("left", -mx) if mx < 0 else ("right", mx)
        elif angle <= MAX_TILT:
            if abs(mx) > face_px:
                continue
            side, pos = ("top", -my) if my < 0 else ("bottom", my)
        else:
            continue
        if pos < half:
            continue
        sides[side] = min(sides.get(side, math.inf), pos)
    return sides


class BezelCue:
    name = "bezel"

    def __init__(self, every: int = EVERY):
        self.sampled = EveryNth(every)
        self.rows: list[dict[str, float]] = []  # per sampled frame: side -> position in face sides
        self.centres: list[tuple[float, float, float]] = []  # face centre x, y and side (frame pixels)

    def observe(self, frame, sample) -> None:
        if not self.sampled.take():
            return
        face = sample.face
        cx, cy = face.center
        face_side = max(face.width, face.height)
        side = face_side * WINDOW_SCALE
        x0, y0 = math.floor(cx - side / 2), math.floor(cy - side / 2)
        grey = luma_scaled(frame, x0, y0, x0 + math.floor(side), y0 + math.floor(side), WORK_SIZE, WORK_SIZE)
        face_px = WORK_SIZE / WINDOW_SCALE
        found = find_sides(grey, face_px)
        self.rows.append({k: v / face_px for k, v in found.items()})
        self.centres.append((cx, cy, face_side))

    def result(self) -> CueScore:
        n = len(self.rows)
        if n < 3:
            return CueScore(self.name, None, {"why": "too few frames"})
        framed = [("left" in r and "right" in r) or ("top" in r and "bottom" in r) for r in self.rows]
        share = float(np.mean(framed))
        # How far the face itself moved over the clip (face sides): the rigidity test needs some motion to mean much.
        c = np.array(self.centres)
        face_motion = float(np.max(np.hypot(c[:, 0] - c[0, 0], c[:, 1] - c[0, 1]) / c[:, 2]))
        drifts = {}
        for name in ("left", "right", "top", "bottom"):
            pos = [r[name] for r in self.rows if name in r]
            if len(pos) >= max(2, n // 2):
                drifts[name] = float(np.percentile(pos, 90) - np.percentile(pos, 10))
        detail = {"framed_share": round(share, 3), "face_motion": round(face_motion, 3),
                  "drift": {k: round(v, 3) for k, v in drifts.items()}}
        if share < MIN_FRAMED:
            return CueScore(self.name, None, {**detail, "why": "no frame around the face"})
        rigid = [k for k, v in drifts.items() if v <= MAX_DRIFT]
        if face_motion >= MAX_DRIFT and len(rigid) < 2:
            return CueScore(self.name, None, {**detail, "why": "edges do not move with the face"})
        return CueScore(self.name, FRAMED_VALUE, detail)
