"""Screen/print texture: the spectrum of the skin at the camera's native resolution.

A re-filmed display puts its pixel grid (and the moire it aliases into) into the image: narrow peaks in the
mid/high spatial frequencies of a patch that, on real skin, has a smooth, falling spectrum. A print lacks the fine
skin detail instead. Per frame, the central face patch (half the box side, taken at native resolution in luma,
never resampled since resampling would erase what is looked for; at most 128 px, smaller faces abstain) gives:

- ``peak``: how far the strongest spectral peaks in 0.15-0.5 cycles/pixel (minus the Nyquist bins on the axes, the
  camera's own row/column alternation) stand above the other frequencies at the same radius (log magnitude minus the
  mean log magnitude of its radial bin; the mean of the 4 largest, i.e. the 2 strongest conjugate pairs), minus what
  the largest of that many Rayleigh-distributed noise magnitudes would reach (0.5 ln(2 ln N) - (ln 2 - euler_gamma)
  / 2), so that 0 means "no more peaked than noise" whatever the patch size (48-128 px);
- ``hf``: log of the fraction of (non-DC) energy above 0.25 cycles/pixel (fine detail; reported only).

Why per radius: skin's spectrum falls steeply with frequency, so the largest magnitude in a band is always at its
inner edge; comparing with the band's overall median (an earlier version) measured how sharp the camera is, not
whether a grid is there. Comparing each frequency with its own annulus removes the fall-off and leaves the narrow
peaks a display's pixel grid and its moire put there.

The cue reports the clip medians and a value = P(live) from a fixed logistic of ``peak`` (the fusion refits the
weight and the offset, so CENTRE and SLOPE only set where its logit is clipped); abstains when the face is too small
for a meaningful spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import CueScore, EveryNth
from ..decode import region_luma

MAX_SIDE = 128
MIN_SIDE = 48
# peak -> P(live): a peak above the noise level, less live. The fusion refits weight and offset.
CENTRE, SLOPE = 0.5, 0.1
BAND = (0.15, 0.5)  # cycles/pixel searched for peaks
RADIAL_BINS = 24  # annuli over 0-0.5 cycles/pixel for the per-radius mean log magnitude
TOP = 4  # the mean of the 4 largest: the 2 strongest conjugate pairs
EULER_GAMMA = 0.5772156649


@dataclass(frozen=True)
class _Geometry:
    """Per patch side: what spectrum_stats needs, in small dtypes (one entry per face-patch side seen, 48-128)."""

    window: np.ndarray  # 2-D Hann window, float32
    nondc: np.ndarray  # bool: every bin but the DC neighbourhood
    high: np.ndarray  # bool: bins above 0.25 cycles/pixel (the ``hf`` share)
    bins: np.ndarray  # uint8: radial bin of each flat FFT index
    counts: np.ndarray  # FFT bins per radial bin
    band: np.ndarray  # int32: flat indices of the bins in BAND
    band_bins: np.ndarray  # uint8: their radial bins
    noise_level: float  # how far the largest of the band's independent noise magnitudes lies above the mean (log)


_cache: dict[int, _Geometry] = {}


def _geometry(n: int) -> _Geometry:
    if n not in _cache:
        f = np.fft.fftfreq(n)
        r = np.sqrt(f[None, :] ** 2 + f[:, None] ** 2)
        hann = np.hanning(n)
        bins = np.minimum((r / 0.5 * RADIAL_BINS).astype(np.int64), RADIAL_BINS).ravel().astype(np.uint8)
        counts = np.maximum(np.bincount(bins, minlength=RADIAL_BINS + 1), 1)
        # Not searched: the Nyquist bins on the axes (every other row or column alternating). That pattern is the
        # camera's own (demosaicing, interlaced or line-paired sensors, codec deblocking) and sits there exactly; a
        # display's grid aliases there only by coincidence of pitch AND angle.
        fy, fx = np.abs(f)[:, None], np.abs(f)[None, :]
        near = 1.5 / n  # a bin and a half: the Hann window spreads a line over about that much
        nyquist_axis = ((fx >= 0.5 - near) & (fy <= near)) | ((fy >= 0.5 - near) & (fx <= near))
        band = np.flatnonzero(((r >= BAND[0]) & (r <= BAND[1]) & ~nyquist_axis).ravel()).astype(np.int32)
        independent = max(len(band) / 2, 2.0)  # a real patch's spectrum is conjugate-symmetric
        # Rayleigh magnitudes: the largest of N sits at sigma * sqrt(2 ln N); the mean log at ln sigma + (ln 2 - g) / 2.
        noise = 0.5 * math.log(2.0 * math.log(independent)) - (math.log(2.0) - EULER_GAMMA) / 2.0
        _cache[n] = _Geometry(np.outer(hann, hann).astype(np.float32), r > 2.0 / n, r >= 0.25, bins, counts, band,
                              bins[band], noise)
    return _cache[n]


def spectrum_stats(patch: np.ndarray) -> tuple[float, float]:
    """(peak, hf) of a square grey patch (see module doc)."""
    n = patch.shape[0]
    g = _geometry(n)
    x = patch.astype(np.float32)
    x = (x - x.mean()) * g.window
    mag = np.abs(np.fft.fft2(x))
    power = mag ** 2
    total = float(power[g.nondc].sum()) + 1e-9
    hf = float(power[g.high].sum()) / total
    flat = np.log(mag.ravel() + 1e-6)
    level = np.bincount(g.bins, weights=flat, minlength=RADIAL_BINS + 1) / g.counts  # mean log per annulus
    excess = flat[g.band] - level[g.band_bins]
    top = float(np.partition(excess, len(excess) - TOP)[-TOP:].mean())
    return top - g.noise_level, math.log(hf + 1e-6)


class TextureCue:
    name = "texture"

    def __init__(self, every: int = 2):
        self.sampled = EveryNth(every)  # the statistic is stable over a clip; every 2nd frame halves the cost
        self.peaks: list[float] = []
        self.hfs: list[float] = []

    def observe(self, frame, sample) -> None:
        if not self.sampled.take():
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
