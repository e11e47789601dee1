"""Per-cue cost: ms per selected frame of each clip cue (observe + result), median over the live clips in ../shared.

    python -m tools.eval.cuecost [--shared ../shared] [--clips N]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


class Timed:
    """Wraps a cue and adds the time spent in it to ``totals[name]``."""

    def __init__(self, cue, totals):
        self.cue, self.totals, self.name = cue, totals, cue.name

    def observe(self, frame, sample):
        t = time.perf_counter()
        self.cue.observe(frame, sample)
        self.totals[self.name] = self.totals.get(self.name, 0.0) + time.perf_counter() - t

    def result(self):
        t = time.perf_counter()
        out = self.cue.result()
        self.totals[self.name] = self.totals.get(self.name, 0.0) + time.perf_counter() - t
        return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--clips", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    labels = args.shared / "data" / "labels.csv"
    if not labels.exists():
        print(f"cuecost: skipped: {labels} is absent")
        return 0
    from liveness_edge.config import load_config
    from liveness_edge.cues.registry import CUES
    from liveness_edge.models import load_models
    from liveness_edge.pipeline import Pipeline

    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    models = load_models(cfg)
    with open(labels) as fh:
        clips = [r["file"] for r in csv.DictReader(fh) if r["kind"] == "video"][: args.clips]
    per_cue: dict[str, list[float]] = {}
    for clip in clips:
        body = (args.shared / "data" / clip).read_bytes()
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            totals: dict[str, float] = {}
            factories = [lambda make=make: Timed(make(), totals) for make in CUES.values()]
            try:
                res = Pipeline(cfg, models, cue_factories=factories).run(body)
            except Exception as exc:  # noqa: BLE001 - a clip the pipeline refuses has no cue cost
                print(f"{clip}: {exc}", file=sys.stderr)
                break
            for name, secs in totals.items():
                ms = 1000 * secs / max(res.frames_selected, 1)
                best[name] = min(best.get(name, ms), ms)
        for name, ms in best.items():
            per_cue.setdefault(name, []).append(ms)
        print(f"{clip}: " + " ".join(f"{k}={v:.2f}" for k, v in best.items()) + f" total={sum(best.values()):.2f}")
    total = [sum(v) for v in zip(*per_cue.values())]
    print("median ms/frame: " + " ".join(f"{k}={np.median(v):.2f}" for k, v in per_cue.items())
          + f" all={np.median(total):.2f} (max {max(total):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
