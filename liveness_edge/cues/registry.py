"""Which clip cues the daemon runs: one factory per cue, each called once per request.

No clip cue is enabled yet: the daemon scores with the per-frame CNN alone (see fusion.MeanFusion).
"""

from __future__ import annotations

from typing import Callable

from . import ClipCue


def default_cues(cfg, models) -> tuple[Callable[[], ClipCue], ...]:
    return ()
