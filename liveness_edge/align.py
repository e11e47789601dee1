"""Face crops from the full-resolution frame: square, centred on the face, optionally rotated so the eyes are level.

Only the window of the frame under the crop is converted from YUV (decode.region_rgb), so a 1080p frame costs a
face-sized conversion, not a full one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .decode import Frame, region_rgb, upright_size
from .detect import FaceBox


@dataclass(frozen=True)
class Roi:
    """A square crop: centre and side in frame pixels, rotation in degrees (counter-clockwise, OpenCV's sense)."""

    cx: float
    cy: float
    side: float
    angle: float


def eye_angle(face: FaceBox) -> float:
    """Degrees to rotate the image counter-clockwise so the subject's eyes are level (0 for an upright face)."""
    (rx, ry), (lx, ly) = face.keypoints[0], face.keypoints[1]
    return math.degrees(math.atan2(ly - ry, lx - rx))


def face_roi(face: FaceBox, scale: float, align: bool, frame_size: tuple[int, int] | None = None,
             shrink_to_fit: bool = False) -> Roi:
    """The square around the face box scaled ``scale`` x about its centre.

    ``shrink_to_fit`` lowers the scale (never below 1) where the square would leave the frame, as MiniFASNet's
    reference crop does; otherwise the outside is padded black.
    """
    cx, cy = face.center
    side = max(face.width, face.height)
    if shrink_to_fit and frame_size is not None:
        width, height = frame_size
        room = 2.0 * min(cx, cy, width - cx, height - cy)
        scale = max(1.0, min(scale, room / max(side, 1e-6)))
    return Roi(cx, cy, side * scale, eye_angle(face) if align else 0.0)


def crop(frame: Frame, roi: Roi, out_size: int | tuple[int, int]) -> np.ndarray:
    """RGB crop of ``roi`` resized to out_size (h, w); pixels outside the frame are black."""
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    # Bounding rectangle of the (possibly rotated) square, then one affine warp of that window.
    reach = roi.side / 2.0 * (abs(math.cos(math.radians(roi.angle))) + abs(math.sin(math.radians(roi.angle))))
    x0, y0 = int(math.floor(roi.cx - reach)), int(math.floor(roi.cy - reach))
    x1, y1 = int(math.ceil(roi.cx + reach)) + 1, int(math.ceil(roi.cy + reach)) + 1
    width, height = upright_size(frame)
    cx0, cy0 = max(0, x0), max(0, y0)
    window = region_rgb(frame, cx0, cy0, min(width, x1), min(height, y1))
    if window.size == 0:
        return np.zeros((out_h, out_w, 3), np.uint8)
    zoom = out_w / roi.side
    matrix = cv2.getRotationMatrix2D((roi.cx - cx0, roi.cy - cy0), roi.angle, zoom)
    matrix[0, 2] += out_w / 2.0 - (roi.cx - cx0)
    matrix[1, 2] += out_h / 2.0 - (roi.cy - cy0)
    if zoom < 0.5:
        # Shrinking a lot with bilinear sampling aliases (moire on skin); pre-shrink by area averaging first.
        factor = 0.5 / zoom
        small = cv2.resize(window, None, fx=1.0 / factor, fy=1.0 / factor, interpolation=cv2.INTER_AREA)
        fx = small.shape[1] / window.shape[1]
        fy = small.shape[0] / window.shape[0]
        matrix = matrix @ np.array([[1.0 / fx, 0, 0], [0, 1.0 / fy, 0], [0, 0, 1.0]])
        window = small
    return cv2.warpAffine(window, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def roi_matrix(roi: Roi, out_size: int) -> np.ndarray:
    """The 2x3 affine from frame pixels to crop pixels for ``roi`` (to map crop-space points back)."""
    zoom = out_size / roi.side
    matrix = cv2.getRotationMatrix2D((roi.cx, roi.cy), roi.angle, zoom)
    matrix[0, 2] += out_size / 2.0 - roi.cx
    matrix[1, 2] += out_size / 2.0 - roi.cy
    return matrix


def to_frame_coords(points: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """Map (N, 2) crop-pixel points back to frame pixels."""
    inverse = cv2.invertAffineTransform(roi_matrix(roi, out_size))
    return points @ inverse[:, :2].T + inverse[:, 2]
