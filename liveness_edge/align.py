"""Face crops from the full-resolution frame: square, centred on the face, optionally rotated so the eyes are level.

Only the window of the frame under the crops is converted from YUV (decode.window_rgb), once per face, so a 1080p
frame costs a face-sized conversion, not a full one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .decode import Frame, window_rgb
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

    ``shrink_to_fit`` lowers the scale (never below 1) where the square would leave the frame, as MiniFASNetV2's
    spec in ../shared/README.md says; otherwise the outside is padded black. (Silent-Face's own code slides the crop
    inside the frame instead; measured, that scored 3 of the 11 live clips lower: docs/accuracy.md.)
    """
    cx, cy = face.center
    side = max(face.width, face.height)
    if shrink_to_fit and frame_size is not None:
        width, height = frame_size
        room = 2.0 * min(cx, cy, width - cx, height - cy)
        scale = max(1.0, min(scale, room / max(side, 1e-6)))
    return Roi(cx, cy, side * scale, eye_angle(face) if align else 0.0)


def _reach(roi: Roi) -> float:
    """Half the side of the axis-aligned box that holds the (possibly rotated) square."""
    angle = math.radians(roi.angle)
    return roi.side / 2.0 * (abs(math.cos(angle)) + abs(math.sin(angle)))


@dataclass(frozen=True)
class FaceWindow:
    """One converted window of the frame from which every crop of a face is cut.

    The window covers all the crops asked for and is area-downscaled so that the finest crop still gets at least two
    window pixels per output pixel: a 700 px face in a 1080x1920 frame converts a few hundred pixels, not a million.
    Window pixel (u, v) shows frame point (ox + u / sx, oy + v / sy).
    """

    rgb: np.ndarray
    ox: int
    oy: int
    sx: float
    sy: float

    @classmethod
    def from_frame(cls, frame: Frame, needs: list[tuple[Roi, int]]) -> "FaceWindow":
        x0 = min(int(math.floor(r.cx - _reach(r))) for r, _ in needs)
        y0 = min(int(math.floor(r.cy - _reach(r))) for r, _ in needs)
        x1 = max(int(math.ceil(r.cx + _reach(r))) + 1 for r, _ in needs)
        y1 = max(int(math.ceil(r.cy + _reach(r))) + 1 for r, _ in needs)
        shrink = max(1.0, min(r.side / size for r, size in needs) / 2.0)
        return cls(*window_rgb(frame, x0, y0, x1, y1, shrink))

    def crop(self, roi: Roi, out_size: int | tuple[int, int]) -> np.ndarray:
        """RGB crop of ``roi`` resized to out_size (h, w); pixels outside the frame are black."""
        out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
        if self.rgb.size == 0:
            return np.zeros((out_h, out_w, 3), np.uint8)
        to_window = np.array([[1.0 / self.sx, 0, self.ox], [0, 1.0 / self.sy, self.oy], [0, 0, 1.0]])
        matrix = roi_matrix(roi, (out_h, out_w)) @ to_window
        return cv2.warpAffine(self.rgb, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)


def crop(frame: Frame, roi: Roi, out_size: int | tuple[int, int]) -> np.ndarray:
    """One crop straight from the frame (when only one is needed)."""
    size = out_size if isinstance(out_size, int) else max(out_size)
    return FaceWindow.from_frame(frame, [(roi, size)]).crop(roi, out_size)


def roi_matrix(roi: Roi, out_size: int | tuple[int, int]) -> np.ndarray:
    """The 2x3 affine from frame pixels to crop pixels for ``roi`` (out_size: side, or (h, w))."""
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    zoom = out_w / roi.side
    matrix = cv2.getRotationMatrix2D((roi.cx, roi.cy), roi.angle, zoom)
    matrix[0, 2] += out_w / 2.0 - roi.cx
    matrix[1, 2] += out_h / 2.0 - roi.cy
    return matrix


def to_frame_coords(points: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """Map (N, 2) crop-pixel points back to frame pixels."""
    inverse = cv2.invertAffineTransform(roi_matrix(roi, out_size))
    return points @ inverse[:, :2].T + inverse[:, 2]
