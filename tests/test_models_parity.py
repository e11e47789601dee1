"""int8 vs float32 parity of the committed models on real faces from ../shared/data (no TensorFlow).

Same bars as tools/quantize/build.py: detector boxes IoU >= 0.9 for every float face; landmarks within the
per-face error bar on faces the mesh accepts; liveness scores within 0.05 and the same decision at 0.5 and 0.95.
Uses frames other than the build's calibration frames; skipped when ../shared is absent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "quantize"))

import faces  # noqa: E402  (TensorFlow-free sampling and metrics shared with the build)

MODELS = ROOT / "models" / "tflite"
MANIFEST = json.loads((MODELS / "manifest.json").read_text())["models"]
TEST_FRAMES = (12, 60, 108)  # neither calibration (faces.CALIB_FRAMES: 0, 8, .., 112) nor build-parity frames
MIN_BOX_IOU = 0.9
MAX_SCORE_DIFF = 0.05
MAX_LANDMARK_ERR_PCT = 3.0

pytestmark = [pytest.mark.shared,
              pytest.mark.skipif(not faces.have_shared(), reason="../shared/data absent: no real faces to compare on")]

INT8 = sorted(n for n, e in MANIFEST.items() if "int8" in e["variants"])


@pytest.fixture(scope="module")
def samples():
    det = faces.Litert(MODELS / "face_detection_short_range.tflite")
    got = faces.collect(det, TEST_FRAMES)
    assert sum(len(s.boxes) for s in got) >= 20, "too few faces found in ../shared/data"
    return got


def crops(samples, name, size):
    e = MANIFEST[name]
    lo, hi = e["input"]["range"]
    out = []
    for s in samples:
        for box in sorted(s.boxes, key=lambda b: -b[4])[:4]:
            c = faces.face_crop(s.rgb, box, size)
            if e["input"]["colour"] == "BGR":
                c = c[:, :, ::-1]
            out.append((c.astype(np.float32) * ((hi - lo) / 255.0) + lo)[None])
    return out


def test_calibration_and_test_frames_are_disjoint():
    assert not set(TEST_FRAMES) & set(faces.CALIB_FRAMES)


def test_some_int8_variant_is_shipped():
    assert INT8, "no int8 variant passed parity"


@pytest.mark.parametrize("name", INT8)
def test_int8_parity(name, samples):
    e = MANIFEST[name]
    f32 = faces.Litert(MODELS / e["variants"]["float32"]["file"])
    i8 = faces.Litert(MODELS / e["variants"]["int8"]["file"])
    size = e["input"]["shape"][1]
    if e["role"] == "detector":
        ious = []
        for s in samples:
            b = faces.detect(i8, s.rgb)
            for fa in faces.detect(f32, s.rgb):
                ious.append(max((faces.box_iou(fa, fb) for fb in b), default=0.0))
        assert ious and min(ious) >= MIN_BOX_IOU, f"min IoU {min(ious):.3f} over {len(ious)} faces"
    elif e["role"] == "landmarks":
        out = e["output"]
        errs = []
        for x in crops(samples, name, size):
            ra, rb = f32.by_name(f32(x)), i8.by_name(i8(x))
            if 1.0 / (1.0 + np.exp(-float(ra[out["face_flag"]].reshape(-1)[0]))) >= 0.5:
                errs.append(faces.landmark_error_pct(ra[out["landmarks"]], rb[out["landmarks"]]))
        assert errs and max(errs) <= MAX_LANDMARK_ERR_PCT, f"max {max(errs):.2f} % IOD over {len(errs)} faces"
    else:
        k = e["output"]["live_index"]
        xs = crops(samples, name, size)
        a = np.array([float(f32(x)[0].reshape(-1)[k]) for x in xs])
        b = np.array([float(i8(x)[0].reshape(-1)[k]) for x in xs])
        assert np.abs(a - b).max() <= MAX_SCORE_DIFF, f"max diff {np.abs(a - b).max():.4f}"
        for t in (0.5, 0.95):
            assert np.array_equal(a >= t, b >= t), f"decision flips at {t}: {int(((a >= t) != (b >= t)).sum())}"


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_rejected_variants_are_not_shipped(name):
    e = MANIFEST[name]
    for vn in e.get("rejected", {}):
        assert vn not in e["variants"]
        assert not (MODELS / f"{name}_{vn}.tflite").exists()
