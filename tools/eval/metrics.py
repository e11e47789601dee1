"""ISO/IEC 30107-3 figures for one set of scores.

APCER(type): share of attack presentations of that type accepted (score >= threshold; an attack the pipeline refuses
with an error counts as rejected). BPCER: share of live presentations refused, by score, plus (reported separately)
the ones refused for too few usable frames. ACER = (worst-type APCER + BPCER) / 2.
"""

from __future__ import annotations

import math

import numpy as np

TOO_FEW = ("NOT_ENOUGH_FRAMES", "NO_FACE", "MULTIPLE_FACES")


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a rate of k in n: what k of n presentations says about the
    rate a larger set of the same kind would show. With 11 live clips or 3 real replays it is wide, and the README
    reports it beside every rate."""
    if n <= 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0

    def at_least(j: int, p: float) -> float:  # P(X >= j) for X ~ Binomial(n, p): increasing in p
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(j, n + 1))

    def solve(f, target: float) -> float:  # f increasing in p on [0, 1]
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
        return (lo + hi) / 2.0

    lower = 0.0 if k == 0 else solve(lambda p: at_least(k, p), tail)  # P(X >= k) = tail
    upper = 1.0 if k == n else solve(lambda p: at_least(k + 1, p), 1.0 - tail)  # P(X <= k) = tail
    return lower, upper


def figures(items: list[dict], scores: dict[str, float | None], threshold: float,
            types: list[str] | None = None) -> dict:
    live = [it for it in items if it["label"] == "live"]
    attacks = [it for it in items if it["label"] != "live"]
    types = types or sorted({it["label"] for it in attacks})
    live_scored = [scores.get(it["file"]) for it in live]
    refused_score = sum(1 for s in live_scored if s is not None and s < threshold)
    refused_frames = sum(1 for it, s in zip(live, live_scored) if s is None)
    n_live = len(live)
    bpcer = (refused_score + refused_frames) / n_live if n_live else float("nan")
    apcer = {}
    for t in types:
        group = [it for it in attacks if it["label"] == t]
        accepted = sum(1 for it in group if scores.get(it["file"]) is not None and scores[it["file"]] >= threshold)
        apcer[t] = {"accepted": accepted, "n": len(group), "apcer": accepted / len(group) if group else float("nan"),
                    "ci95": clopper_pearson(accepted, len(group))}
    worst = max((v["apcer"] for v in apcer.values() if v["n"]), default=float("nan"))
    return {"threshold": threshold, "n_live": n_live, "bpcer": bpcer, "live_refused_score": refused_score,
            "live_refused_frames": refused_frames, "bpcer_ci95": clopper_pearson(refused_score + refused_frames, n_live),
            "apcer": apcer, "acer": (worst + bpcer) / 2}


def bpcer_threshold(items: list[dict], scores: dict, target: float = 0.02) -> float:
    """The highest threshold at which BPCER (by score) stays <= target."""
    live = sorted(s for it in items if it["label"] == "live" and (s := scores.get(it["file"])) is not None)
    if not live:
        return float("nan")
    allowed = int(np.floor(target * len(live)))  # how many live clips may fall below
    return float(live[allowed])


def curve(items: list[dict], scores: dict, types: list[str]) -> dict:
    """(threshold, BPCER, worst-type APCER) over every distinct score: for the DET/ROC plot."""
    values = sorted({s for s in scores.values() if s is not None} | {0.0, 1.0 + 1e-9})
    rows = [figures(items, scores, t, types) for t in values]
    return {"threshold": values, "bpcer": [r["bpcer"] for r in rows],
            "apcer": [max(v["apcer"] for v in r["apcer"].values()) for r in rows]}
