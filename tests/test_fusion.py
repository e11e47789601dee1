"""Fusion math, abstention, coefficient loading and the MeanFusion fallback; and what the shipped fusion does on
the real clips when ../shared is present."""

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from liveness_edge.cues import CueScore
from liveness_edge.fusion import LogisticFusion, MeanFusion, load_fusion, logit, sigmoid
from media import ROOT

FUSION_JSON = ROOT / "models" / "fusion.json"


def test_mean_fusion_is_the_cnn_mean():
    fused = MeanFusion().combine(np.array([0.2, 0.4, 0.9]), [CueScore("x", 0.1)])
    assert fused.average == pytest.approx(0.5)


def test_logistic_fusion_math():
    fusion = LogisticFusion(0.5, 2.0, {"a": 1.0, "b": 3.0})
    cnn = np.array([0.6, 0.8])
    fused = fusion.combine(cnn, [CueScore("a", 0.9), CueScore("b", 0.2)])
    z = 0.5 + 2.0 * np.log(cnn / (1 - cnn)) + 1.0 * np.log(9) + 3.0 * np.log(0.25)
    assert np.allclose(fused.frame_scores, 1 / (1 + np.exp(-z)))
    assert fused.average == pytest.approx(float(np.mean(1 / (1 + np.exp(-z)))))


def test_abstaining_and_unknown_cues_drop_out():
    fusion = LogisticFusion(0.0, 1.0, {"a": 5.0})
    cnn = np.array([0.7])
    base = fusion.combine(cnn, []).average
    assert fusion.combine(cnn, [CueScore("a", None)]).average == pytest.approx(base)
    assert fusion.combine(cnn, [CueScore("unknown", 0.99)]).average == pytest.approx(base)
    assert fusion.combine(cnn, [CueScore("a", 0.9)]).average > base


def test_logits_are_clipped():
    assert logit(1.0) == pytest.approx(6.0) and logit(0.0) == pytest.approx(-6.0)
    assert sigmoid(np.array([1000.0]))[0] == pytest.approx(1.0)


def _models(name, sha):
    return SimpleNamespace(liveness=SimpleNamespace(name=name),
                           infos=[SimpleNamespace(role="liveness", sha256=sha)])


def _doc(tmp_path, entries):
    path = tmp_path / "fusion.json"
    path.write_text(json.dumps({"format": 1, "models": entries}))
    return path


def test_load_picks_the_entry_matching_the_model_sha(tmp_path):
    path = _doc(tmp_path, [
        {"liveness_model": "a", "match": {"name": "a", "sha256": ["aaa"]}, "intercept": 1, "weights": {"cnn": 1}},
        {"liveness_model": "b", "match": {"name": "b", "sha256": ["bbb"]}, "intercept": 2,
         "weights": {"cnn": 3, "blink": 0.5}},
    ])
    fusion = load_fusion(None, _models("b", "bbb"), paths=[path])
    assert isinstance(fusion, LogisticFusion)
    assert (fusion.intercept, fusion.w_cnn, dict(fusion.cue_weights)) == (2.0, 3.0, {"blink": 0.5})


def test_the_start_up_log_says_what_the_fusion_counts(tmp_path, caplog):
    path = _doc(tmp_path, [{"liveness_model": "c", "match": {"name": "c", "sha256": ["ccc"]}, "intercept": 1,
                            "weights": {"cnn": 0.0, "texture": 0.9, "blink": 0.0}}])
    with caplog.at_level(logging.INFO, logger="liveness_edge.fusion"):
        load_fusion(None, _models("c", "ccc"), paths=[path])
    line = " ".join(r.getMessage() for r in caplog.records)
    assert "liveness CNN not counted" in line and "cues texture)" in line


def test_load_falls_back_to_the_mean_with_a_log_line(tmp_path, caplog):
    path = _doc(tmp_path, [{"liveness_model": "a", "match": {"name": "same-name", "sha256": ["aaa"]},
                            "intercept": 1, "weights": {"cnn": 1}}])
    with caplog.at_level(logging.INFO, logger="liveness_edge.fusion"):
        fusion = load_fusion(None, _models("same-name", "other-sha"), paths=[path])
    assert isinstance(fusion, MeanFusion)
    assert any("no coefficients" in r.getMessage() for r in caplog.records)
    assert isinstance(load_fusion(None, _models("x", "y"), paths=[tmp_path / "absent.json"]), MeanFusion)
    (tmp_path / "bad.json").write_text("{not json")
    assert isinstance(load_fusion(None, _models("x", "y"), paths=[tmp_path / "bad.json"]), MeanFusion)


@pytest.mark.parametrize("document", [
    [1, 2],  # not an object
    {"models": "antispoof"},  # not a list of entries
    {"models": [{"match": {"name": "m"}, "weights": {"cnn": 1}}]},  # no intercept
    {"models": [{"match": {"name": "m"}, "intercept": 1, "weights": {"cnn": "high"}}]},  # not a number
])
def test_an_edited_fusion_file_falls_back_to_the_mean_with_what_is_wrong(tmp_path, caplog, document):
    path = tmp_path / "fusion.json"
    path.write_text(json.dumps(document))
    with caplog.at_level(logging.INFO, logger="liveness_edge.fusion"):
        fusion = load_fusion(None, _models("m", "sha"), paths=[path])
    assert isinstance(fusion, MeanFusion)
    assert any(f"{path} is not a fusion file" in r.getMessage() for r in caplog.records)


