"""Eyelid motion (blinks) and other non-rigid micro-motion of the face, from the face-mesh landmarks.

A printed photo cannot blink or change expression. Both cues here are one-sided: they report evidence of life when
they see it and ABSTAIN otherwise, so a person who happens to stand still and not blink in a 1-2 s clip is never
penalized by them. (A video replay shows a real face that blinks and talks: these cues cannot catch replays.)

- ``BlinkCue``: the eye aspect ratio (EAR, 6 mesh points per eye) per frame; a blink is a dip below
  ``DIP`` x the clip's open-eye level (its 80th percentile) followed by a reopening above ``REOPEN`` x that level.
- ``MotionCue``: expression change after removing the head's rigid motion: the range over the clip of the mouth
  opening and of the brow-to-eye distances, in units of the inter-ocular distance.
"""

from __future__ import annotations

import numpy as np

from . import CueScore

# MediaPipe mesh: (p1 outer corner, p2, p3 upper lid, p4 inner corner, p5, p6 lower lid)
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (263, 387, 385, 362, 380, 373)
DIP, REOPEN = 0.6, 0.85
MIN_OPEN = 0.12  # an open-eye EAR below this: eyes not visible enough (glasses glare, profile): abstain
BLINK_VALUE = 0.9

MOUTH = (13, 14)  # inner upper and lower lip
BROWS = ((105, 159), (334, 386))  # brow point, upper eyelid point below it
MOTION_MIN = 0.06  # range (fraction of the inter-ocular distance) that counts as expression change
MOTION_VALUE = 0.8


def ear(points: np.ndarray, eye: tuple[int, ...]) -> float:
    p = points[list(eye), :2]
    width = np.linalg.norm(p[0] - p[3])
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * max(width, 1e-6)))


def find_blink(series: np.ndarray) -> tuple[bool, float, float]:
    """(blink seen, open level, deepest dip ratio) in a per-frame EAR series."""
    if len(series) < 3:
        return False, 0.0, 1.0
    level = float(np.percentile(series, 80))
    if level < MIN_OPEN:
        return False, level, 1.0
    rel = series / level
    low = int(np.argmin(rel))
    dip = float(rel[low])
    if dip >= DIP:
        return False, level, dip
    # Open before or at the start, and open again after the dip (a blink, not eyes closed from some point on).
    before = rel[:low].max(initial=0.0) >= REOPEN
    after = rel[low + 1:].max(initial=0.0) >= REOPEN
    return bool(before and after), level, dip


class BlinkCue:
    name = "blink"

    def __init__(self):
        self.series: list[float] = []

    def observe(self, frame, sample) -> None:
        pts = sample.landmarks.points
        self.series.append(0.5 * (ear(pts, RIGHT_EYE) + ear(pts, LEFT_EYE)))

    def result(self) -> CueScore:
        seen, level, dip = find_blink(np.asarray(self.series))
        detail = {"open_level": round(level, 4), "min_ratio": round(dip, 4), "frames": len(self.series)}
        if not seen:
            return CueScore(self.name, None, {**detail, "why": "no blink seen"})
        return CueScore(self.name, BLINK_VALUE, detail)


class MotionCue:
    name = "micro_motion"

    def __init__(self):
        self.rows: list[tuple[float, float, float]] = []

    def observe(self, frame, sample) -> None:
        pts = sample.landmarks.points[:, :2]
        iod = max(float(np.linalg.norm(pts[33] - pts[263])), 1e-6)
        mouth = float(np.linalg.norm(pts[MOUTH[0]] - pts[MOUTH[1]])) / iod
        brows = [float(np.linalg.norm(pts[a] - pts[b])) / iod for a, b in BROWS]
        self.rows.append((mouth, brows[0], brows[1]))

    def result(self) -> CueScore:
        if len(self.rows) < 5:
            return CueScore(self.name, None, {"why": "too few frames"})
        rows = np.asarray(self.rows)
        # Robust range: 95th - 5th percentile, so one jittery frame does not count as expression.
        spread = np.percentile(rows, 95, axis=0) - np.percentile(rows, 5, axis=0)
        mouth, brow = float(spread[0]), float(spread[1:].mean())
        detail = {"mouth_range": round(mouth, 4), "brow_range": round(brow, 4)}
        if max(mouth, 2 * brow) < MOTION_MIN:
            return CueScore(self.name, None, {**detail, "why": "no expression change seen"})
        return CueScore(self.name, MOTION_VALUE, detail)
