from dataclasses import fields

import cv2
import numpy as np

from liveness_edge.detect import FaceBox
from liveness_edge.quality import assess, exposure_factor, pose_factor, sharpness_factor, size_factor
from media import astronaut_rgb


def frontal(x0=100.0, size=150.0, nose_dx=0.0):
    kps = np.array([[x0 + 0.3 * size, 60 + 0.35 * size], [x0 + 0.7 * size, 60 + 0.35 * size],
                    [x0 + 0.5 * size + nose_dx, 60 + 0.35 * size + 0.24 * size], [x0 + 0.5 * size, 60 + 0.75 * size],
                    [x0, 60 + 0.4 * size], [x0 + size, 60 + 0.4 * size]], np.float32)
    return FaceBox(x0, 60, x0 + size, 60 + size, 0.9, kps)


def face_crop():
    return astronaut_rgb()[40:220, 160:320]


def test_blur_lowers_sharpness():
    grey = cv2.cvtColor(face_crop(), cv2.COLOR_RGB2GRAY)
    assert sharpness_factor(grey) > sharpness_factor(cv2.GaussianBlur(grey, (0, 0), 4)) + 0.3


def test_dark_and_overexposed_faces_lose_exposure():
    grey = cv2.cvtColor(face_crop(), cv2.COLOR_RGB2GRAY)
    assert exposure_factor(grey) > 0.8
    assert exposure_factor((grey * 0.15).astype(np.uint8)) < 0.4
    assert exposure_factor(np.full_like(grey, 255)) == 0.0


def test_turned_head_loses_pose():
    assert pose_factor(frontal()) > 0.9
    assert pose_factor(frontal(nose_dx=40)) < 0.6


def test_size_factor_saturates():
    assert size_factor(frontal(size=56)) == 0.5 and size_factor(frontal(size=300)) == 1.0


def test_score_is_high_for_a_good_face_and_drops_with_any_bad_factor():
    good = assess(frontal(), face_crop(), 0.99)
    assert good.score > 0.8
    assert assess(frontal(), face_crop(), 0.05).score < good.score - 0.2
    blurred = cv2.GaussianBlur(face_crop(), (0, 0), 5)
    assert assess(frontal(), blurred, 0.99).score < good.score - 0.1
    assert 0.0 <= good.score <= 1.0 and {f.name for f in fields(good)} == {"score", "size", "sharpness", "pose", "landmarks", "exposure"}
