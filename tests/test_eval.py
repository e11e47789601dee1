"""The evaluation's figures (ISO/IEC 30107-3 terms) on hand-made scores, the synthetic attack generator's
determinism, and the skip when ../shared is absent."""

import subprocess
import sys

import numpy as np
import pytest

from media import ROOT
from tools.eval import metrics
from tools.synth.generate import project_sheet, sheet_surface, synth_print, synth_replay, warp_sheet, write_clip


def _items():
    return ([{"file": f"l{i}", "label": "live"} for i in range(4)]
            + [{"file": f"p{i}", "label": "print"} for i in range(2)]
            + [{"file": f"r{i}", "label": "replay"} for i in range(2)])


def test_figures_count_refusals_and_acceptances():
    scores = {"l0": 0.99, "l1": 0.97, "l2": 0.5, "l3": None, "p0": 0.96, "p1": 0.1, "r0": None, "r1": 0.2}
    f = metrics.figures(_items(), scores, 0.95)
    assert f["bpcer"] == pytest.approx(0.5)  # l2 by score, l3 for too few frames
    assert (f["live_refused_score"], f["live_refused_frames"]) == (1, 1)
    assert f["apcer"]["print"]["apcer"] == pytest.approx(0.5)
    assert f["apcer"]["replay"]["apcer"] == 0.0  # an attack refused with an error is not accepted
    assert f["acer"] == pytest.approx(0.5)


def test_rates_carry_their_exact_95_percent_interval():
    # Clopper-Pearson's closed forms at the ends, and the textbook 3 of 11 and 5 of 10.
    assert metrics.clopper_pearson(0, 3) == (0.0, pytest.approx(1 - 0.025 ** (1 / 3), abs=1e-9))
    assert metrics.clopper_pearson(11, 11) == (pytest.approx(0.025 ** (1 / 11), abs=1e-9), 1.0)
    assert metrics.clopper_pearson(3, 11) == (pytest.approx(0.0602, abs=1e-4), pytest.approx(0.6097, abs=1e-4))
    assert metrics.clopper_pearson(5, 10) == (pytest.approx(0.1871, abs=1e-4), pytest.approx(0.8129, abs=1e-4))
    scores = {"l0": 0.99, "l1": 0.97, "l2": 0.5, "l3": None, "p0": 0.96, "p1": 0.1, "r0": None, "r1": 0.2}
    f = metrics.figures(_items(), scores, 0.95)
    assert f["bpcer_ci95"] == metrics.clopper_pearson(2, 4)  # both refusals count, by score and for too few frames
    assert f["apcer"]["replay"]["ci95"] == (0.0, pytest.approx(1 - 0.025 ** 0.5, abs=1e-9))


def test_bpcer_threshold_keeps_every_live_clip_when_few():
    scores = {"l0": 0.99, "l1": 0.97, "l2": 0.5, "l3": 0.8}
    t = metrics.bpcer_threshold(_items(), scores, 0.02)
    assert t == 0.5
    assert metrics.figures(_items(), scores, t)["live_refused_score"] == 0


def test_synthetic_attacks_are_deterministic():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(4)]
    for make in (synth_print, synth_replay):
        a, b = make(frames, 7), make(frames, 7)
        assert len(a) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b))
        assert a[0].shape == frames[0].shape


def test_a_still_print_for_the_stress_test_barely_moves():
    # make stress (tools/eval/stress.py): the sheet on a stand must stay put while the hand-held one sways; the same
    # seed draws the same still, sheet and background, so only the motion differs.
    from tools.eval.stress import STILL

    yy, xx = np.mgrid[0:96, 0:128]
    picture = (127 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.uint8)
    frames = [np.dstack([picture] * 3)] * 12

    def sway(clip):  # mean absolute change from the first frame to the frame that differs most from it
        return max(float(np.abs(f.astype(int) - clip[0].astype(int)).mean()) for f in clip)

    held, still = synth_print(frames, 3), synth_print(frames, 3, motion=STILL)
    assert sway(still) < 0.1 * sway(held)


