"""The one place typed errors become HTTP statuses and the standard error body {"code", "desc", "param"}."""

from __future__ import annotations

import json

from .. import errors as e

STATUS = {
    e.BadParam: 400,
    e.BadVideo: 400,
    e.Unauthorized: 401,
    e.NotFound: 404,
    e.VideoTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.VideoLimitsExceeded: 422,
    e.NoFace: 422,
    e.NotEnoughFrames: 422,
    e.MultipleFaces: 422,
    e.Busy: 503,
    e.StorageUnavailable: 503,
}

# Headers an error's answer carries besides the body.
HEADERS = {
    e.Busy: (("Retry-After", "1"),),
    e.Unauthorized: (("WWW-Authenticate", 'Bearer realm="liveness-edge"'),),
}

# Codes for statuses bottle, waitress or the transport layer produce themselves (unknown path, wrong method, ...).
CODE_FOR_STATUS = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT",
                   411: "LENGTH_REQUIRED", 413: "VIDEO_TOO_LARGE", 417: "BAD_REQUEST", 421: "MISDIRECTED_HOST",
                   431: "HEADERS_TOO_LARGE",
                   500: "INTERNAL", 503: "BUSY"}


def status_of(error: e.LivenessError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def headers_of(error: e.LivenessError) -> tuple[tuple[str, str], ...]:
    return next((HEADERS[cls] for cls in type(error).__mro__ if cls in HEADERS), ())


def body(code: str, desc: str, param: str = "", **extra) -> bytes:
    return json.dumps({"code": code, "desc": desc, "param": param, **extra}).encode()
