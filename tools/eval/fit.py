"""Fit the fusion (models/fusion.json) on collected pipeline outputs, and cross-validate it leave-one-source-out.

Model (see liveness_edge/fusion.py): per frame z = b + w_cnn*logit(cnn) + sum_k w_k*logit(cue_k), cues that abstain
add 0; liveness = sigmoid(z); the clip's average_liveness = mean over frames. Weights: L2-regularised logistic
regression on frames, each clip weighted 1/frames, live and attacks balanced and every attack type weighing the same
(3 real replays as much as 33 synthetic prints); the CNN's and the cues' weights are kept >= 0 (a feature with a
negative fitted weight, or one too small to move a frame by MIN_EFFECT logit units, is dropped and the rest refitted).
Then the intercept is moved so that the threshold 0.95 on average_liveness sits where the training clips' (BPCER +
worst-type APCER), averaged over +-SMOOTH intercept units, is lowest (the middle of the longest such run): a broad
good region rather than a knife edge between two clips, which leave-one-source-out showed not to carry over to unseen
sources. Whether the CNN is counted at all is decided first, by leave-one-source-out within the training clips
(``fit_selected``); cross-validated figures repeat that choice inside every fold (nested).
"""

from __future__ import annotations

import numpy as np

from liveness_edge.cues.bezel import FRAMED_VALUE as BEZEL_FIRED
from liveness_edge.cues.surround import FOLLOWS_VALUE as SURROUND_FIRED
from liveness_edge.fusion import CLIP, LogisticFusion, logit, sigmoid

from . import metrics

CUE_NAMES = ("planarity", "blink", "micro_motion", "texture")  # the cues the shipped fusion is fitted on
# Cues with a designed, not fitted, weight: the two context cues, one-sided attack evidence that fires on too few real
# clips here for a fit to weigh it (no live clip; bezel, a straight-edged frame around the face: 1 of 3 real replays,
# 8 of 66 synthetic attacks; surround, the surroundings moving with the face: 1 of 3 real replays, 15 synthetic
# attacks). Each gets a fixed penalty: FIXED_PENALTY logit units on every frame of a clip where it fires. That is
# strong (a clip at 0.993 drops to 0.875) but not absolute (a clip at 0.999 stays at 0.98), because a live person
# could fire them too (standing still between two straight edges; filmed by a hand-held camera). The operating point
# is placed WITHOUT them, so the penalties can only turn answers towards refusal and never lower the bar for anything
# else (placed with them, surround's first version: the bundled CV refused one live clip fewer but accepted 27 % of
# the synthetic replays instead of 12 %, and MiniFASNetV2's 21 % instead of 0 %: docs/accuracy.md).
FIXED_PENALTY = 3.0
FIXED = {"bezel": round(FIXED_PENALTY / -float(logit(BEZEL_FIRED)), 6),
         "surround": round(FIXED_PENALTY / -float(logit(SURROUND_FIRED)), 6)}
MEASURED_CUES = CUE_NAMES + tuple(FIXED)
THRESHOLD = 0.95
L2 = 1.0
STEP = 0.01  # intercept grid for the operating point (logit units)
SMOOTH = 1.0  # +- window of the smoothed cost (logit units)
MIN_EFFECT = 0.5  # logit units: a cue that cannot move a frame by more is not worth computing


def usable(item: dict) -> bool:
    return item["status"] == "ok" and item["kind"] == "video"


def is_live(item: dict) -> bool:
    return item["label"] == "live"


AUX = "cnn_aux"  # a second per-frame CNN score (item["cnn_aux"]), used like a cue but per frame


def features(item: dict, cues=CUE_NAMES) -> np.ndarray:
    """(frames, 1 + len(cues)) design rows: logit(cnn) per frame, then each cue's logit (0 when it abstains);
    ``cnn_aux`` among the cues: the second CNN's per-frame logit."""
    cnn = logit(np.asarray(item["cnn"], np.float64))
    cols = [cnn]
    for c in cues:
        if c == AUX:
            cols.append(logit(np.asarray(item[AUX], np.float64)))
            continue
        value = item["cues"].get(c, {}).get("value")
        cols.append(np.full(len(cnn), float(logit(value)) if value is not None else 0.0))
    return np.column_stack(cols)


