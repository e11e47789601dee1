"""3D consistency (planarity): a photo or a screen is a plane, so points on it move by a homography; a real head's
points do not (the nose moves against the cheeks and ears as the head turns).

Per-frame face-mesh landmarks are not precise enough for this (the mesh fits a 3D face to a tilted photo, so its
points sit 1.7-2.9 % of the inter-ocular distance off the true planar mapping). Instead, points are seeded from the
first frame's landmarks and TRACKED with pyramidal Lucas-Kanade optical flow (forward-backward checked) in a fixed
grey window around the face. For every later frame, the tracked points against their first positions are fitted by a
homography and by a similarity (rotation + scale + shift); ``ratio = homography residual / similarity residual``.
A tilted or waved photo: the similarity leaves the perspective unexplained but the homography explains it, so the
ratio is small (median 0.32 on hand-held synthetic prints; 0.57 at most, bent ones). A real head: neither model
explains parallax, ratio >= 0.64 on every moving live clip here (docs/accuracy.md).

Abstains when the motion is too small to decide (the similarity residual stays under ``min_motion`` of the
inter-ocular distance: a still photo and a still head look alike), or when too few points survive tracking.
A video replay shows a real head inside the screen: this cue cannot catch it. So it is one-sided: it reports a value
(attack evidence, < 0.5) only when the points move like a plane, and abstains when they move like a 3D head, since
that is what a live head and a replayed one both do.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import CueScore, EveryNth
from .pixels import luma_scaled
from .tracking import similarity_lsq, track

# Mesh points spread over the face at different depths: nose ridge/tip, cheeks, jaw line, brows, eye corners, chin.
SEED_POINTS = (1, 4, 5, 6, 195, 197, 168, 2, 98, 327, 33, 133, 263, 362, 70, 105, 107, 336, 334, 300, 50, 280,
               117, 346, 123, 352, 205, 425, 187, 411, 234, 454, 93, 323, 132, 361, 58, 288, 172, 397, 150, 379,
               152, 148, 377, 176, 400, 10, 109, 338, 67, 297, 103, 332, 54, 284, 21, 251, 127, 356, 162, 389)
WINDOW_SCALE = 1.8  # tracking window: the first face box scaled about its centre
# The window is tracked at this size (pixels). The cue measures how much of the points' motion a homography leaves
# unexplained, so it is limited by the tracking noise in face units: at 192 px hand-held synthetic prints measured
# ratios of 0.26-0.60 (overlapping a live clip at 0.60); at 320 px 0.20-0.57 with every moving live clip >= 0.64,
# for +0.05 ms a frame. Beyond 320 px live ratios got noisier (fewer points survive the forward-backward check).
WORK_SIZE = 320
MIN_POINTS = 12
# Track every EVERY-th selected frame: the parallax to the first frame is what is measured, not frame-to-frame flow,
# so skipping frames loses little (the LK pyramid absorbs the doubled step) and halves the cost.
EVERY = 2
# Similarity residual (fraction of the inter-ocular distance) below which a frame pair is too still to use. Too
# little motion can only push the ratio UP (tracking noise is not a homography: pure noise gives a ratio near 1), so
# this gate guards against chance, not against a still live person being called flat: at 0.01 the still live clips
# here measure 0.92-0.96 and abstain.
MIN_MOTION = 0.01
# ratio -> P(live): a logistic centred between the measured groups (hand-held prints: median 0.32, bent ones up to
# 0.57; moving live heads: 0.64 at least). This centre was read off the evaluation clips (docs/accuracy.md gives the
# figures at 0.45 and 0.60). Near it the value is near 0.5, i.e. almost no vote. Ratios at or above CENTRE abstain
# (see result()).
CENTRE, SLOPE = 0.52, 0.05


def residuals(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """RMS residual of the best homography and of the best similarity mapping ref -> cur (same units)."""
    ref32, cur32 = ref.astype(np.float32), cur.astype(np.float32)
    H, _ = cv2.findHomography(ref32, cur32, 0)
    if H is None:
        return float("nan"), float("nan")
    proj = cv2.perspectiveTransform(ref32.reshape(-1, 1, 2), H).reshape(-1, 2)
    res_h = float(np.sqrt(np.mean(np.sum((proj - cur) ** 2, axis=1))))
    # Least-squares similarity (closed form) on all points: the same least-squares sense as the homography.
    sim = similarity_lsq(ref, cur)
    res_s = float(np.sqrt(np.mean(np.sum((ref @ sim[:, :2].T + sim[:, 2] - cur) ** 2, axis=1))))
    return res_h, res_s


class PlanarityCue:
    name = "planarity"

    def __init__(self, min_motion: float = MIN_MOTION, every: int = EVERY):
        self.min_motion = min_motion
        self.sampled = EveryNth(every)  # track every n-th selected frame
        self.window = None  # x0, y0, side in frame pixels
        self.prev = None
        self.ref = None  # (N, 2) first positions, working pixels
        self.cur = None
        self.alive = None  # mask of surviving points
        self.iod = 1.0
        self.ratios: list[float] = []
        self.motions: list[float] = []

    def observe(self, frame, sample) -> None:
        if not self.sampled.take():
            return
        if self.alive is not None and self.alive.sum() < MIN_POINTS:
            return
        face = sample.face
        if self.window is None:
            cx, cy = face.center
            side = max(face.width, face.height) * WINDOW_SCALE
            self.window = (cx - side / 2, cy - side / 2, side)
        x0, y0, side = self.window
        grey = luma_scaled(frame, math.floor(x0), math.floor(y0), math.floor(x0 + side), math.floor(y0 + side),
                           WORK_SIZE, WORK_SIZE)
        zoom = WORK_SIZE / side
        if self.prev is None:
            pts = sample.landmarks.points[list(SEED_POINTS), :2]
            self.ref = ((pts - [math.floor(x0), math.floor(y0)]) * zoom).astype(np.float32)
            self.cur = self.ref.copy()
            self.alive = np.ones(len(self.ref), bool)
            eyes = sample.landmarks.points[[33, 263], :2]
            self.iod = max(float(np.linalg.norm(eyes[0] - eyes[1])) * zoom, 1.0)
            self.prev = grey
            return
        idx = np.flatnonzero(self.alive)
        moved, ok = track(self.prev, grey, self.cur[idx])
        ok &= np.all((moved >= 0) & (moved < WORK_SIZE), axis=1)
        self.alive[idx[~ok]] = False
        self.cur[idx[ok]] = moved[ok]
        self.prev = grey
        keep = np.flatnonzero(self.alive)
        if len(keep) < MIN_POINTS:
            return
        res_h, res_s = residuals(self.ref[keep], self.cur[keep])
        if not (math.isfinite(res_h) and math.isfinite(res_s)):
            return
        motion = res_s / self.iod
        self.motions.append(motion)
        if motion >= self.min_motion:
            self.ratios.append(res_h / res_s)

    def result(self) -> CueScore:
        detail = {"frames_moving": len(self.ratios), "max_motion": round(max(self.motions, default=0.0), 4),
                  "points": int(self.alive.sum()) if self.alive is not None else 0}
        if len(self.ratios) < 3:
            return CueScore(self.name, None, {**detail, "why": "too little out-of-plane motion to decide"})
        # The most decisive frames: the ones with the most motion carry the clearest parallax; take the median ratio
        # of the frames in the upper half of motion.
        motions = np.array(self.motions)[np.array(self.motions) >= self.min_motion]
        ratios = np.array(self.ratios)
        top = ratios[motions >= np.median(motions)]
        ratio = float(np.median(top))
        detail["ratio"] = round(ratio, 4)
        if ratio >= CENTRE:
            # Moves like a 3D head. That is no evidence of life: a replayed video shows a real head too. So the cue is
            # one-sided, like bezel: it speaks only when the face moves like a flat sheet.
            return CueScore(self.name, None, {**detail, "why": "moves like a 3D head (a live one or a replayed one)"})
        value = 1.0 / (1.0 + math.exp(-(ratio - CENTRE) / SLOPE))
        return CueScore(self.name, round(value, 6), detail)
