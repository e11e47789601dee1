"""make stress: prints held still (a sheet on a stand), an attack the fit never sees.

    python -m tools.eval.stress [--shared ../shared] [--configs bundled,minifasnet]

The synthetic prints of ``make eval`` are hand-held, as the accuracy issue describes them; a print propped up in front
of a kiosk barely moves, so `planarity` (which needs out-of-plane motion) and `micro_motion` abstain on it. This
renders one such print per live clip (tools/synth ``synth_print`` with the hand motion scaled to STILL, its own seeds,
cached in .cache/synth/still-<STILL>/), runs the daemon's pipeline on it, and scores it with the fusion procedure of
``make eval`` fitted WITHOUT the print's source (``fit_selected`` on the clips ``make eval`` collected). It prints each
clip's score, what the cues saw, and how many are accepted at the threshold. Nothing here feeds the shipped fit.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
STILL = 0.02  # share of the hand-held pose tracks kept: sub-degree sway, under planarity's 1 % motion gate
LABEL = "still-print"


def still_prints(shared: Path, out: Path, frames: int = 40) -> list[dict]:
    from tools.synth.generate import generate, synth_print

    make = functools.partial(synth_print, motion=STILL)
    # The folder names the motion scale, so a changed STILL never reuses clips rendered with another.
    return generate(shared, out, frames, verbose=False, variants=1, attacks={LABEL: (f"still-{STILL:g}", make)})


def score(name: str, entries: list[dict], cache: Path) -> list[dict]:
    """Per still print: the pipeline's cue results and its average_liveness under a fusion fitted without its source."""
    from . import collect, fit

    collected = json.loads((cache / f"raw-{name}.json").read_text())
    train = [it for it in collected["items"] if fit.usable(it)]
    fusions = {}
    rows = []
    for item in collect.collect(name, entries, log=lambda msg: None)["items"]:
        row = {"file": Path(item["file"]).name, "status": item["status"]}
        if item["status"] == "ok":
            group = item["group"]
            if group not in fusions:
                fusions[group], _ = fit.fit_selected([it for it in train if it["group"] != group])
            row.update(score=fit.clip_average(fusions[group], item), cnn=float(np.mean(item["cnn"])),
                       cues={k: v["value"] for k, v in item["cues"].items()})
        rows.append(row)
    return rows


def report(name: str, rows: list[dict], threshold: float) -> str:
    scored = [r for r in rows if r["status"] == "ok"]
    accepted = sum(r["score"] >= threshold for r in scored)
    lines = [f"{name}: {accepted} of {len(scored)} still prints accepted at {threshold} "
             f"({len(rows) - len(scored)} refused with an error)"]
    for r in sorted(rows, key=lambda r: r.get("score", -1.0)):
        if r["status"] != "ok":
            lines.append(f"    {r['file']:40s} {r['status']}")
            continue
        cues = " ".join(f"{k[:5]}={'-' if v is None else f'{v:.2f}'}" for k, v in r["cues"].items())
        lines.append(f"    {r['file']:40s} {r['score']:.3f} cnn={r['cnn']:.3f} {cues}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="still-print stress test")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "eval")
    parser.add_argument("--configs", default="bundled,minifasnet")
    args = parser.parse_args(argv)
    if not (args.shared / "data" / "labels.csv").exists():
        print(f"stress: skipped: {args.shared}/data/labels.csv is absent (see ../shared/README.md)")
        return 0
    names = args.configs.split(",")
    missing = [n for n in names if not (args.cache / f"raw-{n}.json").exists()]
    if missing:
        print(f"stress: run `make eval` first (no collected clips for {', '.join(missing)} in {args.cache})")
        return 2
    from . import collect
    from .fit import THRESHOLD

    entries = collect.items(args.shared, still_prints(args.shared, ROOT / ".cache" / "synth"))
    entries = [e for e in entries if e["label"] == LABEL]
    for name in names:
        print(report(name, score(name, entries, args.cache), THRESHOLD))
    return 0


if __name__ == "__main__":
    sys.exit(main())
