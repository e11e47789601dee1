"""Which clip cues the daemon runs: one factory per cue, each called once per request.

Every cue is cheap (well under a millisecond per frame each; see docs/accuracy.md) and self-contained:

- ``planarity`` (cues/planarity.py): tracked points move by a homography -> a flat photo/screen; abstains when still;
- ``blink`` (cues/blink.py): an eyelid dip and reopening; abstains when none is seen;
- ``micro_motion`` (cues/blink.py): expression change beyond the head's rigid motion; abstains when none;
- ``texture`` (cues/texture.py): display pixel grid / moire peaks in the skin spectrum.

How much each counts is decided by the fusion (fusion.py, coefficients in models/fusion.json), not here.
"""

from __future__ import annotations

from typing import Callable

from . import ClipCue
from .blink import BlinkCue, MotionCue
from .planarity import PlanarityCue
from .texture import TextureCue

CUES: dict[str, Callable[[], ClipCue]] = {
    "planarity": PlanarityCue,
    "blink": BlinkCue,
    "micro_motion": MotionCue,
    "texture": TextureCue,
}


def default_cues(cfg, models) -> tuple[Callable[[], ClipCue], ...]:
    return tuple(CUES.values())
