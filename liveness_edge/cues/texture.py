"""Screen/print texture: the spectrum of the skin at the camera's native resolution.

A re-filmed display puts its pixel grid (and the moire it aliases into) into the image: narrow peaks in the
mid/high spatial frequencies of a patch that, on real skin, has a smooth, falling spectrum. A print lacks the fine
skin detail instead. Per frame, the central face patch (half the box side, taken at native resolution in luma,
never resampled since resampling would erase what is looked for; at most 128 px, smaller faces abstain) gives:

- ``peak``: log of the strongest high-frequency spectral peak over the median of its annulus (moire / grid);
- ``hf``: log of the fraction of (non-DC) energy above 0.25 cycles/pixel (fine detail).

The cue reports the clip medians and a value = P(live) from a fixed logistic of ``peak`` (fusion refits its
weight); abstains when the face is too small for a meaningful spectrum.
"""

from __future__ import annotations

import math

import numpy as np

from . import CueScore
from ..decode import region_luma

MAX_SIDE = 128
MIN_SIDE = 48
# peak -> P(live): more peakiness, less live. Rough centre; the fusion fits the weight.
CENTRE, SLOPE = 2.6, 0.35

_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _geometry(n: int):
    if n not in _cache:
        f = np.fft.fftfreq(n)
        r = np.sqrt(f[None, :] ** 2 + f[:, None] ** 2)
        hann = np.hanning(n)
        _cache[n] = (np.outer(hann, hann).astype(np.float32), r, (r >= 0.15) & (r <= 0.5))
    return _cache[n]


def spectrum_stats(patch: np.ndarray) -> tuple[float, float]:
    """(peak, hf) of a square grey patch (see module doc)."""
    n = patch.shape[0]
    window, radius, band = _geometry(n)
    x = patch.astype(np.float32)
    x = (x - x.mean()) * window
    mag = np.abs(np.fft.fft2(x))
    power = mag ** 2
    nondc = radius > 2.0 / n
    total = float(power[nondc].sum()) + 1e-9
    hf = float(power[radius >= 0.25].sum()) / total
    values = mag[band]
    peak = float(np.log(values.max() + 1e-6) - np.log(np.median(values) + 1e-6))
    return peak, math.log(hf + 1e-6)


class TextureCue:
    name = "texture"

    def __init__(self, every: int = 2):
        self.every = every  # look at every n-th selected frame (the statistic is stable; halves the cost)
        self.count = 0
        self.peaks: list[float] = []
        self.hfs: list[float] = []

    def observe(self, frame, sample) -> None:
        self.count += 1
        if (self.count - 1) % self.every:
            return
        face = sample.face
        side = int(min(max(face.width, face.height) * 0.5, MAX_SIDE)) & ~1
        if side < MIN_SIDE:
            return
        # Centre of the patch: between the nose tip and the eye midpoint (cheeks, nose, no hair or background).
        pts = sample.landmarks.points
        cx, cy = (pts[1, :2] + 0.5 * (pts[33, :2] + pts[263, :2])) / 2.0
        x0, y0 = int(round(cx)) - side // 2, int(round(cy)) - side // 2
        patch = region_luma(frame, x0, y0, x0 + side, y0 + side)
        if patch.shape != (side, side):
            return
        peak, hf = spectrum_stats(patch)
        self.peaks.append(peak)
        self.hfs.append(hf)

    def result(self) -> CueScore:
        if len(self.peaks) < 2:
            return CueScore(self.name, None, {"why": "face too small or out of frame for a spectrum"})
        peak, hf = float(np.median(self.peaks)), float(np.median(self.hfs))
        value = 1.0 / (1.0 + math.exp((peak - CENTRE) / SLOPE))
        return CueScore(self.name, round(value, 6), {"peak": round(peak, 4), "hf": round(hf, 4)})
