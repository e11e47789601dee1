"""Re-emit a float .tflite flatbuffer as TensorFlow ops so the TFLite converter can quantize it.

The BlazeFace and face-mesh models exist only as float .tflite files (weights stored as float16 + DEQUANTIZE), and the
TFLite converter cannot quantize a .tflite. The flatbuffer is read with LiteRT's own schema bindings, constants are
folded in NumPy (DEQUANTIZE of float16 weights), and each op is mapped to the TF op with the same semantics. Unknown
ops or options raise. build.py checks the rebuilt float graph against the original file before quantizing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_DT = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 9: np.int8, 3: np.uint8}
_PAD = {0: "SAME", 1: "VALID"}


def _opname(model, op) -> str:
    from ai_edge_litert import schema_py_generated as s

    code = model.operatorCodes[op.opcodeIndex]
    c = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    return names[c]


class TFLiteGraph:
    def __init__(self, path: Path):
        from ai_edge_litert.tools import flatbuffer_utils as fu

        self.model = fu.read_model(str(path))
        if len(self.model.subgraphs) != 1:
            raise ValueError("expected one subgraph")
        self.g = self.model.subgraphs[0]
        self.consts: dict[int, np.ndarray] = {}
        for i, t in enumerate(self.g.tensors):
            buf = self.model.buffers[t.buffer].data if t.buffer < len(self.model.buffers) else None
            if buf is not None and len(buf):
                arr = np.frombuffer(bytes(bytearray(buf)), _DT[t.type]).reshape([int(d) for d in t.shape])
                self.consts[i] = arr
        # fold DEQUANTIZE of constant float16 weights
        self.ops = []
        for op in self.g.operators:
            name = _opname(self.model, op)
            if name == "DEQUANTIZE" and op.inputs[0] in self.consts:
                self.consts[op.outputs[0]] = self.consts[op.inputs[0]].astype(np.float32)
                continue
            self.ops.append((name, op))

    def tensor_name(self, i: int) -> str:
        n = self.g.tensors[i].name
        return n.decode() if isinstance(n, bytes) else n

    @property
    def input_names(self) -> list[str]:
        return [self.tensor_name(i) for i in self.g.inputs]

    @property
    def output_names(self) -> list[str]:
        return [self.tensor_name(i) for i in self.g.outputs]

    def input_shape(self) -> list[int]:
        return [int(d) for d in self.g.tensors[self.g.inputs[0]].shape]

    def op_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, _ in self.ops:
            out[name] = out.get(name, 0) + 1
        return out

    def build_function(self, upto: int | None = None):
        """Callable x -> tuple of outputs (in the flatbuffer's output order), TF ops only.

        ``upto``: stop after that many ops and return the last op's output (for debugging quantization)."""
        import tensorflow as tf

        def act(x, f):
            if f == 0:
                return x
            if f == 1:
                return tf.nn.relu(x)
            if f == 3:
                return tf.nn.relu6(x)
            raise ValueError(f"fused activation {f}")

        def run(x):
            vals: dict[int, object] = {self.g.inputs[0]: x}

            def get(i):
                if i in vals:
                    return vals[i]
                return tf.constant(self.consts[i])

            for name, op in self.ops[:upto]:
                o = op.builtinOptions
                ins = list(op.inputs)
                if name == "CONV_2D":
                    w = self.consts[ins[1]].transpose(1, 2, 3, 0)  # OHWI -> HWIO
                    r = tf.nn.conv2d(get(ins[0]), w, strides=[1, o.strideH, o.strideW, 1], padding=_PAD[o.padding],
                                     dilations=[1, o.dilationHFactor, o.dilationWFactor, 1])
                    if len(ins) > 2 and ins[2] >= 0:
                        r = tf.nn.bias_add(r, self.consts[ins[2]])
                    r = act(r, o.fusedActivationFunction)
                elif name == "DEPTHWISE_CONV_2D":
                    w = self.consts[ins[1]]  # [1, H, W, C*mult]
                    cin = int(self.g.tensors[ins[0]].shape[-1])
                    mult = o.depthMultiplier if o.depthMultiplier else w.shape[-1] // cin
                    w = w.reshape(w.shape[1], w.shape[2], cin, mult)
                    if (o.dilationHFactor, o.dilationWFactor) != (1, 1):
                        raise ValueError("dilated depthwise")
                    r = tf.nn.depthwise_conv2d(get(ins[0]), w, strides=[1, o.strideH, o.strideW, 1],
                                               padding=_PAD[o.padding])
                    if len(ins) > 2 and ins[2] >= 0:
                        r = tf.nn.bias_add(r, self.consts[ins[2]])
                    r = act(r, o.fusedActivationFunction)
                elif name == "ADD":
                    r = act(tf.math.add(get(ins[0]), get(ins[1])), o.fusedActivationFunction)
                elif name == "RELU":
                    r = tf.nn.relu(get(ins[0]))
                elif name == "PRELU":
                    alpha = self.consts[ins[1]]
                    xin = get(ins[0])
                    # Keras' PReLU form, which the converter fuses back into one PRELU op (quantizable)
                    r = tf.nn.relu(xin) + tf.constant(-alpha) * tf.nn.relu(-xin)
                elif name == "MAX_POOL_2D":
                    r = tf.nn.max_pool2d(get(ins[0]), ksize=[1, o.filterHeight, o.filterWidth, 1],
                                         strides=[1, o.strideH, o.strideW, 1], padding=_PAD[o.padding])
                    r = act(r, o.fusedActivationFunction)
                elif name == "PAD":
                    r = tf.pad(get(ins[0]), self.consts[ins[1]])
                elif name == "RESHAPE":
                    shape = [int(d) for d in self.g.tensors[op.outputs[0]].shape]
                    r = tf.reshape(get(ins[0]), shape)
                elif name == "CONCATENATION":
                    r = act(tf.concat([get(i) for i in ins], axis=o.axis), o.fusedActivationFunction)
                elif name == "RESIZE_BILINEAR":
                    size = self.consts[ins[1]]
                    r = tf.raw_ops.ResizeBilinear(images=get(ins[0]), size=size, align_corners=bool(o.alignCorners),
                                                  half_pixel_centers=bool(o.halfPixelCenters))
                else:
                    raise ValueError(f"unsupported TFLite op {name}")
                vals[op.outputs[0]] = r
            if upto is not None:
                return (r,)
            return tuple(vals[i] for i in self.g.outputs)

        return run
