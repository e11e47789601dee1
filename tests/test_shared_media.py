"""Real labelled clips from ../shared/data (skipped with a reason when it is absent)."""

import base64
import csv

import cv2
import numpy as np
import pytest

from liveness_edge.config import load_config
from liveness_edge.detect import FaceDetector
from liveness_edge.models import read_manifest
from liveness_edge.runtime import Model, choose_backend
from media import ROOT, SHARED_DATA

pytestmark = pytest.mark.shared


def labelled(kind: str, label_prefix: str):
    path = SHARED_DATA / "labels.csv"
    if not path.exists():
        return []
    with open(path) as fh:
        return [row["file"] for row in csv.DictReader(fh) if row["kind"] == kind and row["label"].startswith(label_prefix)]


@pytest.fixture(scope="module")
def second_opinion():
    """The short-range BlazeFace, a different model from the daemon's default detector, to check the bbox."""
    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    entry = read_manifest(cfg.models.dir)["models"]["face_detection_short_range"]
    model = Model(cfg.models.dir / entry["variants"]["float32"]["file"], choose_backend("cpu", 1))
    return FaceDetector(model, 0.5)


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("name", labelled("video", "live"))
def test_every_live_clip_answers_with_the_face(daemon, needs_shared, second_opinion, name):
    clip = (needs_shared / name).read_bytes()
    content_type = "video/webm" if name.endswith(".webm") else "video/mp4"
    status, _, body = daemon.post_clip(clip, "return_photo=true", content_type=content_type)
    assert status == 200, body
    face = body["best_face"]
    photo = cv2.imdecode(np.frombuffer(base64.b64decode(face["photo"]), np.uint8), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    scale = 128 / max(rgb.shape[:2])
    small = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    others = second_opinion.detect(small, 1 / scale)
    assert others, f"the short-range detector finds no face in the returned photo of {name}"
    box = face["bbox"]
    ours = (box["left"], box["top"], box["right"], box["bottom"])
    best = max(iou(ours, (o.x0, o.y0, o.x1, o.y1)) for o in others)
    assert best > 0.5, f"{name}: bbox {ours} overlaps the other detector's face by IoU {best:.2f}"


def test_replay_with_the_real_person_behind_the_phone(daemon, daemon_biggest, needs_shared):
    clip = (needs_shared / "spoof/zubaircrackscode_fake_replay.webm").read_bytes()
    status, _, rejected = daemon.post_clip(clip, "return_frames=true", content_type="video/webm")
    status_biggest, _, biggest = daemon_biggest.post_clip(clip, "return_frames=true", content_type="video/webm")
    assert status_biggest == 200, biggest
    if status == 200:
        # Fewer frames kept under reject than under biggest: the two-face frames were dropped, and only those.
        kept_rejecting = {f["frame_no"] for f in rejected["frames"]}
        kept_biggest = {f["frame_no"] for f in biggest["frames"]}
        assert kept_rejecting < kept_biggest, (sorted(kept_rejecting), sorted(kept_biggest))
    else:
        assert rejected["code"] in ("MULTIPLE_FACES", "NOT_ENOUGH_FRAMES"), rejected
        assert rejected["dropped"]["multiple_faces"] > 0


def test_rotated_still_is_turned_upright(needs_shared, second_opinion):
    from liveness_edge.config import Limits
    from liveness_edge.decode import Decoder, small_rgb

    data = (needs_shared / "stills/silentface_image_T1.jpg").read_bytes()
    with Decoder(data, Limits(10485760, 60, 30, 1920, 1080), 1) as decoder:
        frame = next(decoder.frames())
        small, scale = small_rgb(frame, 128)
    assert small.shape[0] > small.shape[1]  # stored landscape, shown portrait
    faces = second_opinion.detect(small, 1 / scale)
    assert len(faces) == 1
    right_eye, left_eye, nose = faces[0].keypoints[:3]
    assert right_eye[0] < left_eye[0] and nose[1] > right_eye[1]  # eyes above the nose: upright
