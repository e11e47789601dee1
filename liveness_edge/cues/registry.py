"""Which clip cues the daemon runs: one factory per cue, each called once per request.

Every cue is cheap (at most ~1 ms per frame each; the five the shipped fusion runs ~1.5 ms together; see
docs/accuracy.md) and self-contained:

- ``planarity`` (cues/planarity.py): tracked points move by a homography -> a flat photo/screen; attack evidence
  only: abstains when still and when the points move like a 3D head (a live head and a replayed one both do);
- ``blink`` (cues/blink.py): an eyelid dip and reopening; abstains when none is seen;
- ``micro_motion`` (cues/blink.py): expression change beyond the head's rigid motion; abstains when none;
- ``texture`` (cues/texture.py): display pixel grid / moire peaks in the skin spectrum;
- ``bezel`` (cues/bezel.py): a straight-edged frame (screen bezel, sheet border) around the face, moving with it;
  attack evidence when seen, abstains otherwise;
- ``surround`` (cues/surround.py): the texture around the face moves with the face (a held sheet or screen carries
  its surroundings; a fixed camera's background stays put); attack evidence when seen, abstains otherwise.

How much each counts is decided by the fusion (fusion.py, coefficients in models/fusion.json), not here; a cue the
fitted fusion gives weight 0 is not run at all (``default_cues``). tools/eval always runs every cue.
"""

from __future__ import annotations

from typing import Callable

from ..fusion import fitted_entry
from . import ClipCue
from .bezel import BezelCue
from .blink import BlinkCue, MotionCue
from .planarity import PlanarityCue
from .surround import SurroundCue
from .texture import TextureCue

CUES: dict[str, Callable[[], ClipCue]] = {
    "planarity": PlanarityCue,
    "blink": BlinkCue,
    "micro_motion": MotionCue,
    "texture": TextureCue,
    "bezel": BezelCue,
    "surround": SurroundCue,
}


def needs_fixed_camera(name: str) -> bool:
    """Whether the cue ``name`` assumes a fixed camera (``camera: hand-held`` does not run it)."""
    return bool(getattr(CUES.get(name), "needs_fixed_camera", False))


def default_cues(cfg, models) -> tuple[Callable[[], ClipCue], ...]:
    """The cues the fusion in use counts: with fitted coefficients for this liveness model, only the cues whose weight
    is not 0 (a cue the fit dropped would cost time and change nothing); without them (CNN mean), every cue, so that
    ``return_frames`` still shows what each one saw. With ``camera: hand-held``, never a cue that assumes a fixed
    camera (``needs_fixed_camera``): a hand-held camera moves the background with a still head."""
    usable = {name: make for name, make in CUES.items() if cfg.camera == "fixed" or not needs_fixed_camera(name)}
    entry = fitted_entry(cfg, models)
    if entry is None:
        return tuple(usable.values())
    weights = entry.get("weights", {})
    return tuple(make for name, make in usable.items() if float(weights.get(name, 0.0)) != 0.0)
