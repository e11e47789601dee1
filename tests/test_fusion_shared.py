"""What the shipped fusion does on the real labelled clips (../shared; skipped with a reason when absent).

Asserted, because it is true and does not hang on a thin margin:
- the daemon's answer is exactly the model the eval code fitted: average_liveness recomputed by tools/eval/fit.py from
  the daemon's own per-frame CNN scores and cue values, with the coefficients in models/fusion.json, matches;
- the daemon runs exactly the cues the fit gave a non-zero weight;
- the fused score RANKS the real live clips above the real replays about as well as models/fusion.json records
  (in-sample AUC; a pipeline change may move a pair or two, not the ranking as a whole).
NOT asserted: that every live clip is answered alive. At the threshold 0.95 the shipped fit refuses some real live
clips even in-sample (models/fusion.json in_sample_at_0.95; docs/accuracy.md has the cross-validated figures).
"""

import csv

import pytest

from liveness_edge.config import load_config
from liveness_edge.fusion import LogisticFusion, fitted_entry
from liveness_edge.models import load_models
from liveness_edge.pipeline import Options, Pipeline
from media import ROOT, SHARED_DATA
from tools.eval import fit

pytestmark = pytest.mark.shared


def _real_videos():
    path = SHARED_DATA / "labels.csv"
    if not path.exists():
        return []
    with open(path) as fh:
        return [(r["file"], r["label"]) for r in csv.DictReader(fh) if r["kind"] == "video"]


@pytest.fixture(scope="module")
def shipped():
    if not (SHARED_DATA / "labels.csv").exists():
        pytest.skip(f"real labelled media not available: {SHARED_DATA} is absent")
    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    models = load_models(cfg)
    # The CNN is scored even where the fusion gives it no weight (the daemon then skips it), as tools/eval does.
    pipe = Pipeline(cfg, models, score_cnn=True)
    assert isinstance(pipe.fusion, LogisticFusion), "the shipped config should load the fitted fusion"
    assert pipe.fusion.counts_cnn == Pipeline(cfg, models).score_cnn
    entry = fitted_entry(cfg, models)
    records = []
    for name, label in _real_videos():
        res = pipe.run((SHARED_DATA / name).read_bytes(), Options(return_frames=True))
        records.append({"file": name, "label": label, "average": res.average_liveness,
                        "cnn": [f["cnn"] for f in res.frames],
                        "cues": {c.name: {"value": c.value} for c in res.cues}})
    return entry, records


def test_daemon_answer_is_the_fitted_model(shipped):
    entry, records = shipped
    fusion = LogisticFusion.from_entry(entry)
    for rec in records:
        # The daemon rounds per-frame CNN scores to 6 digits in return_frames: compare at that precision.
        assert fit.clip_average(fusion, rec) == pytest.approx(rec["average"], abs=1e-4), rec["file"]


def test_daemon_runs_the_cues_the_fit_kept(shipped):
    entry, records = shipped
    kept = {k for k, v in entry["weights"].items() if k != "cnn" and v != 0}
    assert kept, "the shipped fit should keep at least one cue"
    for rec in records:
        assert set(rec["cues"]) == kept, rec["file"]


def test_shipped_fusion_ranks_real_live_above_real_replays(shipped):
    entry, records = shipped
    scores = {r["file"]: r["average"] for r in records}
    items = [{"file": r["file"], "label": r["label"]} for r in records]
    recorded = entry["in_sample_auc"]["spoof-replay"]
    live = sum(r["label"] == "live" for r in records)
    replays = sum(r["label"] == "spoof-replay" for r in records)
    slack = 2.0 / (live * replays)  # two of the live/replay pairs may swap
    auc = fit.pair_auc(items, scores, "spoof-replay")
    assert auc >= recorded - slack, (auc, recorded)
    assert auc > 0.75, auc  # and well above chance: the fusion does rank (0.5 = coin toss)
