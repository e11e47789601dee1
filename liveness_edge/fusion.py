"""Combine the per-frame CNN liveness and the clip cues into per-frame ``liveness`` and the clip's average.

``LogisticFusion`` (the default when models/fusion.json has coefficients for the liveness model in use) is a
logistic model on log-odds, per selected frame i::

    z_i = intercept + w_cnn * logit(cnn_i) + sum_k w_k * logit(cue_k)      (cues that abstain add nothing)
    liveness_i = sigmoid(z_i),    average_liveness = mean_i liveness_i

with logits clipped to +-CLIP. The weights are fitted by tools/eval/fit.py on the labelled clips plus synthetic
attacks; the intercept is then placed so that ``liveness-threshold: 0.95`` is the operating point chosen by the fit
(see models/fusion.json for the data, the cross-validated figures and the point itself).

``MeanFusion`` is the seed's rule and the fallback: the CNN score per frame, averaged. Cues that abstain never vote.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .cues import CueScore

log = logging.getLogger(__name__)
FUSION_FILE = "fusion.json"
CLIP = 6.0  # |logit| cap: one overconfident input cannot decide alone


@dataclass(frozen=True)
class Fused:
    frame_scores: np.ndarray  # per selected frame, in [0, 1]
    average: float


def logit(p, clip: float = CLIP) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-9, 1 - 1e-9)
    return np.clip(np.log(p) - np.log1p(-p), -clip, clip)


def sigmoid(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -80, 80)))


class MeanFusion:
    name = "cnn-mean"
    counts_cnn = True

    def combine(self, cnn_scores: np.ndarray, cues: Sequence[CueScore], frames: int | None = None) -> Fused:
        scores = np.asarray(cnn_scores, np.float64)
        return Fused(scores, float(scores.mean()))


@dataclass(frozen=True)
class LogisticFusion:
    intercept: float
    w_cnn: float
    cue_weights: Mapping[str, float] = field(default_factory=dict)
    name: str = "logistic"

    def clip_term(self, cues: Sequence[CueScore]) -> float:
        """The cues' shared log-odds contribution (abstaining or unknown cues add 0)."""
        total = 0.0
        for cue in cues:
            weight = self.cue_weights.get(cue.name)
            if weight is None or cue.value is None:
                continue
            total += weight * float(logit(cue.value))
        return total

    @property
    def counts_cnn(self) -> bool:
        """False when the fit gave the CNN no weight: then the pipeline need not run it (``cnn_scores`` None)."""
        return self.w_cnn != 0.0

    def combine(self, cnn_scores: np.ndarray | None, cues: Sequence[CueScore], frames: int | None = None) -> Fused:
        """Per-frame fused scores; ``cnn_scores`` may be None only when the CNN is not counted, and then ``frames``
        says how many frames there are (every frame gets the cues' clip-level score)."""
        if cnn_scores is None:
            if self.counts_cnn:
                raise ValueError("this fusion counts the CNN: pass its per-frame scores")
            if frames is None:
                raise ValueError("without CNN scores, pass the number of frames")
            cnn_term = np.zeros(frames)
        else:
            cnn_term = self.w_cnn * logit(cnn_scores)
        scores = sigmoid(self.intercept + cnn_term + self.clip_term(cues))
        return Fused(scores, float(scores.mean()) if len(scores) else 0.0)

    @classmethod
    def from_entry(cls, entry: dict) -> "LogisticFusion":
        return cls(float(entry["intercept"]), float(entry["weights"]["cnn"]),
                   {k: float(v) for k, v in entry["weights"].items() if k != "cnn"},
                   name=f"logistic:{entry.get('liveness_model', '?')}")


def fusion_paths(cfg) -> list[Path]:
    """Where the coefficients are looked for: beside the bundled models, then one folder up (the checkout's models/)."""
    models_dir = Path(cfg.models.dir)
    return [models_dir / FUSION_FILE, models_dir.parent / FUSION_FILE]


def find_entry(document: dict, name: str, sha256: str | None) -> dict | None:
    """The entry whose ``match`` names this liveness model: by sha256 when the entry lists any, else by name."""
    for entry in document.get("models", []):
        match = entry.get("match", {})
        hashes = match.get("sha256") or []
        if hashes:
            if sha256 and sha256 in hashes:
                return entry
        elif match.get("name") == name:
            return entry
    return None


def _liveness_identity(models) -> tuple[str, str | None]:
    name = getattr(models.liveness, "name", "")
    sha = next((i.sha256 for i in getattr(models, "infos", []) if i.role == "liveness"), None)
    return name, sha


def _locate(cfg, models, paths: Sequence[Path] | None) -> tuple[Path | None, dict | None, str, int]:
    """(the first fusion file found, its entry for the liveness model in use, why there is none and how loudly to say
    it); one reader for both ``fitted_entry`` and ``load_fusion``."""
    name, sha = _liveness_identity(models)
    for path in (fusion_paths(cfg) if paths is None else paths):
        if not path.is_file():
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return path, None, f"{path} cannot be read ({exc})", logging.WARNING
        try:  # an edited file: the same fallback as an unreadable one, with what is wrong, never a traceback
            entry = find_entry(document, name, sha)
            if entry is not None:
                LogisticFusion.from_entry(entry)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            return path, None, f"{path} is not a fusion file ({type(exc).__name__}: {exc})", logging.WARNING
        if entry is None:
            return path, None, (f"no coefficients in {path} for liveness model {name} "
                                f"(sha256 {(sha or '?')[:12]})"), logging.INFO
        return path, entry, "", logging.INFO
    return None, None, f"no {FUSION_FILE} found", logging.INFO


def fitted_entry(cfg, models, paths: Sequence[Path] | None = None) -> dict | None:
    """The models/fusion.json entry for the liveness model in use, or None (no file, unreadable, no entry); quiet."""
    return _locate(cfg, models, paths)[1]


def load_fusion(cfg, models, paths: Sequence[Path] | None = None):
    """The fusion the daemon uses for this config and model set: the coefficients fitted for the liveness model in
    use, else MeanFusion (logged)."""
    path, entry, problem, level = _locate(cfg, models, paths)
    if entry is None:
        log.log(level, "fusion: %s; using the CNN mean", problem)
        return MeanFusion()
    fusion = LogisticFusion.from_entry(entry)
    cues = ", ".join(sorted(name for name, weight in fusion.cue_weights.items() if weight != 0.0)) or "none"
    cnn = "counted" if fusion.counts_cnn else "not counted (weight 0), not run"
    log.info("fusion: %s from %s (liveness CNN %s; cues %s)", fusion.name, path, cnn, cues)
    return fusion
