"""Face mesh landmarks (MediaPipe face_landmark, 468 points) on the aligned face crop.

Used for quality (the mesh's face-presence confidence; pose comes from the detector's keypoints), for the
texture patch and the normalized crop, and by the clip cues (eyelids, mouth and brows, 3D consistency, context). The
model takes a 192x192 RGB crop in [0, 1] around the detector box scaled 1.5x and rotated so the eyes are level,
as MediaPipe's face-mesh graph does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .align import FaceWindow, Roi, face_roi, to_frame_coords
from .detect import FaceBox
from .runtime import Model

ROI_SCALE = 1.5


@dataclass(frozen=True)
class Landmarks:
    points: np.ndarray  # (468, 3): x, y in frame pixels, z in the crop's pixel units (relative depth)
    presence: float  # the mesh's face-presence probability
    roi: Roi


class LandmarkModel:
    def __init__(self, model: Model):
        self.model = model
        self.size = model.input_hw[0]
        self._mesh_index = next(i for i, spec in enumerate(model.outputs) if spec.shape[-1] == 1404)
        self._flag_index = 1 - self._mesh_index

    def roi(self, face: FaceBox) -> Roi:
        return face_roi(face, ROI_SCALE, align=True)

    def run(self, window: FaceWindow, face: FaceBox) -> tuple[Landmarks, np.ndarray]:
        """Landmarks of ``face`` and the aligned RGB crop they were found on (also the API's normalized face)."""
        roi = self.roi(face)
        image = window.crop(roi, self.size)
        outputs = self.model.run((image.astype(np.float32) / 255.0)[None])
        mesh = outputs[self._mesh_index].reshape(-1, 3)
        presence = float(1.0 / (1.0 + np.exp(-np.clip(float(outputs[self._flag_index].ravel()[0]), -80, 80))))
        xy = to_frame_coords(mesh[:, :2], roi, self.size)
        points = np.concatenate([xy, mesh[:, 2:3] * (roi.side / self.size)], axis=1).astype(np.float32)
        return Landmarks(points, presence, roi), image
