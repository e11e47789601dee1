import numpy as np
import pytest

from liveness_edge.config import Limits, load_config
from liveness_edge.decode import Decoder, small_rgb
from liveness_edge.detect import decode_detections, ssd_anchors, weighted_nms
from liveness_edge.models import load_models
from media import ROOT, face_clip

LIMITS = Limits(10485760, 60, 30, 1920, 1080)


@pytest.fixture(scope="module")
def models():
    return load_models(load_config(ROOT / "config" / "liveness-edge.ini"), warm=False)


def test_anchor_counts_match_the_models():
    assert ssd_anchors(128).shape == (896, 2)
    assert ssd_anchors(192).shape == (2304, 2)
    # First short-range anchor: the centre of the first 16x16 cell, twice.
    assert np.allclose(ssd_anchors(128)[:2], [[1 / 32, 1 / 32]] * 2)


def test_decoding_places_a_box_at_its_anchor():
    anchors = ssd_anchors(128)
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full((896, 1), -10.0, np.float32)
    k = 600
    logits[k] = 5.0
    regressors[k, 2:4] = 32.0  # 32 input pixels wide and high
    found = decode_detections(regressors, logits, 128, 0.5)
    assert len(found) == 1
    box, score, kps = found[0]
    cx, cy = anchors[k]
    assert np.allclose(box, [cx - 0.125, cy - 0.125, cx + 0.125, cy + 0.125], atol=1e-6)
    assert score == pytest.approx(1 / (1 + np.exp(-5.0)))
    assert np.allclose(kps, [anchors[k]] * 6)


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.11, 0.1, 0.31, 0.3], [0.6, 0.6, 0.8, 0.8]], np.float32)
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    out = weighted_nms(boxes, scores, kps)
    assert len(out) == 2
    merged = out[0][0]
    assert 0.1 < merged[0] < 0.11 and out[0][1] == pytest.approx(0.9)


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (480, 640)])
def test_finds_the_real_face_in_frame_pixels(models, size):
    clip = face_clip(frames=1, width=size[0], height=size[1])
    with Decoder(clip, LIMITS, 1) as decoder:
        frame = next(decoder.frames())
        small, scale = small_rgb(frame, models.detector.input_size)
        faces = models.detector.detect(small, 1 / scale)
    assert len(faces) == 1
    face = faces[0]
    # The portrait (250x300, face in its upper middle) is pasted at the frame centre.
    cx, cy = face.center
    assert abs(cx - size[0] / 2) < 60 and abs(cy - size[1] / 2) < 90
    assert 60 < face.width < 220
    right_eye, left_eye = face.keypoints[0], face.keypoints[1]
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert face.y0 < right_eye[1] < face.center[1]


def test_two_faces_are_two_detections(models):
    clip = face_clip(frames=1, width=960, height=480, faces=2)
    with Decoder(clip, LIMITS, 1) as decoder:
        frame = next(decoder.frames())
        small, scale = small_rgb(frame, models.detector.input_size)
        faces = models.detector.detect(small, 1 / scale)
    assert len(faces) == 2
    assert faces[0].center[0] < 480 < faces[1].center[0] or faces[1].center[0] < 480 < faces[0].center[0]
