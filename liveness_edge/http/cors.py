"""CORS for browser kiosks (``server.cors-origins``): a web page served from another origin (a kiosk app on
http://localhost:3000, say) may call the API and read its answers, errors included, only if its origin is listed.

Nothing is sent for an origin that is not listed, so the browser keeps the answer from the page; with no origins
configured (the default) the daemon behaves as before. Requests themselves are never refused here: CORS only decides
what a browser lets a page read, and the bearer token (``auth.token-file``) is still what guards the API.
"""

from __future__ import annotations

ALLOWED_METHODS = "GET, POST"
ALLOWED_HEADERS = "Content-Type, Authorization, X-Request-Id"
EXPOSED_HEADERS = "X-Request-Id, Retry-After"
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may cache a preflight answer


class Cors:
    def __init__(self, origins: tuple[str, ...]):
        self.any = "*" in origins
        self.origins = frozenset(o for o in origins if o != "*")

    def allow(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for a request from ``origin``, or None (not allowed / no Origin)."""
        if not origin:
            return None
        if origin in self.origins:
            return origin
        return "*" if self.any else None

    def response_headers(self, origin: str | None) -> list[tuple[str, str]]:
        allowed = self.allow(origin)
        if allowed is None:
            return []
        # Vary: a cache between the box and the browser must not hand one origin's answer to another.
        return [("Access-Control-Allow-Origin", allowed), ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
                ("Vary", "Origin")]

    def preflight_headers(self, origin: str | None) -> list[tuple[str, str]] | None:
        """Headers for an OPTIONS preflight from ``origin``; None when the origin is not allowed."""
        if self.allow(origin) is None:
            return None
        return self.response_headers(origin) + [("Access-Control-Allow-Methods", ALLOWED_METHODS),
                                                ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                                                ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE)]
