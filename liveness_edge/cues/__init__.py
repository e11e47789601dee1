"""Clip-level liveness cues: evidence a whole clip gives that a single frame does not.

A cue is created fresh for every request, sees each selected frame and its face as the pipeline goes
(``observe``), and gives one ``CueScore`` at the end (``result``): a value in [0, 1] (1 = live) or ``None`` when it
abstains (too little motion, no blink seen, ...). An abstaining cue drops out of the fusion instead of voting.
Cues know nothing of HTTP or of each other; ``pipeline.py`` feeds them and ``fusion.py`` combines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..decode import Frame
    from ..pipeline import FaceSample


@dataclass(frozen=True)
class CueScore:
    name: str
    value: float | None  # P(live) in [0, 1], or None: abstains
    detail: dict = field(default_factory=dict)


class ClipCue(Protocol):
    name: str

    def observe(self, frame: "Frame", sample: "FaceSample") -> None: ...

    def result(self) -> CueScore: ...


class EveryNth:
    """Which of the frames a cue is shown it looks at: the 1st, then every n-th after it. Cues whose statistic is
    stable over a clip (or measured against the first frame) skip the rest to save time."""

    def __init__(self, n: int):
        self.n = n
        self.seen = 0

    def take(self) -> bool:
        self.seen += 1
        return (self.seen - 1) % self.n == 0
