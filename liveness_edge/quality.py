"""Face quality: a score in [0, 1] and the reasons a face is not good enough to select.

The score is the geometric mean of five documented factors, each in [0, 1], so one bad factor pulls it down hard:
- size: the shorter side of the face box against 112 px (1.0 at or above; the liveness crops are 80-128 px);
- sharpness: variance of the Laplacian of the grey face crop, 1 - exp(-var / 100) (motion blur and defocus);
- pose: frontality from the detector's keypoints (eyes, nose tip); roll does not count, since the crops are aligned
  to level eyes. Yaw is the nose's sideways offset from the eye midpoint, pitch how far its drop below the eye line
  is from a frontal face's 0.6 eye distances: 1 - max(yaw, 0.7 x pitch) / (0.6 x eye distance);
- landmarks: the face mesh's face-presence confidence (occlusion, not-a-face);
- exposure: penalizes dark (< 60 mean), bright (> 200 mean) and clipped (< 5 or > 250) pixels.
A face is selected when its shorter side >= quality.min-face-px and its score >= quality.min-score.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .detect import FaceBox

FULL_SIZE_PX = 112.0


@dataclass(frozen=True)
class Quality:
    score: float
    size: float
    sharpness: float
    pose: float
    landmarks: float
    exposure: float


def size_factor(face: FaceBox) -> float:
    return float(min(1.0, max(0.0, min(face.width, face.height)) / FULL_SIZE_PX))


def sharpness_factor(grey: np.ndarray) -> float:
    variance = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    return float(1.0 - np.exp(-variance / 100.0))


def pose_factor(face: FaceBox) -> float:
    right_eye, left_eye, nose = face.keypoints[0], face.keypoints[1], face.keypoints[2]
    eye_distance = float(np.linalg.norm(left_eye - right_eye))
    if eye_distance < 1e-3:
        return 0.0
    mid = (left_eye + right_eye) / 2.0
    along = (left_eye - right_eye) / eye_distance
    offset = nose - mid
    yaw = abs(float(offset @ along))  # sideways shift of the nose: head turned
    # Pitch: the nose sits about 0.5-0.7 eye distances below the eye line in a frontal face.
    down = float(offset @ np.array([-along[1], along[0]]))
    pitch = abs(down - 0.6 * eye_distance)
    return float(max(0.0, 1.0 - max(yaw, 0.7 * pitch) / (0.6 * eye_distance)))


def exposure_factor(grey: np.ndarray) -> float:
    mean = float(grey.mean())
    clipped = float(((grey < 5) | (grey > 250)).mean())
    brightness = 1.0
    if mean < 60:
        brightness = max(0.0, mean / 60.0)
    elif mean > 200:
        brightness = max(0.0, (255.0 - mean) / 55.0)
    return float(max(0.0, brightness * (1.0 - 2.0 * clipped)))


def assess(face: FaceBox, face_rgb: np.ndarray, landmark_presence: float) -> Quality:
    """Quality of ``face`` from its aligned crop (RGB, any size) and the mesh presence score."""
    grey = cv2.cvtColor(face_rgb, cv2.COLOR_RGB2GRAY)
    factors = (size_factor(face), sharpness_factor(grey), pose_factor(face), float(landmark_presence),
               exposure_factor(grey))
    score = float(np.prod(np.clip(factors, 1e-6, 1.0)) ** (1.0 / len(factors)))
    return Quality(round(score, 6), *factors)
