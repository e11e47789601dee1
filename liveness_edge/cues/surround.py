"""Surround motion: does what is around the face move WITH the face?

A kiosk, turnstile or IP camera is fixed. A live person moves their head in front of a background that stays put.
A photo or a screen held up to that camera carries its own surroundings (the rest of the sheet, the replayed room, the
bezel, the hand) and moves them with the face: every point of the medium moves by the motion of the medium, and the
face is painted on it. This cue tracks texture points around the face (above it and beside it, not below it: the neck
and shoulders of a live person move with the head) and asks, in the frames where the face has moved, whether they
moved as the face did or stayed where they were.

It is one-sided, like ``bezel``: surroundings that follow the face are attack evidence; surroundings that stay put say
nothing (a screen on a stand replaying a moving head has a still surround too). It abstains when the face barely
moves, when the face fills the view (nothing around it to track), and when the surround has too little texture.
Its assumption is the deployment's: a fixed camera. With a hand-held camera and a still head, the background shifts
with the face and this cue would call a live person an attack, so ``camera: hand-held`` in the config turns it off
(``needs_fixed_camera``); docs/accuracy.md says what it was measured on.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..decode import upright_size
from . import CueScore, EveryNth
from .pixels import luma_scaled
from .tracking import similarity_lsq, track

WINDOW_SCALE = 2.7  # the window around the first face box, fixed in the frame (a still background stays still in it)
WORK_SIZE = 192
EVERY = 2
# Face points whose motion is the head's rigid motion: eye corners, nose ridge and tip, forehead, temples,
# cheekbones. Not the mouth or the jaw (talking moves them).
FACE_POINTS = (33, 133, 263, 362, 1, 4, 6, 168, 197, 195, 10, 151, 9, 127, 356, 50, 280, 117, 346, 123, 352)
# The surround: the window minus the face box grown by these margins (face sides) for the ears and the hair, and
# minus everything below the chin. Hair moves with the head, and where it is the only texture (a plain wall behind)
# it would read as a surround that follows the face: a live clip here has its hair top 0.30-0.45 face sides above
# the box, so the top margin is 0.6 (at 0.45 that clip's hair was 0.15 from firing). A hat, a hood or hair taller
# than that before a plain wall can still fire it (docs/accuracy.md).
SIDE_MARGIN, TOP_MARGIN, BOTTOM_CUT = 0.35, 0.6, 0.45
MAX_CORNERS, MIN_POINTS = 60, 6
# Corner strength floor (smallest eigenvalue of the 3x3 structure tensor, OpenCV's scale). goodFeaturesToTrack's own
# threshold is relative to the strongest corner, so on a plain wall it returns specks of noise that LK cannot follow
# (a live clip here: strongest 6e-5, and its "points" followed the face at random); textured backgrounds and screen
# edges here measure 2e-4 to 2e-2.
MIN_CORNER = 1e-4
# A frame is used when the face's motion, carried to the surround points, is at least this (median, face sides):
# well above LK's noise (~0.2 px at this size, ~0.003 face sides).
MIN_MOTION = 0.03
MIN_FRAMES = 3
# A point follows the face when what the face's motion leaves unexplained is under half of how far it moved (and
# stays put in the opposite case); points that do neither are not counted.
FOLLOW_RATIO = 0.5
# Share of the decided points that follow the face, from which the cue speaks. On the evaluation clips every live
# surround that decided followed 0.0; hand-held replays and prints 0.67-1.0.
MIN_FOLLOW = 0.6
FOLLOWS_VALUE = 0.1  # the value when it speaks: attack evidence, as bezel's (how much it counts is the fusion's call)


def surround_mask(size: int, face_px: float, inside: tuple[int, int, int, int]) -> np.ndarray:
    """Where to look for points in a size x size window with the face centred (face_px wide): above and beside the
    face, inside the frame (``inside`` = x0, y0, x1, y1 of the frame's part of the window), off the window edge."""
    mask = np.zeros((size, size), np.uint8)
    x0, y0, x1, y1 = inside
    mask[max(y0, 3):min(y1, size - 3), max(x0, 3):min(x1, size - 3)] = 255
    c, half = size / 2, face_px / 2
    left, right = int(c - half - SIDE_MARGIN * face_px), int(math.ceil(c + half + SIDE_MARGIN * face_px))
    top = int(c - half - TOP_MARGIN * face_px)
    mask[max(top, 0):, max(left, 0):min(right, size)] = 0
    mask[int(c + BOTTOM_CUT * face_px):, :] = 0
    return mask


class SurroundCue:
    name = "surround"
    needs_fixed_camera = True

    def __init__(self, every: int = EVERY):
        self.sampled = EveryNth(every)
        self.window: tuple[int, int, float] | None = None  # x0, y0, side in frame pixels
        self.prev = None
        self.face_ref = None  # first frame's face points, working pixels
        self.ref = self.cur = self.alive = None  # surround points: first and current positions, survivors
        self.face_px = 1.0
        self.rows: list[tuple[float, float]] = []  # per moving frame: face motion at the points, share following

    def observe(self, frame, sample) -> None:
        if not self.sampled.take() or (self.alive is not None and self.alive.sum() < MIN_POINTS):
            return
        face = sample.face
        if self.window is None:
            cx, cy = face.center
            side = max(face.width, face.height) * WINDOW_SCALE
            self.window = (math.floor(cx - side / 2), math.floor(cy - side / 2), side)
        x0, y0, side = self.window
        grey = luma_scaled(frame, x0, y0, math.floor(x0 + side), math.floor(y0 + side), WORK_SIZE, WORK_SIZE)
        zoom = WORK_SIZE / side
        face_pts = (sample.landmarks.points[list(FACE_POINTS), :2] - [x0, y0]) * zoom
        if not np.isfinite(face_pts).all():  # a landmark the model could not place: nothing to measure the face by
            return
        if self.prev is None:
            self._seed(frame, grey, face_pts, max(face.width, face.height) * zoom, zoom)
            return
        self._track(grey)
        keep = np.flatnonzero(self.alive)
        if len(keep) < MIN_POINTS:
            return
        sim = similarity_lsq(self.face_ref, face_pts)
        ref, cur = self.ref[keep], self.cur[keep]
        with_face = ref @ sim[:, :2].T + sim[:, 2]
        motion = float(np.median(np.linalg.norm(with_face - ref, axis=1))) / self.face_px
        if motion < MIN_MOTION:
            return
        off_face = np.linalg.norm(cur - with_face, axis=1)
        off_start = np.linalg.norm(cur - ref, axis=1)
        follows = int(np.sum(off_face < FOLLOW_RATIO * off_start))
        stays = int(np.sum(off_start < FOLLOW_RATIO * off_face))
        if follows + stays:
            self.rows.append((motion, follows / (follows + stays)))

    def _seed(self, frame, grey: np.ndarray, face_pts: np.ndarray, face_px: float, zoom: float) -> None:
        width, height = upright_size(frame)
        x0, y0, _ = self.window
        inside = (math.ceil(-x0 * zoom), math.ceil(-y0 * zoom), int((width - x0) * zoom), int((height - y0) * zoom))
        mask = surround_mask(WORK_SIZE, face_px, inside)
        mask[cv2.cornerMinEigenVal(grey, 3) < MIN_CORNER] = 0
        corners = cv2.goodFeaturesToTrack(grey, MAX_CORNERS, 0.01, 5, mask=mask)
        self.ref = (corners.reshape(-1, 2) if corners is not None else np.zeros((0, 2))).astype(np.float64)
        self.cur = self.ref.copy()
        self.alive = np.ones(len(self.ref), bool)
        self.face_ref, self.face_px, self.prev = face_pts, face_px, grey

    def _track(self, grey: np.ndarray) -> None:
        idx = np.flatnonzero(self.alive)
        moved, ok = track(self.prev, grey, self.cur[idx])
        self.alive[idx[~ok]] = False
        self.cur[idx[ok]] = moved[ok]
        self.prev = grey

    def result(self) -> CueScore:
        detail = {"points": 0 if self.ref is None else len(self.ref),
                  "points_tracked": 0 if self.alive is None else int(self.alive.sum()), "frames_moving": len(self.rows)}
        if self.alive is None or len(self.ref) < MIN_POINTS:
            return CueScore(self.name, None, {**detail, "why": "nothing to track around the face"})
        if len(self.rows) < MIN_FRAMES:
            # Too few frames where the face had moved far enough while enough points were still tracked.
            why = ("the surround was lost while tracking" if detail["points_tracked"] < MIN_POINTS
                   else "too few frames in which the face had moved to tell")
            return CueScore(self.name, None, {**detail, "why": why})
        rows = np.array(self.rows)
        top = rows[rows[:, 0] >= np.median(rows[:, 0])]  # the frames with the most motion decide most clearly
        share = float(np.median(top[:, 1]))
        detail["follow"] = round(share, 3)
        if share < MIN_FOLLOW:
            return CueScore(self.name, None, {**detail, "why": "the surround does not move with the face"})
        return CueScore(self.name, FOLLOWS_VALUE, detail)
