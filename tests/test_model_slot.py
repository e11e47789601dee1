"""The pluggable model slot, proven with a strong third-party model configured through a spec file alone.

MiniFASNetV2 (../shared/models, never bundled) is run two ways: through the daemon's slot (config only), and by an
independent reference written here from its published spec (../shared/README.md): face box scaled 2.7x about its
centre (shrunk where it would leave the frame), resized to 80x80, BGR, raw 0..255, NCHW, softmax index 1 = live.
"""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from liveness_edge.align import FaceWindow, crop
from liveness_edge.config import Limits, parse_config
from liveness_edge.decode import Decoder, full_bgr, small_rgb
from liveness_edge.models import load_models
from liveness_edge.runtime import Model
from conftest import Daemon, write_config
from media import ROOT, SHARED

SPEC = ROOT / "config" / "examples" / "minifasnet_v2.yaml"
MODEL = SHARED / "models" / "minifasnet_v2_80x80.tflite"
LIMITS = Limits(10485760, 60, 30, 1920, 1080)


@pytest.fixture(scope="module")
def slot_models():
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is absent (the third-party model lives in ../shared, never in this repository)")
    cfg = parse_config(f'models:\n  liveness-spec: "{SPEC}"\n', source=str(ROOT / "config" / "x.ini"))
    return load_models(cfg, warm=False)


def reference_score(bgr: np.ndarray, box, model: Model) -> float:
    """MiniFASNetV2 per its spec, without any daemon code: crop, resize, BGR raw NCHW, softmax[1]."""
    height, width = bgr.shape[:2]
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0)
    scale = min(2.7, 2 * min(cx, cy, width - cx, height - cy) / side)
    scale = max(scale, 1.0)
    half = side * scale / 2
    src = np.float32([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]])
    dst = np.float32([[0, 0], [80, 0], [0, 80]])
    crop = cv2.warpAffine(bgr, cv2.getAffineTransform(src, dst), (80, 80), flags=cv2.INTER_AREA)
    tensor = crop.astype(np.float32).transpose(2, 0, 1)[None]
    return float(model.run(tensor)[0][0, 1])


@pytest.mark.parametrize("name", ["stills/silentface_image_T1.jpg", "spoof/silentface_image_F1_print.jpg",
                                  "spoof/silentface_image_F2_replay.jpg", "live/fellway_me.mp4",
                                  "spoof/nhtlongcs_zalo_train_1_spoof.mp4"])
def test_slot_scores_match_the_reference_implementation(slot_models, needs_shared, name):
    data = (needs_shared / name).read_bytes()
    liveness = slot_models.liveness
    assert liveness.spec.layout == "NCHW" and liveness.spec.colour == "BGR" and liveness.spec.live_index == 1
    diffs = []
    with Decoder(data, LIMITS, 5) as decoder:
        for frame in decoder.frames():
            small, scale = small_rgb(frame, slot_models.detector.input_size)
            faces = slot_models.detector.detect(small, 1 / scale)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.area)
            roi = liveness.roi(frame, face)
            crop = FaceWindow.from_frame(frame, [(roi, 80)]).crop(roi, 80)
            ours = float(liveness.scores(crop[None], 1)[0])
            ref = reference_score(full_bgr(frame), (face.x0, face.y0, face.x1, face.y1), liveness.model)
            diffs.append(abs(ours - ref))
    assert diffs, f"no face found in {name}"
    assert max(diffs) < 0.05, f"{name}: slot vs reference differ by up to {max(diffs):.3f}"


def test_slot_model_scores_as_the_spec_says_on_labelled_stills(slot_models, needs_shared):
    """The spec's reference behaviour: the live still scores live, the print and the tablet replay do not."""
    scores = {}
    for name in ("stills/silentface_image_T1.jpg", "spoof/silentface_image_F1_print.jpg",
                 "spoof/silentface_image_F2_replay.jpg"):
        with Decoder((needs_shared / name).read_bytes(), LIMITS, 1) as decoder:
            frame = next(decoder.frames())
            small, scale = small_rgb(frame, slot_models.detector.input_size)
            face = max(slot_models.detector.detect(small, 1 / scale), key=lambda f: f.area)
            roi = slot_models.liveness.roi(frame, face)
            scores[name] = float(slot_models.liveness.scores(crop(frame, roi, 80)[None], 1)[0])
    assert scores["stills/silentface_image_T1.jpg"] > 0.5, scores
    assert scores["spoof/silentface_image_F1_print.jpg"] < 0.5, scores
    assert scores["spoof/silentface_image_F2_replay.jpg"] < 0.5, scores


def test_daemon_serves_with_the_slot_model_and_reports_it(slot_models, needs_shared, tmp_path):
    config = write_config(tmp_path, f'liveness-spec: "{SPEC}"')
    daemon = Daemon(config)
    try:
        status, _, health = daemon.request("GET", "/health")
        live = next(m for m in health["models"] if m["role"] == "liveness")
        assert live["name"] == "minifasnet_v2_80x80" and live["sha256_ok"] is True
        status, _, body = daemon.post_clip((needs_shared / "live/fellway_me.mp4").read_bytes())
        assert status == 200, body
    finally:
        daemon.stop()


def test_a_spec_that_does_not_fit_the_model_is_refused_at_start(tmp_path):
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is absent")
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.read_text().replace("layout: NCHW", "layout: NHWC")
                   .replace("../../../shared", str(SHARED)))
    config = tmp_path / "c.ini"
    config.write_text(f'models:\n  liveness-spec: "{bad}"\nstate-dir: "{tmp_path}"\n')
    result = subprocess.run([sys.executable, "-m", "liveness_edge", "--config", str(config), "models"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "input.layout NHWC" in result.stderr and str(bad) in result.stderr
