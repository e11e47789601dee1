"""Frames -> face boxes and keypoints with MediaPipe BlazeFace (short- or full-range), decoded here once.

BlazeFace is an SSD: the model outputs, for every anchor, a score logit and 16 regressors (box centre offset, size,
and six keypoints: the subject's right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion).
The anchors follow MediaPipe's SsdAnchorsCalculator options for each model; overlapping boxes are merged with
MediaPipe's weighted NMS (a score-weighted average of the cluster, steadier than plain NMS from frame to frame).

The detector sees the frame letterboxed into its square input (aspect kept, zero padding); boxes are mapped back to
original frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .runtime import Model

#: MediaPipe anchor options: (input size, strides, anchors per cell from the layer options).
ANCHOR_SPECS = {
    128: {"strides": (8, 16, 16, 16), "min_scale": 0.1484375, "max_scale": 0.75},  # short-range
    192: {"strides": (4,), "min_scale": 0.1484375, "max_scale": 0.75},  # full-range
}
NMS_IOU = 0.3
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class FaceBox:
    """A face in original frame pixels. ``keypoints`` is a (6, 2) array in the order of KEYPOINTS."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    def clipped(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Integer (left, top, right, bottom) clipped to the frame, as the API reports the bbox."""
        return (
            int(round(min(max(self.x0, 0), width))),
            int(round(min(max(self.y0, 0), height))),
            int(round(min(max(self.x1, 0), width))),
            int(round(min(max(self.y1, 0), height))),
        )


@lru_cache(maxsize=4)
def ssd_anchors(input_size: int) -> np.ndarray:
    """Anchor centres (N, 2) in [0,1] for a BlazeFace input size, as MediaPipe's SsdAnchorsCalculator builds them.

    Consecutive layers with the same stride share one grid; each layer contributes two anchors per cell
    (aspect ratio 1 plus the interpolated scale), and with fixed_anchor_size every anchor is 1x1.
    """
    strides = ANCHOR_SPECS[input_size]["strides"]
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += 2
            layer += 1
        if len(strides) == 1:
            per_cell = 1  # full-range: one layer, interpolated_scale_aspect_ratio 0 -> a single anchor per cell
        cells = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode_detections(regressors: np.ndarray, logits: np.ndarray, input_size: int,
                      min_score: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Raw model outputs for one image -> [(box [x0,y0,x1,y1] in [0,1] input coords, score, keypoints (6,2))]."""
    anchors = ssd_anchors(input_size)
    regressors = regressors.reshape(len(anchors), -1)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -80.0, 80.0)))
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    reg = regressors[keep] / float(input_size)
    anc = anchors[keep]
    cx = reg[:, 0] + anc[:, 0]
    cy = reg[:, 1] + anc[:, 1]
    half_w, half_h = reg[:, 2] / 2.0, reg[:, 3] / 2.0
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    keypoints = reg[:, 4:16].reshape(-1, 6, 2) + anc[:, None, :]
    return weighted_nms(boxes, scores[keep], keypoints)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray,
                 iou_threshold: float = NMS_IOU) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted NMS: each cluster becomes the score-weighted mean of its members, scored by its best."""
    order = np.argsort(-scores)
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    remaining = np.ones(len(boxes), dtype=bool)
    out = []
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        overlap = _iou(boxes[i], boxes) >= iou_threshold
        members = overlap & remaining
        remaining &= ~members
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(0) / weights.sum()
        kps = (keypoints[members] * weights[:, :, None]).sum(0) / weights.sum()
        out.append((box, float(scores[i]), kps))
    return out


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Place an RGB image whose longer side is ``size`` in a size x size canvas; returns (canvas, scale, pad_x, pad_y).

    The image is expected already scaled (decode.small_rgb does it in libswscale); scale maps its pixels to [0,1].
    """
    h, w = image.shape[:2]
    canvas = np.zeros((size, size, 3), np.uint8)
    pad_x, pad_y = (size - w) // 2, (size - h) // 2
    canvas[pad_y : pad_y + h, pad_x : pad_x + w] = image
    return canvas, 1.0 / size, pad_x / size, pad_y / size


class FaceDetector:
    """BlazeFace on a loaded model. ``detect`` takes the detector-sized RGB image from decode.small_rgb."""

    def __init__(self, model: Model, min_score: float = 0.5):
        self.model = model
        self.input_size = model.input_hw[0]
        if self.input_size not in ANCHOR_SPECS:
            raise ValueError(f"no BlazeFace anchor layout for input size {self.input_size}")
        self.min_score = min_score
        # Output order differs between the short- and full-range files; the regressors are the 16-wide tensor.
        self._reg_index = next(i for i, spec in enumerate(model.outputs) if spec.shape[-1] == 16)
        self._score_index = 1 - self._reg_index

    def detect(self, small_rgb: np.ndarray, scale_to_original: float) -> list[FaceBox]:
        """Faces in original frame pixels; ``scale_to_original`` = original pixels per pixel of ``small_rgb``."""
        canvas, _unit, pad_x, pad_y = letterbox(small_rgb, self.input_size)
        tensor = canvas.astype(np.float32) * (2.0 / 255.0) - 1.0  # BlazeFace takes RGB in [-1, 1]
        outputs = self.model.run(tensor[None])
        found = decode_detections(outputs[self._reg_index][0], outputs[self._score_index][0], self.input_size,
                                  self.min_score)
        to_px = self.input_size * scale_to_original
        faces = []
        for box, score, kps in found:
            x0, y0 = (box[0] - pad_x) * to_px, (box[1] - pad_y) * to_px
            x1, y1 = (box[2] - pad_x) * to_px, (box[3] - pad_y) * to_px
            points = (kps - np.array([pad_x, pad_y], np.float32)) * to_px
            faces.append(FaceBox(float(x0), float(y0), float(x1), float(y1), score, points.astype(np.float32)))
        return faces
