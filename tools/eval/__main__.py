"""make eval: the accuracy of the daemon's pipeline on ../shared/data (+ synthetic attacks), per model/cue config.

    python -m tools.eval [--shared ../shared] [--out eval/out] [--reuse] [--fit-write models/fusion.json]

For each configuration (``bundled``: what ships; ``minifasnet``: MiniFASNetV2 in the model slot via
config/examples/minifasnet_v2.yaml) it runs the daemon's Pipeline over every labelled item and reports:

- ``daemon``: the daemon's own answer with the SHIPPED fusion (models/fusion.json). That fusion was fitted on these
  very clips, so these figures are IN-SAMPLE (optimistic) and labelled so;
- ``cnn``: the per-frame CNN alone (mean over frames), i.e. the seed's rule;
- ``livenessnet``: the bundled ``liveness`` CNN (livenessnet 32x32) in place of ``antispoof``; measured, not shipped;
  its per-frame scores are also fused with the bundled config as a second CNN (``cnn_aux``, LOSO CV);
- ``cue:<name>``: each clip cue alone (abstaining counts as 0.5 = undecided; coverage reported);
- ``fused-cv``: the fusion re-fitted leave-one-source-out (a source = a repository; a live clip and the attacks
  synthesized from it are in the same source), each clip scored by the fusion fitted without its source. These are
  the honest figures.

Figures: APCER per attack type, BPCER (refusals by score and for too few frames separately), ACER at the configured
threshold, the threshold that keeps BPCER <= 2 % and APCER there. Real attacks and synthetic attacks are reported
separately; images are scored per frame (min-selected-frames 1) and reported on their own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def code_key() -> str:
    """Changes when anything that affects the collected outputs changes (cues, pipeline, models, synth)."""
    digest = hashlib.sha256()
    for pattern in ("liveness_edge/**/*.py", "models/tflite/*.json", "tools/synth/*.py", "config/examples/*.yaml",
                    "config/liveness-edge.ini", "models/fusion.json"):
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="liveness-edge accuracy evaluation")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "out")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "eval")
    parser.add_argument("--reuse", action="store_true", help="reuse collected outputs even if the code changed")
    parser.add_argument("--configs", default="bundled,minifasnet,livenessnet")
    parser.add_argument("--fit-write", type=Path, help="fit on all data and write the fusion coefficients here")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not (args.shared / "data" / "labels.csv").exists():
        print(f"eval: skipped: {args.shared}/data/labels.csv is absent (the labelled media live in ../shared; "
              "see ../shared/README.md)")
        return 0
    logging.basicConfig(level=logging.WARNING)
    from tools.synth.generate import generate
    from . import collect, report

    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    synth_rows = generate(args.shared, ROOT / ".cache" / "synth", 40, verbose=not args.quiet)
    entries = collect.items(args.shared, synth_rows)
    key = code_key()
    raw = {}
    args.cache.mkdir(parents=True, exist_ok=True)
    for name in args.configs.split(","):
        cached = args.cache / f"raw-{name}.json"
        if cached.exists():
            data = json.loads(cached.read_text())
            if args.reuse or data.get("code_key") == key:
                raw[name] = data
                continue
        if collect.CONFIGS.get(name) is not None and not collect.CONFIGS[name].exists():
            print(f"eval: {name}: {collect.CONFIGS[name]} is missing; skipped")
            continue
        data = collect.collect(name, entries, log)
        data["code_key"] = key
        cached.write_text(json.dumps(data, indent=1))
        raw[name] = data
    if args.fit_write:
        from .fit import write_fusion
        write_fusion(raw, args.fit_write)
        print(f"eval: wrote {args.fit_write}")
    figures = report.build(raw)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1))
    report.plot(figures, args.out / "det.png")
    print(report.text(figures))
    print(f"eval: figures in {args.out / 'figures.json'}, plot {args.out / 'det.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
