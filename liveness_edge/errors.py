"""Typed errors raised by the stages.

Stages raise these; only ``liveness_edge.http.errors`` maps them to HTTP statuses, so the stages never know about HTTP.
Each error carries a stable ``code`` (part of the public API, documented in the README), a human-readable ``desc`` and,
where one request parameter is to blame, ``param``.
"""

from __future__ import annotations


class LivenessError(Exception):
    """Base of every error a client can cause; ``code`` is stable API."""

    code = "INTERNAL"

    def __init__(self, desc: str, param: str = "", **details):
        super().__init__(desc)
        self.desc = desc
        self.param = param
        self.details = details

    def as_dict(self) -> dict:
        body = {"code": self.code, "desc": self.desc, "param": self.param}
        body.update(self.details)
        return body


class BadParam(LivenessError):
    code = "BAD_PARAM"


class UnsupportedMediaType(LivenessError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class VideoTooLarge(LivenessError):
    code = "VIDEO_TOO_LARGE"


class VideoLimitsExceeded(LivenessError):
    code = "VIDEO_LIMITS_EXCEEDED"


class BadVideo(LivenessError):
    code = "BAD_VIDEO"


class NoFace(LivenessError):
    code = "NO_FACE"


class NotEnoughFrames(LivenessError):
    code = "NOT_ENOUGH_FRAMES"


class MultipleFaces(LivenessError):
    code = "MULTIPLE_FACES"


class NotFound(LivenessError):
    code = "NOT_FOUND"


class Busy(LivenessError):
    code = "BUSY"


class Unauthorized(LivenessError):
    code = "UNAUTHORIZED"


class StorageUnavailable(LivenessError):
    """The detection cache cannot be read or written (a full disk, a read-only or vanished state-dir)."""

    code = "STORAGE_UNAVAILABLE"


class StartupError(Exception):
    """The daemon cannot start: a bad config, a missing or corrupt model, a missing delegate library.

    The message is one line that names the file or key and the problem; the CLI prints it and exits 2, which the unit
    does not restart (trying again would not fix it).
    """


class StartupUnavailable(StartupError):
    """The daemon cannot start yet: its listen address is not up or is taken, its accelerator has not appeared. The
    CLI exits 75 (EX_TEMPFAIL), which the unit restarts: a USB Coral enumerates and an interface comes up in seconds
    at boot."""
