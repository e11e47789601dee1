"""Per-frame liveness from a CNN in the model slot.

Every liveness model, bundled or supplied by an integrator, is described by a ``LivenessSpec``: how to cut the face
(crop scale around the box, eye alignment), what the input tensor wants (layout, colour order, value range) and what
the output means (which index is "live", and whether it is a probability, softmax logits or a sigmoid logit).
The bundled models take their spec from models/tflite/manifest.json; an integrator's model from a small YAML file
(``models.liveness-spec``), so a new model needs no code change. A spec that does not fit the model's tensors is a
start-up error naming the mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .align import FaceWindow, Roi, face_roi
from .decode import Frame, upright_size
from .detect import FaceBox
from .errors import StartupError
from .runtime import Model

LAYOUTS = ("NHWC", "NCHW")
COLOURS = ("RGB", "BGR")
OUTPUT_KINDS = ("probability", "softmax-logits", "logit")
# Manifest words for an output that is already a probability (the activation ran inside the model).
KIND_SYNONYMS = {"sigmoid": "probability", "softmax": "probability"}


@dataclass(frozen=True)
class LivenessSpec:
    layout: str = "NHWC"
    colour: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)  # pixel 0 maps to the first, 255 to the second
    crop_scale: float = 1.0
    align: bool = True
    shrink_to_fit: bool = False
    output_kind: str = "probability"
    live_index: int = 0

    def check(self, model: Model, where: str) -> None:
        """StartupError naming the mismatch when this spec does not describe ``model``'s tensors."""
        shape = model.inputs[0].shape
        if len(shape) != 4:
            raise StartupError(f"{where}: model input has shape {list(shape)}, expected a 4-D image tensor")
        channels = shape[3] if self.layout == "NHWC" else shape[1]
        if channels != 3:
            raise StartupError(
                f"{where}: input.layout {self.layout} says channels are at axis {3 if self.layout == 'NHWC' else 1}, "
                f"but the model's input shape is {list(shape)}"
            )
        outputs = int(np.prod(model.outputs[0].shape[1:]))
        if not 0 <= self.live_index < outputs:
            raise StartupError(
                f"{where}: output.live-index {self.live_index} is outside the model's {outputs} outputs"
            )
        if self.output_kind == "softmax-logits" and outputs < 2:
            raise StartupError(f"{where}: output.kind softmax-logits needs >= 2 outputs, the model has {outputs}")


def _require(mapping: dict, key: str, where: str):
    if key not in mapping:
        raise StartupError(f"{where}: missing key '{key}'")
    return mapping[key]


