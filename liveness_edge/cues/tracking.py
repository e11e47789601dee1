"""Point tracking shared by the motion cues (planarity, surround): pyramidal Lucas-Kanade with a forward-backward
check, and the least-squares similarity that describes a rigid in-plane motion."""

from __future__ import annotations

import cv2
import numpy as np

FB_MAX = 0.5  # forward-backward error limit, working pixels
LK_WIN, LK_LEVELS = (15, 15), 2
LK = dict(winSize=LK_WIN, maxLevel=LK_LEVELS, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))


def track(prev: np.ndarray, grey: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the (N, 2) ``points`` of ``prev`` moved to in ``grey``, and which of them to trust: found both ways and
    back within FB_MAX of where they started (a point that drifts onto another texture fails that)."""
    p0 = points.astype(np.float32).reshape(-1, 1, 2)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, grey, p0, None, **LK)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(grey, prev, p1, None, **LK)
    fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
    ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < FB_MAX)
    return p1.reshape(-1, 2), ok


def similarity_lsq(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama without reflection) mapping ref -> cur, as a 2x3 matrix."""
    mr, mc = ref.mean(0), cur.mean(0)
    a, b = ref - mr, cur - mc
    cov = b.T @ a / len(ref)
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    D = np.diag([1.0, d])
    rot = u @ D @ vt
    scale = np.trace(np.diag(s) @ D) / max(np.mean(np.sum(a ** 2, axis=1)), 1e-12)
    t = mc - scale * rot @ mr
    return np.hstack([scale * rot, t[:, None]])
