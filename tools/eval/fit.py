"""Fit the fusion (models/fusion.json) on collected pipeline outputs, and cross-validate it leave-one-source-out.

Model (see liveness_edge/fusion.py): per frame z = b + w_cnn*logit(cnn) + sum_k w_k*logit(cue_k), cues that abstain
add 0; liveness = sigmoid(z); the clip's average_liveness = mean over frames. Weights: L2-regularised logistic
regression on frames, each clip weighted 1/frames and the classes (live / attack) balanced; cue weights are kept
>= 0 (a cue with a negative fitted weight is dropped and the rest refitted). Then the intercept is
moved so that the threshold 0.95 on average_liveness sits in the middle (in intercept units) of the interval that
minimises the training clips' (BPCER + worst-type APCER): the documented operating point of ``liveness-threshold``.
"""

from __future__ import annotations

import numpy as np

from liveness_edge.fusion import LogisticFusion, logit, sigmoid

CUE_NAMES = ("planarity", "blink", "micro_motion", "texture")
THRESHOLD = 0.95
L2 = 1.0


def usable(item: dict) -> bool:
    return item["status"] == "ok" and item["kind"] == "video"


def is_live(item: dict) -> bool:
    return item["label"] == "live"


def features(item: dict, cues=CUE_NAMES) -> np.ndarray:
    """(frames, 1 + len(cues)) design rows: logit(cnn) per frame, then each cue's logit (0 when it abstains)."""
    cnn = logit(np.asarray(item["cnn"], np.float64))
    row = [float(logit(item["cues"][c]["value"])) if item["cues"].get(c, {}).get("value") is not None else 0.0
           for c in cues]
    return np.column_stack([cnn] + [np.full(len(cnn), v) for v in row])


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


def clip_average(fusion: LogisticFusion, item: dict, cues=CUE_NAMES, delta: float = 0.0) -> float:
    X = features(item, cues)
    weights = np.array([fusion.w_cnn] + [fusion.cue_weights.get(c, 0.0) for c in cues])
    return float(sigmoid(X @ weights + fusion.intercept + delta).mean())


def _flip_delta(fusion, item, cues) -> float:
    """The intercept shift at which this clip's average crosses THRESHOLD (bisection; monotone in the shift)."""
    lo, hi = -40.0, 40.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if clip_average(fusion, item, cues, mid) >= THRESHOLD:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def place_threshold(fusion: LogisticFusion, train: list[dict], cues=CUE_NAMES) -> tuple[float, dict]:
    """Intercept shift putting 0.95 mid-way in the best (BPCER + worst APCER) interval on ``train``."""
    flips = np.array([_flip_delta(fusion, it, cues) for it in train])
    live = np.array([is_live(it) for it in train])
    types = sorted({it["label"] for it in train if not is_live(it)})
    candidates = np.unique(np.concatenate([flips - 1e-6, flips + 1e-6, [flips.min() - 1, flips.max() + 1]]))
    def cost(d):
        bpcer = np.mean(d < flips[live]) if live.any() else 0.0  # live refused while the shift is below its flip
        apcers = [np.mean(d >= flips[np.array([it["label"] == t for it in train])]) for t in types]
        return bpcer + max(apcers, default=0.0), bpcer
    costs = np.array([cost(d)[0] for d in candidates])
    best = costs.min()
    # The longest run of consecutive optimal candidates; its middle is the max-margin shift.
    runs, current = [], []
    for d, c in zip(candidates, costs):
        if c <= best + 1e-12:
            current.append(d)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    run = max(runs, key=lambda r: r[-1] - r[0])
    lo, hi = run[0], run[-1]
    # Open-ended runs: stay 2 units inside the data.
    lo = max(lo, flips.min() - 2.0)
    hi = min(hi, flips.max() + 2.0)
    delta = 0.5 * (lo + hi)
    return delta, {"train_cost": float(best), "margin": float(0.5 * (hi - lo))}