def _logreg(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
    """Newton's method for weighted L2 logistic regression; the intercept (last column) is not penalised."""
    Xb = np.column_stack([X, np.ones(len(X))])
    beta = np.zeros(Xb.shape[1])
    pen = np.full(Xb.shape[1], l2)
    pen[-1] = 1e-6
    for _ in range(50):
        p = sigmoid(Xb @ beta)
        grad = Xb.T @ (w * (p - y)) + pen * beta
        hess = (Xb * (w * p * (1 - p))[:, None]).T @ Xb + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def _frame_logits(fusion: LogisticFusion, item: dict, cues=CUE_NAMES) -> np.ndarray:
    """Per-frame z of the clip under ``fusion`` (its fixed-weight cues included)."""
    cues = tuple(cues) + tuple(k for k in fusion.cue_weights if k not in cues)
    weights = np.array([fusion.w_cnn] + [fusion.cue_weights.get(c, 0.0) for c in cues])
    return features(item, cues) @ weights + fusion.intercept


def clip_average(fusion: LogisticFusion, item: dict, cues=CUE_NAMES, delta: float = 0.0) -> float:
    """The clip's average_liveness under ``fusion`` (its fixed-weight cues included), intercept moved by ``delta``."""
    return float(sigmoid(_frame_logits(fusion, item, cues) + delta).mean())


def _flip_delta(fusion, item, cues) -> float:
    """The intercept shift at which this clip's average crosses THRESHOLD (bisection; monotone in the shift)."""
    z = _frame_logits(fusion, item, cues)
    lo, hi = -40.0, 40.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(sigmoid(z + mid).mean()) >= THRESHOLD:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


# How the operating point weighs the attack types: the shipped "all" (BPCER + the worst type's APCER, real and
# synthetic alike); measured alternatives, reported by `make eval` but not shipped: "real" (real attack types only)
# and "halves" (BPCER + the mean of the worst real and the worst synthetic APCER). Name -> what the report calls it.
POLICIES = {"all": "every attack type", "real": "real attacks only", "halves": "real and synthetic halved"}


def objective(bpcer, apcer: dict, synthetic: set, policy: str = "all"):
    """What the operating point minimises: BPCER plus the attack side ``policy`` names (POLICIES), from the APCER of
    each attack type; scalars, or arrays over candidate operating points alike."""
    def worst(types):
        return np.max([apcer[t] for t in types], axis=0) if types else np.zeros_like(np.asarray(bpcer, float))
    real = [t for t in apcer if t not in synthetic]
    synth = [t for t in apcer if t in synthetic]
    if policy == "real":
        return bpcer + worst(real)
    if policy == "halves":
        return bpcer + 0.5 * (worst(real) + worst(synth))
    return bpcer + worst(list(apcer))


def place_threshold(fusion: LogisticFusion, train: list[dict], cues=CUE_NAMES,
                    policy: str = "all") -> tuple[float, dict]:
    """Intercept shift putting 0.95 mid-way in the best (BPCER + worst APCER) interval on ``train``."""
    flips = np.array([_flip_delta(fusion, it, cues) for it in train])
    live = np.array([is_live(it) for it in train])
    types = sorted({it["label"] for it in train if not is_live(it)})
    synthetic = {it["label"] for it in train if not is_live(it) and it.get("synthetic")}
    grid = np.arange(flips.min() - 2.0, flips.max() + 2.0 + STEP, STEP)
    # For every intercept shift on the grid: live refused while the shift is below its flip, attacks accepted above.
    refused = (grid[:, None] < flips[live][None, :]).mean(axis=1) if live.any() else np.zeros(len(grid))
    accepted = {t: (grid[:, None] >= flips[np.array([it["label"] == t for it in train])][None, :]).mean(axis=1)
                for t in types}
    costs = objective(refused, accepted, synthetic, policy)
    # The cost averaged over +-SMOOTH intercept units: a point that is optimal only on a knife edge between clips
    # (and flips with the next clip or pipeline change) loses to a broad good region.
    k = max(1, int(round(SMOOTH / STEP)))
    padded = np.concatenate([np.full(k, costs[0]), costs, np.full(k, costs[-1])])
    smooth = np.convolve(padded, np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
    best = smooth.min()
    runs, current = [], []
    for i, c in enumerate(smooth):
        if c <= best + 1e-9:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    run = max(runs, key=len)
    i = run[len(run) // 2]
    delta = float(grid[i])
    # margin: distance to the nearest clip flip (how far the intercept can move before any training answer changes)
    margin = float(np.min(np.abs(flips - delta)))
    best = float(costs[i])
    return delta, {"train_cost": best, "margin": margin}


def fit(train: list[dict], cues=CUE_NAMES, l2: float = L2, fixed=None,
        policy: str = "all", cnn: bool = True) -> tuple[LogisticFusion, dict]:
    """Fit the CNN (unless ``cnn`` is False) and ``cues`` (minus the fixed-weight ones), place the operating point,
    then add the ``fixed`` weights (default FIXED)."""
    fixed = FIXED if fixed is None else fixed
    cues = tuple(c for c in cues if c not in fixed)
    train = [it for it in train if usable(it)]
    X, y, w = [], [], []
    n_live = sum(is_live(it) for it in train)
    # Every attack TYPE weighs the same in total (3 real replays count as much as 33 synthetic prints), and all
    # attacks together as much as all live clips: the fit is not dominated by whichever type has the most clips.
    per_type = {}
    for it in train:
        if not is_live(it):
            per_type[it["label"]] = per_type.get(it["label"], 0) + 1
    for it in train:
        f = features(it, cues)
        X.append(f)
        y.append(np.full(len(f), 1.0 if is_live(it) else 0.0))
        share = 1.0 / n_live if is_live(it) else 1.0 / (len(per_type) * per_type[it["label"]])
        w.append(np.full(len(f), share / len(f)))
    X, y, w = np.vstack(X), np.concatenate(y), np.concatenate(w)
    w = w * len(train)  # mean clip weight 1 (keeps the L2 strength comparable across fold sizes)
    # Each cue, and the CNN, is evidence in one known direction (of life, or of an attack for one-sided cues such as
    # planarity, abstaining otherwise): a feature whose fitted weight comes out negative (it would vote against its
    # own meaning on these clips, e.g. a CNN that happens to score this generator's prints above live faces) is
    # dropped and the rest refitted, so no direction is learned from a few clips.
    # A feature whose weight could move a frame's logit by less than MIN_EFFECT (weight x the +-6 logit clip) is
    # dropped too: its effect is below the operating point's own +-SMOOTH window.
    active = list(range(X.shape[1])) if cnn else list(range(1, X.shape[1]))
    while True:
        beta_active = _logreg(X[:, active], y, w, l2)
        weak = [a for a, b in zip(active, beta_active[:-1]) if b < 0 or b * CLIP < MIN_EFFECT]
        if not weak:
            break
        active = [a for a in active if a not in weak]
    beta = np.zeros(X.shape[1] + 1)
    beta[active] = beta_active[:-1]
    beta[-1] = beta_active[-1]
    fusion = LogisticFusion(float(beta[-1]), float(beta[0]), dict(zip(cues, map(float, beta[1:-1]))))
    delta, info = place_threshold(fusion, train, cues, policy)
    return LogisticFusion(fusion.intercept + delta, fusion.w_cnn, {**fusion.cue_weights, **fixed}), info


def cnn_earns_its_place(train: list[dict], cues=CUE_NAMES, l2: float = L2, fixed=None,
                        policy: str = "all") -> tuple[bool, dict]:
    """Whether the fusion should count the CNN: leave-one-source-out WITHIN ``train``, with the CNN and without it,
    judged at the threshold by the operating point's own objective (for "all": BPCER + worst-type APCER). A CNN whose
    in-sample weight is positive can still make unseen sources worse (its scores shift with the camera, not with
    liveness); it is kept only if it lowers the held-out cost (a tie keeps the simpler fusion, without it)."""
    synthetic = {it["label"] for it in train if not is_live(it) and it.get("synthetic")}
    costs = {}
    for with_cnn in (True, False):
        scores = loso_scores(train, cues, l2, fixed, policy, select_cnn=False, cnn=with_cnn)
        f = metrics.figures([it for it in train if it["file"] in scores], scores, THRESHOLD)
        costs[with_cnn] = float(objective(f["bpcer"], {t: v["apcer"] for t, v in f["apcer"].items()}, synthetic,
                                          policy))
    return costs[True] < costs[False], {"loso_cost_with_cnn": round(costs[True], 4),
                                        "loso_cost_without_cnn": round(costs[False], 4)}


def fit_selected(train: list[dict], cues=CUE_NAMES, l2: float = L2, fixed=None,
                 policy: str = "all") -> tuple[LogisticFusion, dict]:
    """``fit`` after deciding by cnn_earns_its_place whether the CNN is counted (only when there are cues to fall
    back on)."""
    keep, costs = cnn_earns_its_place(train, cues, l2, fixed, policy) if cues else (True, {})
    fusion, info = fit(train, cues, l2, fixed, policy, cnn=keep)
    return fusion, {**info, "cnn_counted": keep, **costs}


def loso_scores(items: list[dict], cues=CUE_NAMES, l2: float = L2, fixed=None,
                policy: str = "all", select_cnn: bool = True, cnn: bool = True) -> dict[str, float]:
    """average_liveness of every usable item from a fusion fitted without its source group. With ``select_cnn``
    (the shipped procedure) each fold decides on its own training sources whether to count the CNN (nested
    leave-one-source-out), so the held-out source plays no part in that choice either."""
    out = {}
    for group in sorted({it["group"] for it in items}):
        train = [it for it in items if it["group"] != group and usable(it)]
        test = [it for it in items if it["group"] == group and usable(it)]
        if not test:
            continue
        if select_cnn:
            fusion, _ = fit_selected(train, cues, l2, fixed, policy)
        else:
            fusion, _ = fit(train, cues, l2, fixed, policy, cnn=cnn)
        for it in test:
            out[it["file"]] = clip_average(fusion, it, cues)
    return out


def pair_auc(items: list[dict], scores: dict, attack_type: str) -> float:
    """Share of (live, attack of this type) pairs ranked right by ``scores`` (ties count half): threshold-free."""
    live = [scores[it["file"]] for it in items if is_live(it) and it["file"] in scores]
    att = [scores[it["file"]] for it in items if it["label"] == attack_type and it["file"] in scores]
    if not live or not att:
        return float("nan")
    return float(np.mean([(a < b) + 0.5 * (a == b) for b in live for a in att]))


def operating_points(items: list[dict], scores: dict, types: list[str]) -> dict:
    """Thresholds that refuse no live clip / at most one, and the APCER per type there."""
    live = sorted(scores[it["file"]] for it in items if is_live(it) and it["file"] in scores)
    out = {}
    for refused in (0, 1):
        if len(live) > refused:
            t = float(live[refused])
            f = metrics.figures(items, scores, t, types)
            out[f"refuse_{refused}_live"] = {"threshold": round(t, 4), "bpcer": round(f["bpcer"], 4),
                                             "apcer": {k: round(v["apcer"], 4) for k, v in f["apcer"].items()}}
    return out


# --- models/fusion.json --------------------------------------------------------------------------------------------

MATCH = {
    # sha256s of every shipped variant of the liveness model (int8 passed its parity gate against the float32).
    "bundled": lambda data: {"name": data["liveness_model"], "sha256": _bundled_hashes(data["liveness_model"])},
    "minifasnet": lambda data: {"name": data["liveness_model"], "sha256": [data["liveness_sha256"]]},
}


def _bundled_hashes(name: str) -> list[str]:
    import json
    from pathlib import Path
    manifest = json.loads((Path(__file__).resolve().parents[2] / "models" / "tflite" / "manifest.json").read_text())
    return sorted(v["sha256"] for v in manifest["models"][name]["variants"].values())


def write_fusion(raw: dict, path) -> None:
    """Fit on ALL usable clips of each configuration and write the coefficients with their description and the
    leave-one-source-out figures (the honest ones)."""
    import json
    from pathlib import Path

    from .report import parts as split_parts

    entries = []
    for name, data in raw.items():
        if name not in MATCH:  # a measured-only configuration (e.g. livenessnet): nothing ships for it
            continue
        items = [it for it in data["items"] if usable(it)]
        fusion, info = fit_selected(items)
        cv = loso_scores(items)
        train = {it["file"]: clip_average(fusion, it) for it in items}
        parts = split_parts(items)
        (_, real, real_types), (_, _, synth_types) = parts
        cv_figs = {part: metrics.figures(sub, cv, THRESHOLD, types) for part, sub, types in parts}
        train_figs = {part: metrics.figures(sub, train, THRESHOLD, types) for part, sub, types in parts}
        entries.append({
            "liveness_model": data["liveness_model"],
            "config": name,
            "match": MATCH[name](data),
            "intercept": round(fusion.intercept, 6),
            "weights": {"cnn": round(fusion.w_cnn, 6), **{k: round(v, 6) for k, v in fusion.cue_weights.items()}},
            "fit": {"l2": L2, "threshold": THRESHOLD, "train_cost": info["train_cost"],
                    "margin_in_intercept_units": round(info["margin"], 4),
                    "cnn_counted": info["cnn_counted"],
                    "loso_cost_with_cnn": info["loso_cost_with_cnn"],
                    "loso_cost_without_cnn": info["loso_cost_without_cnn"],
                    "fixed_weights": {k: {"weight": v, "penalty_logit_when_fired": FIXED_PENALTY} for k, v in
                                      FIXED.items()}},
            "data": {"live_videos": sum(is_live(it) for it in real),
                     "real_attack_videos": {t: sum(it["label"] == t for it in real) for t in real_types},
                     "synthetic_attack_videos": {t: sum(it["label"] == t for it in items) for t in synth_types},
                     "sources": sorted({it["group"] for it in items})},
            "cv_leave_one_source_out_at_0.95": {
                part: {"bpcer": round(f["bpcer"], 4), "apcer": {t: round(v["apcer"], 4) for t, v in
                                                                f["apcer"].items()}, "acer": round(f["acer"], 4)}
                for part, f in cv_figs.items()},
            "cv_auc": {t: round(pair_auc(items, cv, t), 4) for t in real_types + synth_types},
            "cv_operating_points": {part: operating_points(sub, cv, types) for part, sub, types in parts},
            "in_sample_at_0.95": {
                part: {"bpcer": round(f["bpcer"], 4), "apcer": {t: round(v["apcer"], 4) for t, v in
                                                                f["apcer"].items()}, "acer": round(f["acer"], 4),
                       "lowest_live": round(min(train[it["file"]] for it in sub if is_live(it)), 4)}
                for part, f, sub in ((p, train_figs[p], s) for p, s, _ in parts)},
            "in_sample_auc": {t: round(pair_auc(items, train, t), 4) for t in real_types + synth_types},
        })
    document = {
        "format": 1,
        "description": (
            "Fusion coefficients for liveness_edge/fusion.py LogisticFusion: per selected frame "
            "z = intercept + weights.cnn * logit(cnn) + sum_k weights[k] * logit(cue_k) (logits clipped to +-6; "
            "an abstaining cue adds 0); liveness = sigmoid(z); average_liveness = mean over frames. One entry per "
            "liveness model, matched by the model file's sha256. Fitted by tools/eval/fit.py (make eval-fit) on "
            "../shared/data videos plus synthetic attacks from tools/synth (seeded); the intercept puts 0.95 mid-way "
            "in the training interval that minimises BPCER + worst-type APCER. weights.cnn is 0 when the CNN did not "
            "earn its place: fit.cnn_counted is false when leave-one-source-out on the training clips measured a "
            "lower BPCER + worst-type APCER without it (fit.loso_cost_*). Figures under "
            "cv_leave_one_source_out_at_0.95, cv_auc (share of live/attack pairs ranked right) and cv_operating_points "
            "(the threshold refusing no / one live clip and the APCER there) come from fits that never saw the scored "
            "clip's source; in_sample_* are the shipped fit on its own training clips (optimistic). Weights are 0 "
            "for cues the constrained fit dropped; the daemon does not compute such cues. Weights listed under "
            "fit.fixed_weights are designed, not fitted (bezel: a fixed penalty when a straight-edged frame surrounds "
            "the face), and the operating point is placed without them."),
        "models": entries,
    }
    Path(path).write_text(json.dumps(document, indent=1) + "\n")
