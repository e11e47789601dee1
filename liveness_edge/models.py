"""The bundled model set: read models/tflite/manifest.json, verify every file, pick the variant for the runtime.

The manifest (written by tools/quantize) records each model's source package and version, licence, sha256, input
spec and quantization. At start the daemon hashes every file it loads and refuses one whose sha256 does not match,
naming the file. Variant choice per model: ``runtime.variant`` when set; otherwise the backend's own preference
(int8 for the EdgeTPU), else the variant the manifest measured fastest on the CPU. An ``<name>_int8_edgetpu.tflite``
placed beside the bundled files (compiled by an integrator with edgetpu_compiler) is used on the EdgeTPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import Config
from .detect import FaceDetector
from .errors import StartupError
from .landmarks import LandmarkModel
from .liveness import LivenessModel, LivenessSpec, load_spec_file, spec_from_mapping
from .runtime import Backend, Model, choose_backend
from .runtime.litert import interpreter_package

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ModelInfo:
    """What /health and `liveness-edge models` report for one loaded model."""

    role: str
    name: str
    file: str
    sha256: str
    sha256_ok: bool | None  # None: nothing recorded to compare (an integrator's model without sha256, an EdgeTPU file)
    variant: str
    delegate: str
    runtime: str
    warm_ms: float | None
    source: dict = field(default_factory=dict)
    licence: str = ""

    def as_dict(self) -> dict:
        return {
            "role": self.role, "name": self.name, "file": self.file, "sha256": self.sha256,
            "sha256_ok": self.sha256_ok, "variant": self.variant, "delegate": self.delegate,
            "runtime": self.runtime, "warm_invoke_ms": None if self.warm_ms is None else round(self.warm_ms, 3),
            "source": self.source, "licence": self.licence,
        }


@dataclass
class ModelSet:
    backend: Backend
    detector: FaceDetector
    landmarks: LandmarkModel
    liveness: LivenessModel
    infos: list[ModelInfo]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(models_dir: Path) -> dict:
    path = models_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StartupError(f"model manifest {path} is missing (models.dir: {models_dir})") from None
    except (OSError, ValueError) as exc:
        raise StartupError(f"model manifest {path} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise StartupError(f"model manifest {path} has no 'models' mapping")
    return manifest


def choose_variant(entry: dict, name: str, requested: str, backend: Backend) -> str:
    variants = entry.get("variants", {})
    if requested != "auto":
        if requested not in variants:
            raise StartupError(f"runtime.variant {requested}: model {name} has no {requested} variant "
                               f"(it has {', '.join(sorted(variants)) or 'none'})")
        return requested
    wanted = backend.preferred_variant or entry.get("preferred", {}).get(backend.key) or "float32"
    return wanted if wanted in variants else "float32" if "float32" in variants else sorted(variants)[0]


def _verified_file(models_dir: Path, name: str, variant: dict) -> tuple[Path, str]:
    path = models_dir / variant["file"]
    if not path.is_file():
        raise StartupError(f"model file {path} ({name}) is missing")
    actual = _digest(path, name)
    if actual != variant.get("sha256"):
        raise StartupError(f"model file {path} ({name}) does not match its manifest sha256 "
                           f"(expected {variant.get('sha256')}, got {actual}): corrupt or replaced")
    return path, actual


def _digest(path: Path, what: str) -> str:
    try:
        return sha256_of(path)
    except OSError as exc:
        raise StartupError(f"model file {path} ({what}) cannot be read: {exc.strerror or exc}") from None


def _bundled(models_dir: Path, manifest: dict, name: str, role: str, cfg: Config,
             backend: Backend) -> tuple[Path, ModelInfo, dict]:
    """The verified file for a bundled model, without loading it (every file is checked before any is loaded)."""
    entry = manifest["models"].get(name)
    if entry is None:
        raise StartupError(f"models.{role}: {name!r} is not in {models_dir / MANIFEST} "
                           f"(bundled: {', '.join(sorted(manifest['models']))})")
    variant_name = choose_variant(entry, name, cfg.runtime.variant, backend)
    variant = entry["variants"][variant_name]
    path, digest = _verified_file(models_dir, name, variant)
    checked: bool | None = True
    if backend.key == "edgetpu":
        compiled = path.with_name(path.stem + "_edgetpu.tflite")
        if compiled.is_file():
            # Integrator-compiled from the checked int8 file: not in the manifest, so there is nothing to check it
            # against. Report its own digest, and that it was not checked (sha256_ok None), not the source's.
            path, digest, checked = compiled, _digest(compiled, name), None
    info = ModelInfo(role, name, str(path), digest, checked, variant_name, backend.describe(), _runtime_name(),
                     None, entry.get("source", {}), entry.get("licence", ""))
    return path, info, entry


def _runtime_name() -> str:
    package = interpreter_package()
    return f"{package.name} {package.version}"


def _slot_liveness(cfg: Config, backend: Backend) -> tuple[Path, ModelInfo, LivenessSpec]:
    spec_path = cfg.models.liveness_spec
    model_path, spec, expected = load_spec_file(spec_path)
    if not model_path.is_file():
        raise StartupError(f"models.liveness-spec {spec_path}: model file {model_path} is missing")
    digest = _digest(model_path, "models.liveness-spec")
    if expected and expected != digest:
        raise StartupError(f"model file {model_path} does not match the sha256 in {spec_path} "
                           f"(expected {expected}, got {digest})")
    info = ModelInfo("liveness", model_path.stem, str(model_path), digest, bool(expected) or None,
                     "integrator", backend.describe(), _runtime_name(), None, {"spec": str(spec_path)}, "")
    return model_path, info, spec


def load_models(cfg: Config, warm: bool = True) -> ModelSet:
    """Load, verify and warm every model the config names; StartupError (one line naming the file) on any problem."""
    backend = choose_backend(cfg.runtime.delegate, cfg.runtime.threads)
    models_dir = cfg.models.dir
    manifest = read_manifest(models_dir)
    det_path, det_info, _ = _bundled(models_dir, manifest, cfg.models.detector, "detector", cfg, backend)
    lmk_path, lmk_info, _ = _bundled(models_dir, manifest, cfg.models.landmarks, "landmarks", cfg, backend)
    if cfg.models.liveness_spec is not None:
        live_path, live_info, spec = _slot_liveness(cfg, backend)
        where = str(cfg.models.liveness_spec)
    else:
        live_path, live_info, entry = _bundled(models_dir, manifest, cfg.models.liveness, "liveness", cfg, backend)
        where = f"{models_dir / MANIFEST} models.{cfg.models.liveness}"
        spec = spec_from_mapping(entry, where)
    det_model = Model(det_path, backend, det_info.name)
    lmk_model = Model(lmk_path, backend, lmk_info.name)
    live_model = Model(live_path, backend, live_info.name)
    spec.check(live_model, where)
    try:
        detector = FaceDetector(det_model, cfg.models.detector_score)
        landmarks = LandmarkModel(lmk_model)
    except (ValueError, StopIteration) as exc:
        raise StartupError(f"models: unexpected model layout: {exc}") from None
    liveness = LivenessModel(live_model, spec, live_info.name)
    infos = [det_info, lmk_info, live_info]
    if warm:
        infos = [_warmed(info, model) for info, model in zip(infos, (det_model, lmk_model, live_model))]
    return ModelSet(backend, detector, landmarks, liveness, infos)


def _warmed(info: ModelInfo, model: Model) -> ModelInfo:
    return replace(info, warm_ms=model.warm_up())
