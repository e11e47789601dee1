"""Combine the per-frame CNN liveness and the clip cues into per-frame ``liveness`` and the clip's average.

``MeanFusion`` is the seed's rule and the fallback: the CNN score per frame, averaged. Cues that abstain never vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .cues import CueScore


@dataclass(frozen=True)
class Fused:
    frame_scores: np.ndarray  # per selected frame, in [0, 1]
    average: float


class MeanFusion:
    name = "cnn-mean"

    def combine(self, cnn_scores: np.ndarray, cues: Sequence[CueScore]) -> Fused:
        scores = np.asarray(cnn_scores, np.float64)
        return Fused(scores, float(scores.mean()))


def load_fusion(cfg, models):
    """The fusion the daemon uses for this config and model set."""
    return MeanFusion()
