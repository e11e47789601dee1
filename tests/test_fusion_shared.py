"""What the shipped fusion does on the real labelled live clips (../shared; skipped with a reason when absent).

True today, and asserted: with the bundled models and models/fusion.json, every real live clip in ../shared/data is
answered alive at the default threshold. This is IN-SAMPLE (the fusion was fitted on these clips) and the margin is
thin (lowest live clip ~0.954 against 0.95); the cross-validated figures in docs/accuracy.md are the honest ones.
"""

import csv

import pytest

from liveness_edge.config import load_config
from liveness_edge.fusion import LogisticFusion
from liveness_edge.models import load_models
from liveness_edge.pipeline import Options, Pipeline
from media import ROOT, SHARED_DATA

pytestmark = pytest.mark.shared


def _live_clips():
    path = SHARED_DATA / "labels.csv"
    if not path.exists():
        return []
    with open(path) as fh:
        return [r["file"] for r in csv.DictReader(fh) if r["label"] == "live" and r["kind"] == "video"]


@pytest.fixture(scope="module")
def pipeline():
    if not (SHARED_DATA / "labels.csv").exists():
        pytest.skip(f"real labelled media not available: {SHARED_DATA} is absent")
    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    pipe = Pipeline(cfg, load_models(cfg))
    assert isinstance(pipe.fusion, LogisticFusion), "the shipped config should load the fitted fusion"
    return pipe


@pytest.mark.parametrize("name", _live_clips())
def test_shipped_fusion_keeps_real_live_clips_alive(pipeline, name):
    result = pipeline.run((SHARED_DATA / name).read_bytes(), Options(return_frames=True))
    assert result.alive, f"{name}: average_liveness {result.average_liveness:.3f}"
    assert {c.name for c in result.cues} == {"planarity", "blink", "micro_motion", "texture"}