def test_synthetic_clips_encode_to_the_same_bytes_every_time(tmp_path):
    # A textured picture panning, shown on a synthetic screen (moire, glare), encoded three times with another clip
    # in between: with x264's default threads, or with its macroblock-tree rate control, the bytes changed.
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (700, 700, 3)).astype(np.float32), (0, 0), 3)
    frames = [np.clip(np.roll(base, 2 * k, axis=1), 0, 255).astype(np.uint8) for k in range(24)]
    replay = synth_replay(frames, 11)
    other = [np.ascontiguousarray(f[:540]) for f in frames[:12]]
    encoded = set()
    for _ in range(3):
        write_clip(tmp_path / "replay.mp4", replay, 25.0)
        encoded.add((tmp_path / "replay.mp4").read_bytes())
        write_clip(tmp_path / "other.mp4", other, 15.0)
    assert len(encoded) == 1


def _homography_residual(bend: float) -> float:
    """RMS pixels left after the best homography from a sheet's points at rest to the same points turned in 3D."""
    import cv2

    grid = np.stack(np.meshgrid(np.linspace(0.2, 0.8, 9), np.linspace(0.2, 0.8, 9)), -1).reshape(-1, 2)
    still = project_sheet(grid, np.zeros(6), 640, 480, 1.0, 1.3, bend)
    turned = project_sheet(grid, np.array([0.3, 0.15, 0.05, 0.02, 0.0, 0.05]), 640, 480, 1.0, 1.3, bend)
    H, _ = cv2.findHomography(still.astype(np.float32), turned.astype(np.float32), 0)
    proj = cv2.perspectiveTransform(still.reshape(-1, 1, 2).astype(np.float32), H).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((proj - turned) ** 2, axis=1))))


def test_a_flat_synthetic_print_moves_by_a_homography_and_a_bent_one_does_not():
    # The planarity cue is judged on these prints: a bent sheet must be a real 3D surface, not a pre-warped image
    # that is still a plane.
    assert _homography_residual(0.0) < 0.01
    assert _homography_residual(0.2) > 1.0
    # the paper does not stretch: the bent sheet's arc is still 1 wide
    arc = sheet_surface(np.stack([np.linspace(0, 1, 201), np.full(201, 0.5)], 1), 1.3, 0.2)
    assert abs(np.sum(np.linalg.norm(np.diff(arc, axis=0), axis=1)) - 1.0) < 1e-3


def test_a_bent_sheet_is_drawn_without_seams():
    sheet = np.full((120, 90, 3), 200, np.uint8)
    image, mask = warp_sheet(sheet, np.array([0.2, 0.1, 0.0, 0.0, 0.0, 0.0]), 160, 160, 0.6, 1, bend=0.2)
    inside = mask == 255
    assert inside.sum() > 2000
    assert np.abs(image[inside].astype(int) - 200).max() <= 5  # no dark gaps between the strips (a gap is ~100 dark)


