"""Figures, text tables and the DET/ROC plot from collected pipeline outputs (see tools/eval/__main__.py)."""

from __future__ import annotations

import numpy as np

from . import fit, metrics


def parts(videos: list[dict]) -> tuple[tuple[str, list[dict], list[str]], ...]:
    """("real", the real videos, their attack labels) and ("synthetic", the live videos with the synthetic attacks,
    those attacks' labels). The labels are read from the data (spoof-replay today; spoof-print when a real print
    video arrives), so a new kind of real attack clip in ../shared is counted in the figures, not left out of them."""
    real = [it for it in videos if not it["synthetic"]]
    synth = [it for it in videos if it["synthetic"] or it["label"] == "live"]
    return (("real", real, sorted({it["label"] for it in real if it["label"] != "live"})),
            ("synthetic", synth, sorted({it["label"] for it in synth if it["synthetic"]})))


def _score_sets(items: list[dict]) -> dict[str, dict[str, float | None]]:
    videos = [it for it in items if it["kind"] == "video"]
    sets = {
        "daemon (shipped fusion, in-sample)": {it["file"]: (it["average"] if it["status"] == "ok" else None)
                                               for it in videos},
        "cnn (mean of frames)": {it["file"]: (float(np.mean(it["cnn"])) if it["status"] == "ok" else None)
                                 for it in videos},
    }
    for cue in fit.MEASURED_CUES:
        sets[f"cue:{cue} alone"] = {
            it["file"]: ((it["cues"].get(cue, {}).get("value") if it["cues"].get(cue, {}).get("value") is not None
                          else 0.5)
                         if it["status"] == "ok" else None) for it in videos}
    cv = fit.loso_scores(videos)
    sets["fused (leave-one-source-out CV)"] = {it["file"]: cv.get(it["file"]) for it in videos}
    cv_cnn = fit.loso_scores(videos, cues=(), fixed={})
    sets["cnn recalibrated (LOSO CV, no cues)"] = {it["file"]: cv_cnn.get(it["file"]) for it in videos}
    if fit.FIXED:
        cv_unfixed = fit.loso_scores(videos, fixed={})
        sets[f"fused without {'+'.join(fit.FIXED)} (LOSO CV)"] = {it["file"]: cv_unfixed.get(it["file"])
                                                                   for it in videos}
    for policy, label in fit.POLICIES.items():
        if policy == "all":  # the shipped one: the "fused" row above
            continue
        cv_policy = fit.loso_scores(videos, policy=policy)
        sets[f"fused, op. point on {label} (LOSO CV)"] = {it["file"]: cv_policy.get(it["file"]) for it in videos}
    if all(fit.AUX in it for it in videos if it["status"] == "ok"):
        cv_aux = fit.loso_scores(videos, cues=fit.CUE_NAMES + (fit.AUX,))
        sets["fused + livenessnet 2nd CNN (LOSO CV)"] = {it["file"]: cv_aux.get(it["file"]) for it in videos}
    return sets


def with_aux(data: dict, aux: dict) -> dict:
    """``data``'s items with the per-frame scores of the configuration ``aux`` (same clips, same selected frames)
    as ``cnn_aux``; items whose frames differ are left without it."""
    by_file = {it["file"]: it for it in aux["items"]}
    items = []
    for it in data["items"]:
        other = by_file.get(it["file"])
        if it["status"] == "ok" and other and other["status"] == "ok" and len(other["cnn"]) == len(it["cnn"]):
            it = {**it, fit.AUX: other["cnn"]}
        items.append(it)
    return {**data, "items": items}


