"""models/tflite/manifest.json describes exactly the bundled files, and each file is what the manifest says it is."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "tflite"
MANIFEST = MODELS / "manifest.json"
NAMES = {"face_detection_short_range", "face_detection_full_range", "face_landmark", "antispoof", "liveness"}
ROLES = {"detector", "landmarks", "liveness"}


def load_manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def variants():
    m = load_manifest()
    return [(name, vn, v) for name, e in sorted(m["models"].items()) for vn, v in sorted(e["variants"].items())]


def test_manifest_top_level():
    text = MANIFEST.read_text()
    m = json.loads(text)
    assert m["schema"] == 1
    assert m["generator"] == "tools/quantize/build.py"
    assert isinstance(m["edgetpu"], str) and m["edgetpu"]
    assert set(m["models"]) == NAMES
    # written with sorted keys and a trailing newline, so rebuilds diff cleanly
    assert text.endswith("\n")
    assert text == json.dumps(m, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", sorted(NAMES))
def test_model_entry_shape(name):
    e = load_manifest()["models"][name]
    assert e["role"] in ROLES
    assert e["licence"] in {"Apache-2.0", "MIT"}
    src = e["source"]
    assert src["registry"] in {"pypi", "npm"} and src["package"] and src["version"] and src["path"]
    assert len(src["sha256"]) == 64
    inp = e["input"]
    assert inp["layout"] == "NHWC" and inp["colour"] in {"RGB", "BGR"}
    assert len(inp["shape"]) == 4 and inp["shape"][0] == 1 and inp["shape"][3] == 3
    lo, hi = inp["range"]
    assert lo < hi
    assert "float32" in e["variants"]
    assert e["variants"]["float32"]["file"] == f"{name}.tflite"
    if "int8" in e["variants"]:
        assert e["variants"]["int8"]["file"] == f"{name}_int8.tflite"
        assert "parity" in e["variants"]["int8"]
        assert "int8" not in e.get("rejected", {})
    assert set(e["preferred"]) == {"cpu", "edgetpu", "gpu"}
    assert e["preferred"]["cpu"] in e["variants"]
    out = e["output"]
    if e["role"] == "detector":
        assert {"regressors", "scores", "num_anchors", "box_scale"} <= set(out)
    if e["role"] == "liveness":
        assert out["kind"] in {"sigmoid", "softmax"} and isinstance(out["live_index"], int)


@pytest.mark.parametrize("name,variant,v", variants(), ids=lambda x: x if isinstance(x, str) else None)
def test_file_matches_manifest(name, variant, v):
    path = MODELS / v["file"]
    assert path.is_file(), f"{v['file']} listed but missing"
    data = path.read_bytes()
    assert len(data) == v["bytes"]
    assert hashlib.sha256(data).hexdigest() == v["sha256"]
    assert v["io_dtype"] in {"float32", "int8", "uint8"}
    assert isinstance(v["invoke_ms_cpu"], (int, float)) and v["invoke_ms_cpu"] > 0


def test_float_blazeface_files_are_the_package_files():
    m = load_manifest()["models"]
    for name, e in m.items():
        if e["source"]["path"].endswith(".tflite"):
            assert e["variants"]["float32"]["sha256"] == e["source"]["sha256"], name


def test_every_tflite_is_listed():
    listed = {v["file"] for _n, _vn, v in variants()}
    present = {p.name for p in MODELS.glob("*.tflite")}
    assert present == listed, f"unlisted: {sorted(present - listed)}, missing: {sorted(listed - present)}"


@pytest.mark.parametrize("name,variant,v", variants(), ids=lambda x: x if isinstance(x, str) else None)
def test_loads_and_io_match(name, variant, v):
    from ai_edge_litert.interpreter import Interpreter

    e = load_manifest()["models"][name]
    it = Interpreter(model_path=str(MODELS / v["file"]), num_threads=1)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    assert len(ins) == 1
    assert [int(d) for d in ins[0]["shape"]] == e["input"]["shape"]
    assert np.dtype(ins[0]["dtype"]).name == v["io_dtype"]
    for o in outs:
        assert np.dtype(o["dtype"]).name == v["io_dtype"]
    names = {o["name"]: [int(d) for d in o["shape"]] for o in outs}
    out = e["output"]
    if e["role"] == "detector":
        n = out["num_anchors"]
        assert names.get(out["regressors"]) == [1, n, 16]
        assert names.get(out["scores"]) == [1, n, 1]
        assert out["box_scale"] == e["input"]["shape"][1]
    elif e["role"] == "landmarks":
        assert names.get(out["landmarks"]) == [1, 1, 1, out["num_points"] * 3]
        assert names.get(out["face_flag"]) == [1, 1, 1, 1]
    else:
        shape = names.get(out["name"])
        assert shape is not None and shape[0] == 1 and 0 <= out["live_index"] < shape[-1]
        assert (shape[-1] == 1) == (out["kind"] == "sigmoid")
    # one invoke on a neutral input must run and give finite outputs
    it.set_tensor(ins[0]["index"], np.zeros(ins[0]["shape"], ins[0]["dtype"]))
    it.invoke()
    for o in outs:
        assert np.all(np.isfinite(it.get_tensor(o["index"]).astype(np.float32)))
