"""`make probe`: can a small model trained here on the bundled CNNs' features tell live from attack on unseen sources?

The issue allows training a small model on face crops if it is validated leave-one-source-out. The cheapest such
model that still uses everything a CNN learned is a linear probe: the penultimate-layer embedding of a bundled CNN
(antispoof: 128 values, livenessnet: 64), computed on the daemon's own liveness crops of every selected frame,
averaged over the clip, standardised on the training folds, and an L2 logistic regression on top (every attack type
weighing the same, live and attacks balanced, as tools/eval/fit.py does). Each clip is scored by a probe fitted without
its source group, and the pair AUC per attack type is printed for a grid of L2 strengths. Nothing here ships: it
measures whether shipping such a probe would be justified (docs/accuracy.md has the figures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from liveness_edge.errors import LivenessError
from liveness_edge.models import load_models
from liveness_edge.pipeline import Options, Pipeline

from . import collect
from .fit import _logreg, pair_auc

ROOT = Path(__file__).resolve().parents[2]
# eval configuration -> (model file, index of its penultimate dense layer's output tensor)
EMBEDDINGS = {"bundled": ("antispoof.tflite", 19), "livenessnet": ("liveness.tflite", 37)}
L2_GRID = (1.0, 10.0, 100.0, 1000.0)


def _embedder(path: Path, tensor: int):
    """The float model on the reference kernels with every tensor kept, so the penultimate layer can be read."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]

    def embed(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(index, x[None].astype(np.float32))
        interp.invoke()
        return interp.get_tensor(tensor).reshape(-1).copy()

    return embed


def clip_embeddings(name: str, entries: list[dict]) -> dict[str, np.ndarray]:
    """Mean penultimate embedding over each video's selected frames, on the crops the daemon itself cuts."""
    cfg = collect.config_for(name)
    models = load_models(cfg)
    model_file, tensor = EMBEDDINGS[name]
    embed = _embedder(cfg.models.dir / model_file, tensor)
    crops: list[np.ndarray] = []
    scores = models.liveness.scores

    def keep_crops(batch, batch_size):
        crops.append(models.liveness.tensor(batch))
        return scores(batch, batch_size)

    models.liveness.scores = keep_crops
    pipeline = Pipeline(cfg, models)
    out = {}
    for entry in entries:
        if entry["kind"] != "video":
            continue
        crops.clear()
        try:
            pipeline.run(entry["path"].read_bytes(), Options())
        except LivenessError:
            continue
        out[entry["file"]] = np.mean([embed(x) for x in crops[0]], axis=0)
    return out


def loso_probe(entries: list[dict], features: dict[str, np.ndarray], l2: float,
               synthetic: bool = True) -> dict[str, float]:
    """Each clip's probe logit from a probe fitted without its source group (and, when ``synthetic`` is False,
    without any synthetic attack: then only the real replays teach it what an attack is)."""
    items = [e for e in entries if e["file"] in features]
    X = np.array([features[e["file"]] for e in items])
    y = np.array([e["label"] == "live" for e in items], float)
    types = np.array([e["label"] for e in items])
    scores = {}
    for group in sorted({e["group"] for e in items}):
        test = np.array([e["group"] == group for e in items])
        train = ~test & np.array([synthetic or not e["synthetic"] for e in items])
        mean, std = X[train].mean(0), X[train].std(0) + 1e-6
        attack_types = sorted(set(types[train & (y == 0)]))
        weight = np.array([1.0 / max(1, np.sum(train & (types == t))) for t in types])
        weight[y == 1] *= len(attack_types)  # live weighs as much as all attacks together
        beta = _logreg((X[train] - mean) / std, y[train], weight[train], l2)
        z = ((X[test] - mean) / std) @ beta[:-1] + beta[-1]
        scores.update({e["file"]: float(s) for e, s in zip((e for e, t in zip(items, test) if t), z)})
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args(argv)
    if not (args.shared / "data" / "labels.csv").exists():
        print(f"probe: skipped: {args.shared}/data/labels.csv is absent (see ../shared/README.md)")
        return 0
    from tools.synth.generate import generate

    entries = collect.items(args.shared, generate(args.shared, ROOT / ".cache" / "synth", 40, verbose=False))
    types = sorted({e["label"] for e in entries if e["label"] != "live" and e["kind"] == "video"})
    print(f"linear probe on CNN embeddings, leave-one-source-out; pair AUC per attack type ({', '.join(types)})")
    embeddings = {name: clip_embeddings(name, entries) for name in EMBEDDINGS}
    embeddings["bundled+livenessnet"] = {f: np.concatenate([embeddings["bundled"][f], embeddings["livenessnet"][f]])
                                         for f in embeddings["bundled"] if f in embeddings["livenessnet"]}
    for synthetic in (True, False):
        print("trained on live + real replays + synthetic attacks" if synthetic else
              "trained on live + real replays only")
        for name, features in embeddings.items():
            for l2 in L2_GRID:
                scores = loso_probe(entries, features, l2, synthetic)
                aucs = "  ".join(f"{t} {pair_auc(entries, scores, t):.2f}" for t in types)
                print(f"  {name:22} L2 {l2:6g}  {aucs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