def build(raw: dict) -> dict:
    out = {}
    for name, data in raw.items():
        if name == "bundled" and "livenessnet" in raw:
            data = with_aux(data, raw["livenessnet"])
        items = data["items"]
        videos = [it for it in items if it["kind"] == "video"]
        split = parts(videos)
        (_, real, real_types), (_, _, synth_types) = split
        threshold = data["threshold"]
        conf = {"liveness_model": data["liveness_model"], "variant": data["liveness_variant"],
                "fusion_in_daemon": data["fusion"], "threshold": threshold,
                "data": {"live_videos": sum(it["label"] == "live" for it in real),
                         "real_attack_videos": sum(it["label"] != "live" for it in real),
                         "synthetic_attack_videos": sum(it["synthetic"] for it in videos),
                         "sources": len({it["group"] for it in videos})},
                "sets": {}, "per_clip": {}, "images": [], "cues": {}}
        for set_name, scores in _score_sets(items).items():
            entry = {}
            # A cue alone is judged at its own decision point 0.5 (its value is not calibrated to 0.95).
            threshold = 0.5 if set_name.startswith("cue:") else data["threshold"]
            for part, subset, types in (*split, ("all", videos, real_types + synth_types)):
                at_cfg = metrics.figures(subset, scores, threshold, types)
                t2 = metrics.bpcer_threshold(subset, scores)
                entry[part] = {"at_threshold": at_cfg, "bpcer2_threshold": t2,
                               "at_bpcer2": metrics.figures(subset, scores, t2, types),
                               "curve": metrics.curve(subset, scores, types)}
            entry["auc"] = {t: fit.pair_auc(videos, {k: v for k, v in scores.items() if v is not None}, t)
                            for t in real_types + synth_types}
            conf["sets"][set_name] = entry
            conf["per_clip"][set_name] = {k: (None if v is None else round(float(v), 4)) for k, v in scores.items()}
        for it in videos:
            if it["status"] == "ok":
                for cue, res in it["cues"].items():
                    c = conf["cues"].setdefault(cue, {"live_decided": 0, "live_n": 0, "attack_decided": 0,
                                                      "attack_n": 0})
                    side = "live" if it["label"] == "live" else "attack"
                    c[f"{side}_n"] += 1
                    c[f"{side}_decided"] += res["value"] is not None
        ok = [it for it in videos if it["status"] == "ok"]
        conf["cost_ms_per_frame"] = {
            "cues_median": float(np.median([it["cue_ms_per_frame"] for it in ok])) if ok else None,
            "models_and_decode_median": float(np.median([it["model_ms_per_frame"] for it in ok])) if ok else None}
        for it in items:
            if it["kind"] == "image":
                conf["images"].append({"file": it["file"], "label": it["label"], "status": it["status"],
                                       "cnn": it["cnn"][0] if it["status"] == "ok" else None,
                                       "daemon": round(it["average"], 4) if it["status"] == "ok" else None})
        conf["clips"] = [{"file": it["file"], "label": it["label"], "group": it["group"], "status": it["status"],
                          "frames_selected": it.get("frames_selected"),
                          "cues": {k: v["value"] for k, v in it.get("cues", {}).items()},
                          "cue_detail": {k: v["detail"] for k, v in it.get("cues", {}).items()}} for it in videos]
        out[name] = conf
    return out


def _pct(x: float) -> str:
    return "  n/a" if x != x else f"{100 * x:5.1f}"


def _ci(pair) -> str:
    """A 95 % interval as whole percents, e.g. "6-61"."""
    lo, hi = pair
    return "n/a" if lo != lo else f"{100 * lo:.0f}-{100 * hi:.0f}"


