"""The demo page: a static page for trying ``POST /v1/liveness`` from a browser (``server.demo-page``).

It holds no data and only calls the daemon's own API from the browser, so it is served without the bearer token;
the API calls it makes carry the token the user types into it. Its files ship inside the package (``demo/``) and are
read once at start. Every answer forbids framing, inline scripts and any origin but the daemon's own (CSP), so the
page cannot be turned against the box it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from .. import __version__
from ..errors import NotFound, StartupError

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
ASSETS = ("demo.js", "demo.css")
HEADERS = {
    # img: the answer's photo and crop arrive as data: URLs. The camera preview is a MediaStream (srcObject), which
    # no URL policy governs.
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


class DemoPage:
    """The page and its two assets, read from the package once; ``asset(name)`` raises NotFound for anything else."""

    def __init__(self):
        folder = resources.files(__package__) / "demo"
        try:
            # The version in the asset URLs makes a browser fetch new assets after an upgrade.
            page = (folder / "index.html").read_text(encoding="utf-8").replace("{{version}}", __version__)
            self._assets = {"index.html": Asset(page.encode(), CONTENT_TYPES[".html"])}
            for name in ASSETS:
                self._assets[name] = Asset((folder / name).read_bytes(), CONTENT_TYPES[name[name.rindex("."):]])
        except OSError as exc:
            raise StartupError(f"demo page: cannot read {exc.filename}: {exc.strerror} "
                               "(set server.demo-page: false to run without it)") from None

    def asset(self, name: str) -> Asset:
        try:
            return self._assets[name]
        except KeyError:
            raise NotFound(f"no demo asset {name!r}", param="path") from None
