"""Real faces for calibration and parity, read in place from ../shared/data (never copied), plus parity metrics.

TensorFlow-free on purpose: tests/test_models_parity.py uses the same sampling and metrics from the project venv.
Face boxes come from the float BlazeFace short-range model, decoded by the daemon's own liveness_edge.detect.
Everything is deterministic: files in labels.csv order, fixed frame indices, no randomness.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from liveness_edge.detect import decode_detections, letterbox  # noqa: E402  (the daemon's BlazeFace decoder)

#: frame indices sampled from each clip: calibration and parity use disjoint sets
CALIB_FRAMES = tuple(range(0, 120, 8))  # 15 per clip
PARITY_FRAMES = tuple(range(4, 120, 24))  # 5 per clip
CROP_SCALE = 1.5  # square face crop: 1.5x the larger BlazeFace box side about its centre (MediaPipe's ROI scale)
MIN_SCORE = 0.5
# MediaPipe face-mesh indices of the outer eye corners (subject's right, left) for the inter-ocular distance
EYE_OUTER = (33, 263)


@dataclass
class Sample:
    file: str
    label: str
    frame: int
    rgb: np.ndarray  # full frame, RGB uint8
    boxes: list  # [(x0, y0, x1, y1, score)] in frame pixels from the float short-range detector


def have_shared() -> bool:
    return (SHARED_DATA / "labels.csv").is_file()


def labelled_files() -> list[dict]:
    with open(SHARED_DATA / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def read_frames(path: Path, indices: tuple[int, ...]) -> list[tuple[int, np.ndarray]]:
    import av

    want = set(indices)
    out = []
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in want:
                out.append((i, frame.to_ndarray(format="rgb24")))
            if i >= max(indices):
                break
    return out


def read_image(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


class Litert:
    """A LiteRT model with float in/out: (de)quantizes int8/uint8 I/O by the tensors' own parameters."""

    def __init__(self, path: Path, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.outs = self.it.get_output_details()

    @property
    def input_shape(self) -> list[int]:
        return [int(d) for d in self.inp["shape"]]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        d = self.inp
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(d["dtype"])
        self.it.set_tensor(d["index"], x.astype(d["dtype"]) if d["dtype"] == np.float32 else x)
        self.it.invoke()
        res = []
        for o in self.outs:
            v = self.it.get_tensor(o["index"])
            if o["dtype"] != np.float32:
                scale, zp = o["quantization"]
                v = (v.astype(np.float32) - zp) * scale
            res.append(np.array(v, np.float32))
        return res

    def by_name(self, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {o["name"]: v for o, v in zip(self.outs, outputs)}

    def bench(self, invokes: int = 200, repeats: int = 5) -> float:
        """Median over ``repeats`` of the mean invoke time in ms (warm)."""
        d = self.inp
        x = np.zeros(d["shape"], d["dtype"])
        self.it.set_tensor(d["index"], x)
        for _ in range(20):
            self.it.invoke()
        means = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(invokes):
                self.it.invoke()
            means.append((time.perf_counter() - t0) * 1000.0 / invokes)
        return float(np.median(means))


def detector_input(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Letterbox a full frame into the detector input; returns (x in [-1,1] 1xSxSx3, px per unit, pad_x, pad_y)."""
    import cv2

    h, w = rgb.shape[:2]
    s = size / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    canvas, _unit, pad_x, pad_y = letterbox(small, size)
    x = canvas.astype(np.float32) * (2.0 / 255.0) - 1.0
    return x[None], size / s, pad_x, pad_y


def split_outputs(model: Litert, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    reg = next(o for o in outputs if o.shape[-1] == 16)
    sco = next(o for o in outputs if o.shape[-1] == 1)
    return reg[0], sco[0]


def detect(model: Litert, rgb: np.ndarray, min_score: float = MIN_SCORE) -> list[tuple[float, ...]]:
    size = model.input_shape[1]
    x, to_px, pad_x, pad_y = detector_input(rgb, size)
    reg, sco = split_outputs(model, model(x))
    faces = []
    for box, score, _kps in decode_detections(reg, sco, size, min_score):
        faces.append(((box[0] - pad_x) * to_px, (box[1] - pad_y) * to_px, (box[2] - pad_x) * to_px,
                      (box[3] - pad_y) * to_px, score))
    return faces


def face_crop(rgb: np.ndarray, box, size: int, scale: float = CROP_SCALE) -> np.ndarray:
    """Square crop (bilinear, zero border) of ``scale`` x the larger box side about the box centre, uint8 RGB."""
    import cv2

    x0, y0, x1, y1 = box[:4]
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    side = max(x1 - x0, y1 - y0) * scale
    k = size / side
    m = np.array([[k, 0, size / 2.0 - k * cx], [0, k, size / 2.0 - k * cy]], np.float64)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def collect(detector: Litert, frames: tuple[int, ...], max_images_rot: bool = True) -> list[Sample]:
    """Frames (clips: the given indices; images: the image, turned upright when rotated) with their face boxes."""
    import cv2

    out = []
    for row in labelled_files():
        path = SHARED_DATA / row["file"]
        if row["kind"] == "video":
            for i, rgb in read_frames(path, frames):
                out.append(Sample(row["file"], row["label"], i, rgb, detect(detector, rgb)))
        else:
            rgb = read_image(path)
            # Some stills are stored turned by 90 degrees: keep the orientation whose best face scores highest.
            best = None
            for rot in (None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE):
                img = rgb if rot is None else np.ascontiguousarray(cv2.rotate(rgb, rot))
                boxes = detect(detector, img)
                top = max((b[4] for b in boxes), default=0.0)
                if best is None or top > best[0] + 1e-6:
                    best = (top, img, boxes)
                if not max_images_rot:
                    break
            out.append(Sample(row["file"], row["label"], 0, best[1], best[2]))
    return out


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def landmark_error_pct(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean 2-D point distance in % of the inter-ocular (outer eye corner) distance of ``ref`` (468x3 arrays)."""
    ref2, got2 = ref.reshape(-1, 3)[:, :2], got.reshape(-1, 3)[:, :2]
    iod = float(np.linalg.norm(ref2[EYE_OUTER[0]] - ref2[EYE_OUTER[1]]))
    return float(np.linalg.norm(ref2 - got2, axis=1).mean() / max(iod, 1e-6) * 100.0)