def text(figures: dict) -> str:
    lines = []
    for name, conf in figures.items():
        d = conf["data"]
        lines.append(f"\n=== configuration {name}: liveness model {conf['liveness_model']} ({conf['variant']}), "
                     f"daemon fusion {conf['fusion_in_daemon']}, threshold {conf['threshold']}")
        lines.append(f"    data: {d['live_videos']} live videos, {d['real_attack_videos']} real attack videos, "
                     f"{d['synthetic_attack_videos']} synthetic attacks, {d['sources']} sources (CV folds)")
        lines.append(f"    cost: cues {conf['cost_ms_per_frame']['cues_median']:.2f} ms/frame (median) vs decode+"
                     f"models {conf['cost_ms_per_frame']['models_and_decode_median']:.1f} ms/frame")
        header = (f"    {'scores':40s} {'part':9s} | at thr: {'BPCER':>5s} (frm) {'APCER worst':>11s} {'ACER':>5s} |"
                  f" thr@BPCER<=2% {'APCER/type':s}")
        lines.append(header)
        lines.append("    (last column: the 95 % Clopper-Pearson intervals of BPCER and of each attack type's APCER at the "
                     "threshold: what these few clips can say)")
        lines.append("    (cue:* rows are judged at 0.5, their own decision point; abstaining counts as 0.5 = accepted)")
        for set_name, entry in conf["sets"].items():
            for part in ("real", "synthetic"):
                e = entry[part]
                a = e["at_threshold"]
                worst = max(v["apcer"] for v in a["apcer"].values())
                b2 = e["at_bpcer2"]
                per_type = " ".join(f"{t.replace('synthetic-', 's-')}={_pct(v['apcer']).strip()}%"
                                    f"({v['accepted']}/{v['n']})" for t, v in b2["apcer"].items())
                intervals = f"BPCER {_ci(a['bpcer_ci95'])}% " + " ".join(
                    f"{t.replace('synthetic-', 's-')} {_ci(v['ci95'])}%" for t, v in a["apcer"].items())
                lines.append(f"    {set_name:40s} {part:9s} | {_pct(a['bpcer'])} ({a['live_refused_frames']})"
                             f" {_pct(worst):>11s} {_pct(a['acer'])} | {e['bpcer2_threshold']:.3f} {per_type}"
                             f" | 95%: {intervals}")
            lines.append(f"    {'':40s} AUC live vs " + " ".join(
                f"{t}={v:.3f}" for t, v in entry["auc"].items()))
        lines.append("    cue coverage (decided / clips): " + ", ".join(
            f"{c}: live {v['live_decided']}/{v['live_n']}, attacks {v['attack_decided']}/{v['attack_n']}"
            for c, v in conf["cues"].items()))
        lines.append("    per clip (daemon | cnn | fused CV | cues):")
        daemon = conf["per_clip"]["daemon (shipped fusion, in-sample)"]
        cnn = conf["per_clip"]["cnn (mean of frames)"]
        cv = conf["per_clip"]["fused (leave-one-source-out CV)"]
        for clip in conf["clips"]:
            f = clip["file"]
            cues = " ".join(f"{k[:5]}={'-' if v is None else f'{v:.2f}'}" for k, v in clip["cues"].items())
            fmt = lambda v: "  err" if v is None else f"{v:.3f}"
            lines.append(f"      {clip['label']:16s} {f[-44:]:44s} {fmt(daemon.get(f))} {fmt(cnn.get(f))} "
                         f"{fmt(cv.get(f))} {cues} {'' if clip['status'] == 'ok' else clip['status']}")
        lines.append("    images (single frame, min-selected-frames 1): " + ", ".join(
            f"{im['file']} [{im['label']}] cnn={im['cnn'] if im['cnn'] is None else round(im['cnn'], 3)} "
            f"daemon={im['daemon']}" for im in conf["images"]))
    return "\n".join(lines)


def plot(figures: dict, path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("eval: matplotlib is not installed (pip install '.[eval]'); no plot")
        return
    fig, axes = plt.subplots(1, len(figures), figsize=(6 * len(figures), 5), squeeze=False)
    for ax, (name, conf) in zip(axes[0], figures.items()):
        for set_name in ("cnn (mean of frames)", "fused (leave-one-source-out CV)",
                         "daemon (shipped fusion, in-sample)"):
            c = conf["sets"][set_name]["all"]["curve"]
            ax.step(np.array(c["bpcer"]) * 100, np.array(c["apcer"]) * 100, where="post", label=set_name)
        ax.set_xlabel("BPCER % (live refused)")
        ax.set_ylabel("worst-type APCER % (attacks accepted)")
        ax.set_title(f"{name}: {conf['liveness_model']} (real + synthetic attacks)")
        ax.set_xlim(-2, 102)
        ax.set_ylim(-2, 102)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