def fit(train: list[dict], cues=CUE_NAMES, l2: float = L2) -> tuple[LogisticFusion, dict]:
    train = [it for it in train if usable(it)]
    X, y, w = [], [], []
    n_live = sum(is_live(it) for it in train)
    n_att = len(train) - n_live
    for it in train:
        f = features(it, cues)
        X.append(f)
        y.append(np.full(len(f), 1.0 if is_live(it) else 0.0))
        w.append(np.full(len(f), 1.0 / len(f) / (n_live if is_live(it) else n_att)))
    X, y, w = np.vstack(X), np.concatenate(y), np.concatenate(w)
    w = w * len(train)  # mean clip weight 1 (keeps the L2 strength comparable across fold sizes)
    # Cues are evidence OF life by design (one-sided, abstaining otherwise): a cue whose fitted weight comes out
    # negative (it happens to say "live" on these replays) is dropped and the rest refitted, so no cue can turn into
    # a penalty learned from a few clips.
    active = list(range(X.shape[1]))
    while True:
        beta_active = _logreg(X[:, active], y, w, l2)
        negative = [a for a, b in zip(active[1:], beta_active[1:-1]) if b < 0]
        if not negative:
            break
        active = [a for a in active if a not in negative]
    beta = np.zeros(X.shape[1] + 1)
    beta[active] = beta_active[:-1]
    beta[-1] = beta_active[-1]
    fusion = LogisticFusion(float(beta[-1]), float(beta[0]), dict(zip(cues, map(float, beta[1:-1]))))
    delta, info = place_threshold(fusion, train, cues)
    return LogisticFusion(fusion.intercept + delta, fusion.w_cnn, fusion.cue_weights), info


def loso_scores(items: list[dict], cues=CUE_NAMES, l2: float = L2) -> dict[str, float]:
    """average_liveness of every usable item from a fusion fitted without its source group."""
    out = {}
    for group in sorted({it["group"] for it in items}):
        train = [it for it in items if it["group"] != group and usable(it)]
        test = [it for it in items if it["group"] == group and usable(it)]
        if not test:
            continue
        fusion, _ = fit(train, cues, l2)
        for it in test:
            out[it["file"]] = clip_average(fusion, it, cues)
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

    from . import metrics
    from .report import REAL_TYPES, SYNTH_TYPES

    entries = []
    for name, data in raw.items():
        items = [it for it in data["items"] if usable(it)]
        fusion, info = fit(items)
        cv = loso_scores(items)
        real = [it for it in items if not it["synthetic"]]
        synth = [it for it in items if it["synthetic"] or is_live(it)]
        cv_figs = {part: metrics.figures(sub, cv, THRESHOLD, types) for part, sub, types in
                   (("real", real, REAL_TYPES), ("synthetic", synth, SYNTH_TYPES))}
        entries.append({
            "liveness_model": data["liveness_model"],
            "config": name,
            "match": MATCH[name](data),
            "intercept": round(fusion.intercept, 6),
            "weights": {"cnn": round(fusion.w_cnn, 6), **{k: round(v, 6) for k, v in fusion.cue_weights.items()}},
            "fit": {"l2": L2, "threshold": THRESHOLD, "train_cost": info["train_cost"],
                    "margin_in_intercept_units": round(info["margin"], 4)},
            "data": {"live_videos": sum(is_live(it) for it in real),
                     "real_attack_videos": {t: sum(it["label"] == t for it in real) for t in REAL_TYPES},
                     "synthetic_attack_videos": {t: sum(it["label"] == t for it in items) for t in SYNTH_TYPES},
                     "sources": sorted({it["group"] for it in items})},
            "cv_leave_one_source_out_at_0.95": {
                part: {"bpcer": round(f["bpcer"], 4), "apcer": {t: round(v["apcer"], 4) for t, v in
                                                                f["apcer"].items()}, "acer": round(f["acer"], 4)}
                for part, f in cv_figs.items()},
        })
    document = {
        "format": 1,
        "description": (
            "Fusion coefficients for liveness_edge/fusion.py LogisticFusion: per selected frame "
            "z = intercept + weights.cnn * logit(cnn) + sum_k weights[k] * logit(cue_k) (logits clipped to +-6; "
            "an abstaining cue adds 0); liveness = sigmoid(z); average_liveness = mean over frames. One entry per "
            "liveness model, matched by the model file's sha256. Fitted by tools/eval/fit.py (make eval-fit) on "
            "../shared/data videos plus synthetic attacks from tools/synth (seeded); the intercept puts 0.95 mid-way "
            "in the training interval that minimises BPCER + worst-type APCER. Figures under "
            "cv_leave_one_source_out_at_0.95 come from fits that never saw the scored clip's source."),
        "models": entries,
    }
    Path(path).write_text(json.dumps(document, indent=1) + "\n")