def test_eval_skips_cleanly_without_shared(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tools.eval", "--shared", str(tmp_path / "nothing"),
                          "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "skipped" in out.stdout


def test_stress_skips_cleanly_without_shared(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tools.eval.stress", "--shared", str(tmp_path / "nothing")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "skipped" in out.stdout


# --- the fit (tools/eval/fit.py) on hand-made clips ----------------------------------------------------------------

def _clip(name, label, cnn, cues=None, group=None, frames=10):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    scores = np.clip(cnn + rng.normal(0, 0.01, frames), 0.01, 0.99).tolist()
    return {"file": name, "label": label, "kind": "video", "status": "ok", "synthetic": False,
            "group": group or name, "cnn": scores, "cues": {k: {"value": v} for k, v in (cues or {}).items()}}


def test_fit_keeps_cue_weights_non_negative_and_uses_a_real_signal():
    from tools.eval import fit

    clips = []
    for i in range(8):
        # the cue: informative (live 0.8 / attack 0.2); the "anti" cue says live on attacks only (a fluke here)
        clips.append(_clip(f"l{i}", "live", 0.5 + 0.02 * i, {"planarity": 0.8, "texture": 0.3}))
        clips.append(_clip(f"a{i}", "attack", 0.5 + 0.02 * i, {"planarity": 0.2, "texture": 0.7}))
    fusion, _ = fit.fit(clips)
    assert fusion.cue_weights["planarity"] > 0.3
    assert fusion.cue_weights["texture"] == 0.0  # a negative weight is dropped, not kept


def test_fit_drops_a_cnn_that_votes_against_its_meaning():
    from tools.eval import fit

    clips = []
    for i in range(8):
        # the CNN scores these attacks ABOVE the live clips (as livenessnet does this generator's prints);
        # the cue is right
        clips.append(_clip(f"l{i}", "live", 0.3 + 0.02 * i, {"planarity": 0.8}))
        clips.append(_clip(f"a{i}", "attack", 0.7 + 0.02 * i, {"planarity": 0.2}))
    fusion, _ = fit.fit(clips)
    assert fusion.w_cnn == 0.0  # not learned as "a high CNN score means an attack"
    assert fusion.cue_weights["planarity"] > 0.3


def _sources(cnn_of):
    """6 sources, each with 3 live clips and 3 attacks. The cue alone leaves some overlap in every source (live
    0.55-0.75, attacks 0.35-0.55); ``cnn_of(source, live, k)`` gives the CNN score of the k-th clip."""
    clips = []
    for g in range(6):
        for k in range(3):
            clips.append(_clip(f"s{g}l{k}", "live", cnn_of(g, True, k), {"planarity": 0.55 + 0.1 * k}, group=f"s{g}"))
            clips.append(_clip(f"s{g}a{k}", "attack", cnn_of(g, False, k), {"planarity": 0.35 + 0.1 * k},
                               group=f"s{g}"))
    return clips


def test_the_cnn_is_counted_when_it_separates_every_source():
    from tools.eval import fit

    clips = _sources(lambda g, live, k: (0.8 if live else 0.2) + 0.02 * k)
    keep, costs = fit.cnn_earns_its_place(clips)
    assert keep and costs["loso_cost_with_cnn"] < costs["loso_cost_without_cnn"]
    fusion, info = fit.fit_selected(clips)
    assert info["cnn_counted"] and fusion.w_cnn > 0


def test_a_cnn_that_only_some_sources_agree_with_is_not_counted():
    from tools.eval import fit

    # Two sources where the CNN is sure and right outweigh, in one fit, four where it ranks attacks above live faces:
    # its in-sample weight is positive. On a source the fit has not seen it makes things worse, and
    # leave-one-source-out on the training clips says so: the fusion leaves it out.
    clips = _sources(lambda g, live, k: (0.99 if live else 0.01) if g < 2 else (0.35 if live else 0.65) + 0.01 * k)
    assert fit.fit(clips)[0].w_cnn > 0
    keep, costs = fit.cnn_earns_its_place(clips)
    assert not keep and costs["loso_cost_with_cnn"] > costs["loso_cost_without_cnn"]
    fusion, info = fit.fit_selected(clips)
    assert not info["cnn_counted"] and fusion.w_cnn == 0.0 and fusion.cue_weights["planarity"] > 0


def test_operating_point_does_not_give_up_a_rare_attack_type():
    from tools.eval import fit

    live = [_clip(f"l{i}", "live", 0.7) for i in range(6)]
    many = [_clip(f"p{i}", "print", 0.3) for i in range(12)]  # easy, numerous
    few = [_clip(f"r{i}", "replay", 0.6 + 0.02 * i) for i in range(2)]  # hard, few
    fusion, _ = fit.fit(live + many + few)
    scores = {c["file"]: fit.clip_average(fusion, c) for c in live + many + few}
    # the 2 hard replays count as much as the 12 prints (worst-type APCER, per-type weights): they are not given up
    assert fit.pair_auc(live + few, scores, "replay") == 1.0
    assert sum(scores[c["file"]] >= fit.THRESHOLD for c in few) <= 1


@pytest.mark.parametrize("cue, fired", [("bezel", "liveness_edge.cues.bezel:FRAMED_VALUE"),
                                        ("surround", "liveness_edge.cues.surround:FOLLOWS_VALUE")])
def test_context_penalties_are_fixed_and_only_ever_refuse(cue, fired):
    import importlib

    from tools.eval import fit

    module, attr = fired.split(":")
    value = getattr(importlib.import_module(module), attr)
    live = [_clip(f"l{i}", "live", 0.7 + 0.02 * i) for i in range(6)]
    attacks = [_clip(f"a{i}", "attack", 0.55 + 0.02 * i) for i in range(6)]
    caught = _clip("caught", "attack", 0.8, {cue: value})  # scores like a live clip, but the cue fired
    with_penalty, _ = fit.fit(live + attacks + [caught])
    without, _ = fit.fit(live + attacks + [caught], fixed={})
    # designed, not fitted: the same weight whatever the data, giving FIXED_PENALTY logit units when it fires
    assert with_penalty.cue_weights[cue] == fit.FIXED[cue]
    assert fit.FIXED[cue] * -float(np.log(value / (1 - value))) == pytest.approx(fit.FIXED_PENALTY)
    # the operating point is placed without it, so no clip where it did not fire scores differently
    assert with_penalty.intercept == without.intercept and with_penalty.w_cnn == without.w_cnn
    for c in live + attacks:
        assert fit.clip_average(with_penalty, c) == pytest.approx(fit.clip_average(without, c))
    # and the clip where it fired is pushed towards refusal
    assert fit.clip_average(with_penalty, caught) < fit.clip_average(without, caught) - 0.05


def test_operating_point_policies_weigh_synthetic_attacks_as_documented():
    from tools.eval import fit

    live = [_clip(f"l{i}", "live", 0.6 + 0.03 * i) for i in range(8)]
    real = [_clip(f"r{i}", "spoof-replay", 0.2) for i in range(3)]  # easy: far below every live clip
    synth = [{**_clip(f"s{i}", "synthetic-print", 0.55 + 0.03 * i), "synthetic": True} for i in range(8)]  # overlap
    clips = live + real + synth

    def refused_live(policy):
        fusion, _ = fit.fit(clips, cues=(), fixed={}, policy=policy)
        return sum(fit.clip_average(fusion, c) < fit.THRESHOLD for c in live)

    # "all" holds the overlapping synthetic prints too, so it refuses live clips; "real" ignores them and refuses none
    assert refused_live("real") == 0
    assert refused_live("all") > refused_live("halves") >= refused_live("real")


def test_pair_auc_and_operating_points():
    from tools.eval import fit

    items = _items()
    scores = {"l0": 0.9, "l1": 0.8, "l2": 0.7, "l3": 0.6, "p0": 0.65, "p1": 0.1, "r0": 0.95, "r1": 0.2}
    assert fit.pair_auc(items, scores, "print") == pytest.approx(7 / 8)
    assert fit.pair_auc(items, scores, "replay") == pytest.approx(4 / 8)
    ops = fit.operating_points(items, scores, ["print", "replay"])
    assert ops["refuse_0_live"]["threshold"] == 0.6 and ops["refuse_0_live"]["bpcer"] == 0.0
    assert ops["refuse_0_live"]["apcer"] == {"print": 0.5, "replay": 0.5}
    assert ops["refuse_1_live"]["threshold"] == 0.7 and ops["refuse_1_live"]["apcer"]["print"] == 0.0


def _probe_items(n_groups=6):
    items = []
    for g in range(n_groups):
        items.append({"file": f"live{g}", "label": "live", "group": f"g{g}", "synthetic": False})
        items.append({"file": f"att{g}", "label": "spoof-replay", "group": f"g{g}", "synthetic": False})
    return items


def test_probe_scores_each_source_with_a_probe_that_never_saw_it():
    from tools.eval.probe import loso_probe
    from tools.eval.fit import pair_auc

    rng = np.random.default_rng(1)
    items = _probe_items()
    # Feature 0 carries the label (generalises); the rest is noise: held-out sources are still ranked right.
    telling = {it["file"]: np.r_[1.0 if it["label"] == "live" else -1.0, rng.normal(size=5)] for it in items}
    assert pair_auc(items, loso_probe(items, telling, l2=1.0), "spoof-replay") == 1.0
    # Features that only name the source (the same for a source's live clip and its attack) cannot separate a
    # held-out source's pair: the score must come from the features alone, never from the held-out labels.
    source_only = {it["file"]: np.r_[float(it["group"][1:]), np.zeros(5)] for it in items}
    scores = loso_probe(items, source_only, l2=1.0)
    assert all(scores[f"live{g}"] == scores[f"att{g}"] for g in range(6))
    assert pair_auc(items, scores, "spoof-replay") < 1.0


def test_the_compression_stress_set_keeps_labels_and_reuses_its_clips(tmp_path):
    # make stress (tools/eval/stress.py): the real clips re-encoded harder and at half size; a live clip stays live,
    # its source stays its cross-validation group, and a second run reuses what the first one wrote.
    import av
    from tools.eval.stress import REENCODINGS, reencoded

    yy, xx = np.mgrid[0:120, 0:160]
    frames = [np.dstack([(127 + 90 * np.sin((xx + 3 * i) / 4.0) * np.cos(yy / 6.0)).astype(np.uint8)] * 3)
              for i in range(8)]
    data = tmp_path / "shared" / "data"
    write_clip(data / "live" / "cam.mp4", frames, 25)
    (data / "labels.csv").write_text("file,label,kind,source,licence,notes\n"
                                     "live/cam.mp4,live,video,github someone/repo cam.mp4,none,\n"
                                     "stills/x.jpg,real-still,image,github someone/repo x.jpg,none,\n")
    out = tmp_path / "cache"
    entries = reencoded(tmp_path / "shared", out, frames=8)
    assert [e["encoding"] for e in entries] == list(REENCODINGS)  # the image is not re-encoded
    assert {(e["label"], e["group"], e["file"]) for e in entries} == {("live", "someone", "live/cam.mp4")}

    def size(path):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height

    by_name = {e["encoding"]: e["path"] for e in entries}
    assert size(by_name["crf28"]) == (160, 120) and size(by_name["half"]) == (80, 60)
    assert size(by_name["hand-held"]) == (160, 120)
    assert by_name["crf33"].stat().st_size < by_name["crf28"].stat().st_size  # a higher CRF keeps less
    with av.open(str(by_name["mjpeg"])) as container:  # the webcam stream: MJPEG in AVI, full size
        assert container.streams.video[0].codec_context.name == "mjpeg" and size(by_name["mjpeg"]) == (160, 120)
    written = {name: path.stat().st_mtime_ns for name, path in by_name.items()}
    reencoded(tmp_path / "shared", out, frames=8)
    assert {name: path.stat().st_mtime_ns for name, path in by_name.items()} == written


def test_a_hand_held_camera_moves_the_whole_picture_as_one():
    # make stress's hand-held clips: the camera's motion moves the background and the face together (one similarity
    # per frame), by more than tracking noise, which is what the surround cue must not be shown by a fixed camera.
    import cv2
    from tools.eval.stress import camera_shake
    from liveness_edge.cues.tracking import similarity_lsq, track

    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.uniform(0, 255, (240, 320)).astype(np.float32), (0, 0), 2)
    scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    shaken = camera_shake([scene] * 30, seed=11)
    assert camera_shake([scene] * 30, seed=11)[17].tobytes() == shaken[17].tobytes()  # reproducible
    start = cv2.goodFeaturesToTrack(shaken[0], 80, 0.01, 8).reshape(-1, 2).astype(np.float64)
    cur, alive, moved_most = start.copy(), np.ones(len(start), bool), 0.0
    for prev, frame in zip(shaken, shaken[1:]):  # frame to frame, as the cues track
        moved, ok = track(prev, frame, cur)
        alive &= ok
        cur = moved.astype(np.float64)
        ref, now = start[alive], cur[alive]
        sim = similarity_lsq(ref, now)
        residual = np.sqrt(np.mean(np.sum((ref @ sim[:, :2].T + sim[:, 2] - now) ** 2, axis=1)))
        assert alive.sum() > 20 and residual < 0.3
        moved_most = max(moved_most, float(np.median(np.linalg.norm(now - ref, axis=1))))
    assert moved_most > 3.0  # pixels: a hand's drift, not noise


def test_stress_scores_hand_held_clips_as_the_daemon_does_with_camera_hand_held(tmp_path):
    # The "(camera: hand-held)" rows of make stress leave out the cues the daemon does not run with that setting.
    import json

    from tools.eval.stress import HAND_HELD_SUFFIX, HeldOut

    train = []
    for g in range(4):
        train.append(_clip(f"live{g}", "live", 0.8, {"texture": 0.9}, group=f"s{g}"))
        train.append(_clip(f"replay{g}", "spoof-replay", 0.8, {"texture": 0.2}, group=f"s{g}"))
    (tmp_path / "raw-x.json").write_text(json.dumps({"items": train}))
    held_out = HeldOut("x", tmp_path)
    shaken = {**_clip("shaken", "live", 0.8, {"texture": 0.9, "surround": 0.1}, group="s0"), "encoding": "hand-held"}
    fixed, hand_held = held_out.row(shaken), held_out.row(shaken, hand_held=True)
    without = held_out.row({**shaken, "cues": {"texture": {"value": 0.9}}})
    assert hand_held["encoding"] == "hand-held" + HAND_HELD_SUFFIX and "surround" not in hand_held["cues"]
    assert hand_held["score"] == pytest.approx(without["score"]) and fixed["score"] < hand_held["score"]


def test_a_real_print_video_is_counted_in_the_real_figures():
    # make eval reads the attack types from the data: the real print videos this project asks for must show up in
    # the real APCER (and the ACER) the day they are added to ../shared, not be left out of the figures.
    from tools.eval import report

    items = []
    for g in range(4):
        items.append(_clip(f"live{g}", "live", 0.9, {"texture": 0.9}, group=f"s{g}"))
        items.append(_clip(f"replay{g}", "spoof-replay", 0.1, {"texture": 0.1}, group=f"s{g}"))
        items.append(_clip(f"print{g}", "spoof-print", 0.9, {"texture": 0.9}, group=f"s{g}"))  # passes as live
        items.append({**_clip(f"synth{g}", "synthetic-replay", 0.1, {"texture": 0.1}, group=f"s{g}"),
                      "synthetic": True})
    for it in items:
        it.update(average=float(np.mean(it["cnn"])), cue_ms_per_frame=1.0, model_ms_per_frame=5.0)
        it["cues"] = {k: {**v, "detail": {}} for k, v in it["cues"].items()}
    raw = {"bundled": {"items": items, "threshold": 0.5, "liveness_model": "antispoof", "liveness_variant": "int8",
                       "fusion": "mean"}}
    conf = report.build(raw)["bundled"]
    real = conf["sets"]["daemon (shipped fusion, in-sample)"]["real"]["at_threshold"]
    assert set(real["apcer"]) == {"spoof-print", "spoof-replay"}
    assert real["apcer"]["spoof-print"]["accepted"] == 4 and real["apcer"]["spoof-replay"]["accepted"] == 0
    assert real["acer"] == pytest.approx(0.5)  # BPCER 0, the prints' APCER 100 %
    assert conf["data"]["real_attack_videos"] == 8