def _section(value, key: str, where: str) -> dict:
    """A spec section (input, crop, output): a mapping, or absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StartupError(f"{where}: {key} is {value!r}, expected a mapping such as {key}: {{...}}")
    return value


def load_spec_file(path: Path) -> tuple[Path, LivenessSpec, str | None]:
    """Read an integrator's liveness spec (YAML); returns (model path, spec, the model's expected sha256 if the file
    gives one). Errors name the file and key."""
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise StartupError(f"models.liveness-spec: cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise StartupError(f"models.liveness-spec: {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise StartupError(f"{where}: expected a mapping of keys (model, input, crop, output), not {type(raw).__name__}")
    known = {"model", "sha256", "input", "crop", "output", "description"}
    unknown = sorted(repr(k) for k in raw if not isinstance(k, str) or k not in known)
    if unknown:
        raise StartupError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {sorted(known)}")
    model_path = Path(str(_require(raw, "model", where))).expanduser()
    if not model_path.is_absolute():
        model_path = path.parent / model_path
    expected = raw.get("sha256") or None
    if expected is not None and not (isinstance(expected, str) and len(expected) == 64
                                     and all(c in "0123456789abcdef" for c in expected.lower())):
        raise StartupError(f"{where}: sha256 {expected!r}, expected 64 hex digits (sha256sum of the model file)")
    return model_path, spec_from_mapping(raw, where), expected.lower() if expected else None


def spec_from_mapping(raw: dict, where: str) -> LivenessSpec:
    """Spec from the YAML/manifest mapping {input: {layout, colour, range}, crop: {...}, output: {...}}."""
    inp = _section(raw.get("input"), "input", where)
    crp = _section(raw.get("crop"), "crop", where)
    out = _section(_require(raw, "output", where), "output", where)
    layout = inp.get("layout", "NHWC")
    colour = inp.get("colour", inp.get("color", "RGB"))
    value_range = inp.get("range", [0.0, 1.0])
    kind = out.get("kind", "probability")
    kind = KIND_SYNONYMS.get(kind, kind) if isinstance(kind, str) else kind
    live_index = out.get("live-index", out.get("live_index"))
    if layout not in LAYOUTS:
        raise StartupError(f"{where}: input.layout {layout!r}, expected one of {', '.join(LAYOUTS)}")
    if colour not in COLOURS:
        raise StartupError(f"{where}: input.colour {colour!r}, expected one of {', '.join(COLOURS)}")
    if (not isinstance(value_range, (list, tuple)) or len(value_range) != 2
            or not all(isinstance(v, (int, float)) for v in value_range)):
        raise StartupError(f"{where}: input.range {value_range!r}, expected [low, high] such as [0, 1] or [-1, 1]")
    if kind not in OUTPUT_KINDS:
        raise StartupError(f"{where}: output.kind {kind!r}, expected one of {', '.join(OUTPUT_KINDS)}")
    if not isinstance(live_index, int) or isinstance(live_index, bool):
        raise StartupError(f"{where}: output.live-index {live_index!r}, expected an integer")
    scale = crp.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or not 0.5 <= scale <= 5.0:
        raise StartupError(f"{where}: crop.scale {scale!r}, expected a number in [0.5, 5]")
    return LivenessSpec(layout, colour, (float(value_range[0]), float(value_range[1])), float(scale),
                        bool(crp.get("align", True)), bool(crp.get("shrink-to-fit", crp.get("shrink_to_fit", False))),
                        kind, live_index)


class LivenessModel:
    """A liveness CNN and its spec: cuts the crop, builds the tensor, returns P(live) per face."""

    def __init__(self, model: Model, spec: LivenessSpec, name: str):
        self.model = model
        self.spec = spec
        self.name = name
        self.size = model.input_hw

    def roi(self, frame: Frame, face: FaceBox) -> Roi:
        return face_roi(face, self.spec.crop_scale, self.spec.align, upright_size(frame), self.spec.shrink_to_fit)

    def cut(self, window: FaceWindow, roi: Roi) -> np.ndarray:
        """The RGB uint8 crop this model looks at (``roi`` from ``self.roi``)."""
        return window.crop(roi, self.size)

    def tensor(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) RGB uint8 crops -> the model's input batch."""
        batch = crops[..., ::-1] if self.spec.colour == "BGR" else crops
        lo, hi = self.spec.value_range
        batch = batch.astype(np.float32) * ((hi - lo) / 255.0) + lo
        if self.spec.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch)

    def scores(self, crops: np.ndarray, batch_size: int) -> np.ndarray:
        """P(live) for each crop, run in batches of ``batch_size``."""
        out = []
        for start in range(0, len(crops), batch_size):
            raw = self.model.run(self.tensor(crops[start : start + batch_size]))[0]
            out.append(self._live_probability(raw.reshape(len(raw), -1)))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _live_probability(self, raw: np.ndarray) -> np.ndarray:
        k = self.spec.live_index
        if self.spec.output_kind == "softmax-logits":
            shifted = raw - raw.max(axis=1, keepdims=True)
            probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
            return probs[:, k]
        if self.spec.output_kind == "logit":
            return 1.0 / (1.0 + np.exp(-np.clip(raw[:, k], -80, 80)))
        return np.clip(raw[:, k], 0.0, 1.0)
