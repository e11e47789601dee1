"""ISO/IEC 30107-3 figures for one set of scores.

APCER(type): share of attack presentations of that type accepted (score >= threshold; an attack the pipeline refuses
with an error counts as rejected). BPCER: share of live presentations refused, by score, plus (reported separately)
the ones refused for too few usable frames. ACER = (worst-type APCER + BPCER) / 2.
"""

from __future__ import annotations

import numpy as np

TOO_FEW = ("NOT_ENOUGH_FRAMES", "NO_FACE", "MULTIPLE_FACES")


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
        apcer[t] = {"accepted": accepted, "n": len(group), "apcer": accepted / len(group) if group else float("nan")}
    worst = max((v["apcer"] for v in apcer.values() if v["n"]), default=float("nan"))
    return {"threshold": threshold, "n_live": n_live, "bpcer": bpcer, "live_refused_score": refused_score,
            "live_refused_frames": refused_frames, "apcer": apcer, "acer": (worst + bpcer) / 2}


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
