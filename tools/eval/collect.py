"""Run the daemon's pipeline over every labelled clip/image (+ synthetic attacks) and keep the raw per-item outputs.

The pipeline is built as the daemon builds it (``Pipeline(cfg, models)``, fusion from fusion.load_fusion) except
that EVERY cue in cues/registry.py runs, including any the shipped fusion gives weight 0, and so does the liveness
CNN when its weight is 0 (``score_cnn=True``); the daemon skips those, as they add 0 to its answer. It runs with
``Options(return_frames=True)``, so every item yields the daemon's own answer plus the per-frame CNN scores and
per-cue results that tools/eval/fit.py refits offline.
Images are scored as single frames: ``min-selected-frames`` is overridden to 1 for them only.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path

from liveness_edge.config import load_config
from liveness_edge.cues.registry import CUES
from liveness_edge.errors import LivenessError
from liveness_edge.models import load_models
from liveness_edge.pipeline import Options, Pipeline

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "bundled": None,  # what ships: config/liveness-edge.ini as is
    "minifasnet": ROOT / "config" / "examples" / "minifasnet_v2.yaml",
}
# Extra configurations measured by `make eval` (--configs): model overrides of the shipped config.
OVERRIDES = {
    "antispoof": {"liveness": "antispoof"},
    "livenessnet": {"liveness": "liveness"},
}


def group_of(row: dict) -> str:
    """Cross-validation source: the repository a clip comes from (synthetic attacks: their live clip's)."""
    file = row.get("pair") or row["file"]
    source = row.get("pair_source") or row["source"]
    parts = source.split()
    return parts[1].split("/")[0].lower() if len(parts) > 1 and parts[0] == "github" else Path(file).stem


def items(shared: Path, synth_rows: list[dict]) -> list[dict]:
    with open(shared / "data" / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    by_file = {r["file"]: r for r in rows}
    out = []
    for r in rows:
        out.append({"file": r["file"], "path": shared / "data" / r["file"], "label": r["label"], "kind": r["kind"],
                    "synthetic": False, "group": group_of(r)})
    for r in synth_rows:
        live = by_file[r["pair"]]
        out.append({"file": str(Path(r["path"]).relative_to(ROOT)), "path": Path(r["path"]), "label": r["label"],
                    "kind": "video", "synthetic": True, "group": group_of({**r, "pair_source": live["source"]})})
    return out


def config_for(name: str):
    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    if name in OVERRIDES:
        return dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, **OVERRIDES[name]))
    spec = CONFIGS[name]
    if spec is not None:
        cfg = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, liveness_spec=spec))
    return cfg


def collect(name: str, entries: list[dict], log=print) -> dict:
    cfg = config_for(name)
    models = load_models(cfg)
    every_cue = tuple(CUES.values())  # the fit needs every cue, including those the shipped fusion dropped
    # ... and the CNN's scores even where the shipped fusion gives it weight 0 (the daemon then skips it).
    pipe = Pipeline(cfg, models, cue_factories=every_cue, score_cnn=True)
    image_pipe = Pipeline(dataclasses.replace(cfg, min_selected_frames=1), models, cue_factories=every_cue,
                          score_cnn=True)
    liveness = next(i for i in models.infos if i.role == "liveness")
    results = []
    for entry in entries:
        body = entry["path"].read_bytes()
        runner = image_pipe if entry["kind"] == "image" else pipe
        started = time.perf_counter()
        record = {k: v for k, v in entry.items() if k != "path"}
        try:
            res = runner.run(body, Options(return_frames=True))
        except LivenessError as exc:
            record.update(status=exc.code, message=str(exc))
        else:
            frames = max(res.frames_selected, 1)
            record.update(
                status="ok", alive=res.alive, average=res.average_liveness,
                cnn=[f["cnn"] for f in res.frames], fused=[f["liveness"] for f in res.frames],
                cues={c.name: {"value": c.value, "detail": c.detail} for c in res.cues},
                frames_decoded=res.frames_decoded, frames_selected=res.frames_selected, dropped=res.dropped,
                cue_ms_per_frame=1000 * res.stage_seconds.get("cues", 0.0) / frames,
                model_ms_per_frame=1000 * sum(res.stage_seconds.get(k, 0.0) for k in
                                              ("decode", "convert", "detect", "landmarks", "liveness")) / frames,
            )
        record["seconds"] = round(time.perf_counter() - started, 3)
        results.append(record)
        log(f"eval[{name}]: {record['file']}: {record['status']}"
            + (f" avg={record['average']:.3f} cues={ {k: v['value'] for k, v in record['cues'].items()} }"
               if record["status"] == "ok" else f" ({record.get('message', '')[:80]})"))
    return {"config": name, "liveness_model": liveness.name, "liveness_sha256": liveness.sha256,
            "liveness_variant": liveness.variant, "fusion": pipe.fusion.name, "threshold": cfg.liveness_threshold,
            "items": results}
