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


class _Affine:
    """x * scale + offset with per-channel (last axis) constants, not yet applied (see build_function fold)."""

    def __init__(self, x, scale, offset):
        self.x, self.scale, self.offset = x, np.asarray(scale, np.float32), np.asarray(offset, np.float32)


def build_function(model: dict, weights: dict[str, np.ndarray], out_name: str | None = None, fold: bool = False):
    """A Python callable x -> output built from TF ops, one per graph node (used inside a tf.function).

    ``out_name``: evaluate up to that node instead of the signature output (for debugging quantization).
    ``fold``: carry per-channel Mul/Add by constants (folded batch norms) forward and fold them exactly into the
    next conv/matmul (through MaxPool when every scale is > 0, and through a flatten Reshape). Same function, but
    int8 quantization no longer has to represent the widely differing per-channel ranges of a BN output with one
    per-tensor scale. The zero padding of a SAME conv is honoured: the offset becomes a constant bias map."""
    import tensorflow as tf

    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    out_name = out_name or next(iter(model["signature"]["outputs"].values()))["name"].split(":")[0]
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
            if fold:
                r = _fold_step(tf, n, op, args, nodes, weights)
                if r is not None:
                    cache[name] = r
                    return r
                args = [_materialize(tf, a) for a in args]
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

        return _materialize(tf, ev(out_name))

    return run


def _materialize(tf, a):
    if isinstance(a, _Affine):
        return a.x * a.scale + a.offset
    return a


def _const_vec(nodes, weights, name, channels):
    name = name.split(":")[0]
    if nodes[name]["op"] != "Const":
        return None
    v = np.asarray(weights[name], np.float32)
    if v.ndim >= 1 and v.size == channels:
        return v.reshape(-1)
    return None


def _fold_step(tf, n, op, args, nodes, weights):
    """One node of the folding interpreter; None = evaluate normally (after materializing pending affines)."""
    ins = [i for i in n.get("input", []) if not i.startswith("^")]
    if op in ("Mul", "Add", "AddV2") and len(args) == 2:
        x = args[0]
        ch = int(_materialize(tf, x).shape[-1]) if not isinstance(x, _Affine) else int(x.x.shape[-1])
        c = _const_vec(nodes, weights, ins[1], ch)
        if c is None:
            return None
        base = x if isinstance(x, _Affine) else _Affine(x, np.ones(ch, np.float32), np.zeros(ch, np.float32))
        if op == "Mul":
            return _Affine(base.x, base.scale * c, base.offset * c)
        return _Affine(base.x, base.scale, base.offset + c)
    if not args or not isinstance(args[0], _Affine):
        return None
    a = args[0]
    if op == "MaxPool" and np.all(a.scale > 0):
        pooled = tf.nn.max_pool2d(a.x, ksize=_attr(n, "ksize"), strides=_attr(n, "strides"),
                                  padding=_attr(n, "padding"))
        return _Affine(pooled, a.scale, a.offset)
    if op == "Reshape":
        shape = [int(d) for d in np.asarray(weights[ins[1].split(":")[0]]).reshape(-1)]
        if len(shape) == 2 and len(a.x.shape) == 4:  # NHWC flatten: channel is the fastest axis
            reps = int(a.x.shape[1]) * int(a.x.shape[2])
            return _Affine(tf.reshape(a.x, shape), np.tile(a.scale, reps), np.tile(a.offset, reps))
        return None
    if op in ("_FusedConv2D", "Conv2D") and _attr(n, "data_format", "NHWC") == "NHWC":
        w = np.asarray(weights[ins[1].split(":")[0]], np.float32)
        w2 = w * a.scale[None, None, :, None]
        kw = dict(strides=_attr(n, "strides"), padding=_attr(n, "padding"), dilations=_attr(n, "dilations"))
        if kw["padding"] not in ("SAME", "VALID"):
            return None
        r = tf.nn.conv2d(a.x, w2, **kw)
        ones = np.ones([1] + [int(d) for d in a.x.shape[1:]], np.float32)
        with tf.init_scope():  # evaluated once, eagerly: a constant of the graph
            bias_map = tf.nn.conv2d(tf.constant(ones * a.offset), w, **kw).numpy()  # offset incl. zero padding
        r = r + bias_map
        return _fused(tf, r, _attr(n, "fused_ops", []), args[2:], "NHWC")
    if op in ("_FusedMatMul", "MatMul") and not _attr(n, "transpose_a", False) and not _attr(n, "transpose_b", False):
        w = np.asarray(weights[ins[1].split(":")[0]], np.float32)
        r = tf.linalg.matmul(a.x, a.scale[:, None] * w) + (a.offset @ w)[None, :]
        return _fused(tf, r, _attr(n, "fused_ops", []), args[2:], "NHWC")
    return None


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