def test_shipped_fusion_matches_every_bundled_antispoof_variant():
    document = json.loads(FUSION_JSON.read_text())
    manifest = json.loads((ROOT / "models" / "tflite" / "manifest.json").read_text())
    for variant in manifest["models"]["antispoof"]["variants"].values():
        fusion = load_fusion(None, _models("antispoof", variant["sha256"]), paths=[FUSION_JSON])
        assert isinstance(fusion, LogisticFusion), variant["file"]
    minifas = [e for e in document["models"] if e["liveness_model"] == "minifasnet_v2_80x80"]
    assert minifas and "4ff758f470b757d9005b418c9978693f09b8f2a5e7b7ee848c160db21208e1b2" in minifas[0]["match"]["sha256"]
    for entry in document["models"]:
        assert all(w >= 0 for k, w in entry["weights"].items() if k != "cnn"), "cue weights are evidence of life"


def test_daemon_runs_only_the_cues_the_fit_weighted(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from liveness_edge import fusion as fusion_mod
    from liveness_edge.cues import registry

    path = _doc(tmp_path, [{"liveness_model": "b", "match": {"name": "b", "sha256": ["bbb"]}, "intercept": 2,
                            "weights": {"cnn": 1, "planarity": 0.0, "texture": 0.4, "micro_motion": 1.2,
                                        "surround": 1.4}}])
    monkeypatch.setattr(fusion_mod, "fusion_paths", lambda cfg: [path])
    fixed, hand_held = SimpleNamespace(camera="fixed"), SimpleNamespace(camera="hand-held")
    names = {make().name for make in registry.default_cues(fixed, _models("b", "bbb"))}
    assert names == {"texture", "micro_motion", "surround"}
    # a hand-held camera moves the background with a still head: the cue that expects a still one is not run
    names = {make().name for make in registry.default_cues(hand_held, _models("b", "bbb"))}
    assert names == {"texture", "micro_motion"}
    # no fitted entry (CNN mean): every cue runs, so return_frames still shows what each one saw
    names = {make().name for make in registry.default_cues(fixed, _models("other", "zzz"))}
    assert names == set(registry.CUES)
    names = {make().name for make in registry.default_cues(hand_held, _models("other", "zzz"))}
    assert names == set(registry.CUES) - {"surround"}


def test_a_cnn_with_no_weight_need_not_be_scored():
    cues = [CueScore("a", 0.9)]
    unweighted = LogisticFusion(0.5, 0.0, {"a": 1.0})
    assert not unweighted.counts_cnn and LogisticFusion(0.5, 0.3, {"a": 1.0}).counts_cnn and MeanFusion.counts_cnn
    without = unweighted.combine(None, cues, frames=4)
    with_scores = unweighted.combine(np.array([0.1, 0.9, 0.5, 0.3]), cues)
    assert len(without.frame_scores) == 4 and without.average == pytest.approx(with_scores.average)
    with pytest.raises(ValueError):
        LogisticFusion(0.5, 0.3, {"a": 1.0}).combine(None, cues, frames=4)


def test_the_daemon_skips_a_cnn_its_fusion_does_not_count_and_answers_the_same(monkeypatch):
    from liveness_edge.config import load_config
    from liveness_edge.models import load_models
    from liveness_edge.pipeline import Options, Pipeline
    from media import face_clip

    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    models = load_models(cfg)
    body = face_clip(frames=12, width=640, height=480)
    counted = LogisticFusion(0.2, 0.8, {"texture": 0.9})
    uncounted = LogisticFusion(0.2, 0.0, {"texture": 0.9})
    assert Pipeline(cfg, models, fusion=counted).score_cnn and not Pipeline(cfg, models, fusion=uncounted).score_cnn

    scoring = Pipeline(cfg, models, fusion=uncounted, score_cnn=True).run(body, Options(return_frames=True))

    def not_run(*args, **kwargs):
        raise AssertionError("the liveness CNN ran although its fusion weight is 0")
    monkeypatch.setattr(models.liveness, "scores", not_run)
    monkeypatch.setattr(models.liveness, "cut", not_run)
    skipping = Pipeline(cfg, models, fusion=uncounted).run(body, Options(return_frames=True))
    assert skipping.frames_selected == scoring.frames_selected > 0
    assert skipping.average_liveness == pytest.approx(scoring.average_liveness, abs=1e-9)
    assert skipping.alive == scoring.alive
    assert [f["cnn"] for f in skipping.frames] == [None] * skipping.frames_selected
    assert all(isinstance(f["cnn"], float) for f in scoring.frames)


def test_the_shipped_pipeline_runs_the_surround_cue_only_for_a_fixed_camera():
    import dataclasses

    from liveness_edge.config import load_config
    from liveness_edge.models import load_models
    from liveness_edge.pipeline import Options, Pipeline
    from media import face_clip

    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    models = load_models(cfg)
    body = face_clip(frames=12, width=640, height=480)
    fixed = Pipeline(cfg, models).run(body, Options(return_frames=True))
    hand_held = Pipeline(dataclasses.replace(cfg, camera="hand-held"), models).run(body, Options(return_frames=True))
    assert "surround" in {c.name for c in fixed.cues}
    assert {c.name for c in hand_held.cues} == {c.name for c in fixed.cues} - {"surround"}
