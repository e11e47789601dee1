"""Cheap pixel access for the cues: grey (luma) windows of the upright frame without converting to RGB.

For the usual I420 frames with no rotation, the luma window is a slice of the decoder's Y plane (no conversion at
all), and for a turned I420 frame only the window is turned; other pixel formats go through an RGB conversion and
are turned grey (``decode.region_luma``).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..decode import Frame, region_luma, upright_size


def luma_scaled(frame: Frame, x0: int, y0: int, x1: int, y1: int, out_w: int, out_h: int) -> np.ndarray:
    """The luma window resized (area averaging) to out_w x out_h; windows partly outside the frame are padded."""
    width, height = upright_size(frame)
    window = region_luma(frame, x0, y0, x1, y1)
    if window.size == 0:
        return np.zeros((out_h, out_w), np.uint8)
    # A whole-factor area average first, on the part inside the frame (OpenCV's fast block path; a fractional
    # INTER_AREA from a big window costs ~10x more), then the padding and the small remaining ratio.
    factor = max(1, min((int(x1) - int(x0)) // out_w, (int(y1) - int(y0)) // out_h))
    if factor >= 2 and min(window.shape) >= factor:
        h, w = window.shape[0] // factor * factor, window.shape[1] // factor * factor
        window = cv2.resize(window[:h, :w], (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    pad = (max(0, -int(y0)), max(0, int(y1) - height), max(0, -int(x0)), max(0, int(x1) - width))
    if any(pad):
        window = cv2.copyMakeBorder(window, *(-(-p // factor) for p in pad), cv2.BORDER_REPLICATE)
    if window.shape[:2] == (out_h, out_w):
        return window
    return cv2.resize(window, (out_w, out_h), interpolation=cv2.INTER_AREA)
