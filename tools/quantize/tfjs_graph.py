"""Read a TFJS graph model (model.json + .bin) without the tensorflowjs package and rebuild it as a tf.function.

The tensorflowjs converter pins an old TensorFlow and fails on these graphs, so the few ops they use are
interpreted here node by node, honouring every attribute that changes the result (padding, strides, dilations,
data_format, the order of fused ops). Anything unknown raises instead of being guessed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

_NP = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def load_weights(model_json: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (model dict, {weight name: array}) with float16/uint8-quantized weights dequantized to float32.

    The weights of each manifest group are stored back to back in its .bin paths, in manifest order; the byte
    size of each entry is that of its *stored* dtype (float16 = 2 bytes), which is what moves the offset.
    """
    model = json.loads(model_json.read_text())
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        buf = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q is None:
                dt = np.dtype(_NP[w["dtype"]])
                arr = np.frombuffer(buf, dt, count, offset).copy()
                offset += count * dt.itemsize
            elif q["dtype"] == "float16":
                arr = np.frombuffer(buf, np.float16, count, offset).astype(np.float32)
                offset += count * 2
            elif q["dtype"] in ("uint8", "uint16"):
                dt = np.dtype(q["dtype"])
                raw = np.frombuffer(buf, dt, count, offset)
                arr = (raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])).astype(_NP[w["dtype"]])
                offset += count * dt.itemsize
            else:
                raise ValueError(f"unsupported weight quantization {q}")
            weights[w["name"]] = arr.reshape(shape)
        if offset != len(buf):
            raise ValueError(f"{model_json.name}: weights use {offset} bytes of {len(buf)}")
    return model, weights


def _attr(node: dict, key: str, default=None):
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "b" in a:
        return bool(a["b"])
    if "f" in a:
        return float(a["f"])
    if "list" in a:
        lst = a["list"]
        if "s" in lst:
            return [base64.b64decode(s).decode() for s in lst["s"]]
        if "i" in lst:
            return [int(i) for i in lst["i"]]
        return []
    return a


def input_spec(model: dict) -> tuple[str, list[int]]:
    for node in model["modelTopology"]["node"]:
        if node["op"] == "Placeholder":
            dims = [int(d["size"]) for d in node["attr"]["shape"]["shape"]["dim"]]
            return node["name"], dims
    raise ValueError("no Placeholder")


def build_function(model: dict, weights: dict[str, np.ndarray]):
    """A Python callable x -> output built from TF ops, one per graph node (used inside a tf.function)."""
    import tensorflow as tf

    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    out_name = next(iter(model["signature"]["outputs"].values()))["name"].split(":")[0]
    in_name, _ = input_spec(model)

    def run(x):
        cache = {in_name: x}

        def ev(name):
            name = name.split(":")[0]
            if name in cache:
                return cache[name]
            n = nodes[name]
            op = n["op"]
            args = [ev(i) for i in n.get("input", []) if not i.startswith("^")]
            if op == "Const":
                r = tf.constant(weights[name])
            elif op == "Identity":
                r = args[0]
            elif op in ("_FusedConv2D", "Conv2D"):
                pad = _attr(n, "padding")
                if pad == "EXPLICIT":
                    p = _attr(n, "explicit_paddings")
                    pad = [[p[0], p[1]], [p[2], p[3]], [p[4], p[5]], [p[6], p[7]]]
                r = tf.nn.conv2d(args[0], args[1], strides=_attr(n, "strides"), padding=pad,
                                 data_format=_attr(n, "data_format", "NHWC"), dilations=_attr(n, "dilations"))
                r = _fused(tf, r, _attr(n, "fused_ops", []), args[2:], _attr(n, "data_format", "NHWC"))
            elif op == "_FusedMatMul" or op == "MatMul":
                r = tf.linalg.matmul(args[0], args[1], transpose_a=_attr(n, "transpose_a", False),
                                     transpose_b=_attr(n, "transpose_b", False))
                r = _fused(tf, r, _attr(n, "fused_ops", []), args[2:], "NHWC")
            elif op == "MaxPool":
                if _attr(n, "data_format", "NHWC") != "NHWC":
                    raise ValueError("MaxPool data_format")
                r = tf.nn.max_pool2d(args[0], ksize=_attr(n, "ksize"), strides=_attr(n, "strides"),
                                     padding=_attr(n, "padding"))
            elif op == "Relu":
                r = tf.nn.relu(args[0])
            elif op == "Sigmoid":
                r = tf.math.sigmoid(args[0])
            elif op == "Softmax":
                r = tf.nn.softmax(args[0], axis=-1)
            elif op == "Mul":
                r = tf.math.multiply(args[0], args[1])
            elif op in ("Add", "AddV2"):
                r = tf.math.add(args[0], args[1])
            elif op == "Sub":
                r = tf.math.subtract(args[0], args[1])
            elif op == "Reshape":
                r = tf.reshape(args[0], args[1])
            elif op == "BiasAdd":
                r = tf.nn.bias_add(args[0], args[1], data_format=_attr(n, "data_format", "NHWC"))
            else:
                raise ValueError(f"unsupported TFJS op {op} ({name})")
            cache[name] = r
            return r

        return ev(out_name)

    return run


def _fused(tf, r, fused_ops, extra, data_format):
    it = iter(extra)
    for f in fused_ops:
        if f == "BiasAdd":
            r = tf.nn.bias_add(r, next(it), data_format=data_format)
        elif f == "Relu":
            r = tf.nn.relu(r)
        elif f == "Relu6":
            r = tf.nn.relu6(r)
        else:
            raise ValueError(f"unsupported fused op {f}")
    return r
