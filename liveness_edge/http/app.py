"""Routes: the findface-liveness-api contract plus health, metrics and detection lookup.

This package is the only code that knows HTTP. Handlers parse the request, call the pipeline and map its typed errors
through ``errors.py``; anything unexpected is logged with the request id and answered as a 500 JSON error without a
traceback.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import itertools
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qsl

import bottle

from .. import __version__
from ..cache import DetectionCache
from ..config import Config
from ..decode import check_content_type
from ..errors import BadParam, Busy, LivenessError, NotFound, StartupError, Unauthorized, VideoTooLarge
from ..models import ModelSet
from ..pipeline import ClipResult, Options, Pipeline
from . import errors as http_errors
from .demo import HEADERS as DEMO_HEADERS
from .cors import Cors
from .demo import DemoPage
from .metrics import Metrics

log = logging.getLogger("liveness_edge.access")

FLAGS = ("return_detection", "return_normalized", "return_photo", "return_frames")
TRUE_VALUES, FALSE_VALUES = {"true", "1"}, {"false", "0"}
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_QUERY = 2048
JSON_TYPE = "application/json"


@dataclass
class State:
    """What health reports; ``ready`` goes False while starting and draining."""

    ready: bool = False
    draining: bool = False
    started: float = field(default_factory=time.time)


class Admission:
    """At most ``slots`` clips in the pipeline and ``queue`` waiting; beyond that, shed with 503 at once.

    ``capacity`` (the worker threads clips may occupy) caps slots + queue: a clip waiting for a slot holds a waitress
    worker, so without the cap a burst could take every worker and leave /health and /metrics queued behind clips.
    """

    def __init__(self, slots: int, queue: int, wait_seconds: float, capacity: int | None = None):
        if capacity is not None:
            slots = max(1, min(slots, capacity))
            queue = max(0, min(queue, capacity - slots))
        self.slots = slots
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self.queue = queue
        self.wait_seconds = wait_seconds

    def __enter__(self):
        if self._slots.acquire(blocking=False):
            return self
        with self._lock:
            if self._waiting >= self.queue:
                raise Busy("the daemon is at capacity; retry shortly")
            self._waiting += 1
        try:
            if not self._slots.acquire(timeout=self.wait_seconds):
                raise Busy("the daemon is at capacity; retry shortly")
        finally:
            with self._lock:
                self._waiting -= 1
        return self

    def __exit__(self, *exc):
        self._slots.release()


def parse_flags(query_string: str) -> Options:
    """The seed's three query flags (true/false/1/0); anything else is BAD_PARAM naming the parameter."""
    if len(query_string) > MAX_QUERY:
        raise BadParam(f"query string is {len(query_string)} bytes, more than {MAX_QUERY}", param="query")
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=False, max_num_fields=16)
    except ValueError:
        raise BadParam("too many query parameters", param="query") from None
    values: dict[str, bool] = {}
    for key, raw in pairs:
        if key not in FLAGS:
            raise BadParam(f"unknown query parameter {key!r}; known: {', '.join(FLAGS)}", param=key)
        text = raw.strip().lower()
        if text not in TRUE_VALUES | FALSE_VALUES:
            raise BadParam(f"{key}={raw!r}: expected true, false, 1 or 0", param=key)
        value = text in TRUE_VALUES
        if values.get(key, value) != value:
            raise BadParam(f"{key} is given twice with different values", param=key)
        values[key] = value
    return Options(**values)


def result_json(result: ClipResult) -> dict:
    best = result.best_face
    left, top, right, bottom = best.bbox
    face = {
        "liveness": round(best.liveness, 6),
        "quality": round(best.quality, 6),
        "bbox": {"left": left, "top": top, "right": right, "bottom": bottom},
    }
    if best.detection_id is not None:
        face["detection_id"] = best.detection_id
    if best.photo_jpeg is not None:
        face["photo"] = base64.b64encode(best.photo_jpeg).decode()
    if best.normalized_png is not None:
        face["normalized"] = base64.b64encode(best.normalized_png).decode()
    face["frame_no"] = best.frame_no
    face["frame_ts"] = round(best.frame_ts, 6)
    answer = {"alive": result.alive, "average_liveness": round(result.average_liveness, 6), "best_face": face}
    if result.frames:  # return_frames: a debug view, outside the seed's fields
        answer["frames"] = list(result.frames)
        answer["cues"] = {c.name: {"value": None if c.value is None else round(c.value, 6), **c.detail}
                          for c in result.cues}
        answer["clip"] = result.clip
    return answer


class Service:
    """The WSGI app and what it needs; ``app`` is what waitress serves."""

    def __init__(self, cfg: Config, models: ModelSet | None = None, cache: DetectionCache | None = None,
                 state: State | None = None):
        self.cfg = cfg
        self.models: ModelSet | None = None
        self.cache: DetectionCache | None = None
        self.pipeline: Pipeline | None = None
        self.state = state or State()
        if models is not None and cache is not None:
            self.attach(models, cache)
        self.metrics = Metrics()
        # One waitress worker stays free of clips so that health, metrics and detections always have a thread.
        self.admission = Admission(cfg.server.max_concurrent_requests, cfg.server.queue,
                                   wait_seconds=cfg.server.read_timeout, capacity=max(1, cfg.server.workers - 1))
        logging.getLogger(__name__).info(
            "admission: %d clip(s) at once, %d waiting, %d workers (one kept free for /health and /metrics)",
            self.admission.slots, self.admission.queue, cfg.server.workers)
        self.token = _read_token(cfg)
        self.cors = Cors(cfg.server.cors_origins)
        self.demo = DemoPage() if cfg.server.demo_page else None
        self.completed = 0  # requests that left a handler, for the idle memory trim
        self._running: dict[int, float] = {}  # handler entry times (monotonic), for the watchdog's stuck check
        self._tokens = itertools.count()
        self._in_flight_lock = threading.Lock()
        self.app = self._build()

    def attach(self, models: ModelSet, cache: DetectionCache) -> None:
        """Models and cache are ready: from now on clips are served (until then /health says "starting")."""
        self.models, self.cache = models, cache
        self.pipeline = Pipeline(self.cfg, models, cache)

    def _require_ready(self) -> None:
        if self.pipeline is None:
            raise Busy("the daemon is starting: the models are still loading")

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _build(self) -> bottle.Bottle:
        app = bottle.Bottle()
        app.config["catchall"] = False  # Bottle does not swallow exceptions: _wrap answers every error itself
        app.route("/v1/liveness", "POST", self._wrap("liveness", self.liveness))
        app.route("/v1/detections/<detection_id>", "GET", self._wrap("detections", self.detection))
        app.route("/health", "GET", self._wrap("health", self.health, public=True))
        app.route("/metrics", "GET", self._wrap("metrics", self.metrics_page))
        if self.demo is not None:
            app.route("/", "GET", self._wrap("demo", lambda: self.demo_asset("index.html"), public=True))
            app.route("/demo/<name>", "GET", self._wrap("demo", self.demo_asset, public=True))
        for status in (400, 404, 405, 413, 500):
            app.error(status)(self._bottle_error)
        return _Outer(app, self)

    def _wrap(self, endpoint: str, handler, public: bool = False):
        def route(*args, **kwargs):
            request_id = _request_id(_header("X-Request-Id"))
            bottle.response.set_header("X-Request-Id", request_id)
            start = time.perf_counter()
            status, extra = 200, {}
            with self._in_flight_lock:
                token = next(self._tokens)
                self._running[token] = time.monotonic()
            try:
                if not public:
                    self._authorize()
                body = handler(*args, **kwargs)
                status = bottle.response.status_code  # a handler may set its own (health: 503 while starting)
            except LivenessError as exc:
                status = http_errors.status_of(exc)
                body = json.dumps(exc.as_dict()).encode()
                bottle.response.content_type = JSON_TYPE
                for header, value in http_errors.headers_of(exc):
                    bottle.response.set_header(header, value)
                if isinstance(exc, Busy):
                    self.metrics.shed.inc()
                extra = {"error": exc.code}
            except Exception:  # a bug, not the client's fault: log it, answer without a traceback
                log.exception("unhandled error request_id=%s", request_id)
                status = 500
                body = http_errors.body("INTERNAL", "internal error; see the daemon log", request_id=request_id)
                bottle.response.content_type = JSON_TYPE
                extra = {"error": "INTERNAL"}
            finally:
                with self._in_flight_lock:
                    self.completed += 1
                    del self._running[token]
            bottle.response.status = status
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self._log(request_id, endpoint, status, elapsed, extra)
            return body

        return route

    @property
    def in_flight(self) -> int:
        """Requests inside a handler now, for the shutdown drain and the idle trim."""
        return len(self._running)

    def oldest_handler_seconds(self, now: float | None = None) -> float:
        """How long the longest-running request has been inside a handler (0 when none is)."""
        with self._in_flight_lock:
            oldest = min(self._running.values(), default=None)
        return 0.0 if oldest is None else (now if now is not None else time.monotonic()) - oldest

    def _log(self, request_id: str, endpoint: str, status: int, elapsed: float, extra: dict,
             method: str | None = None, path: str | None = None, remote: str | None = None) -> None:
        if endpoint in ("health", "metrics") and status == 200:
            return  # probes every few seconds would drown the journal
        if method is None:
            method, path, remote = bottle.request.method, bottle.request.path, bottle.request.remote_addr
        record = {"request_id": request_id, "method": method, "path": path,
                  "endpoint": endpoint, "status": status, "ms": round(elapsed * 1000, 1),
                  "remote": remote, **extra}
        # The formatter picks the shape (log.format): these fields as one JSON object, or this key=value text.
        log.info(" ".join(f"{k}={v}" for k, v in record.items()), extra={"fields": record})

    def record_transport_error(self, status: int, code: str, method: str, path: str, remote: str = "-") -> str:
        """Count and log an error waitress answered before the app saw the request; returns the request id."""
        request_id = uuid.uuid4().hex
        self.metrics.requests.labels("other", str(status)).inc()
        self._log(request_id, "other", status, 0.0, {"error": code}, method=method or "-", path=path or "-",
                  remote=remote or "-")
        return request_id

    def _bottle_error(self, error: bottle.HTTPError):
        """Unknown paths, wrong methods and other errors bottle raises itself, in the standard JSON shape."""
        status = error.status_code
        bottle.response.content_type = JSON_TYPE
        code = http_errors.CODE_FOR_STATUS.get(status, "BAD_REQUEST")
        desc = {404: f"no such path: {bottle.request.path}",
                405: f"method {bottle.request.method} is not allowed on {bottle.request.path}"}.get(status, error.body
                                                                                                   or code)
        request_id = _request_id(_header("X-Request-Id"))
        bottle.response.set_header("X-Request-Id", request_id)
        self.metrics.requests.labels("other", str(status)).inc()
        self._log(request_id, "other", status, 0.0, {"error": code})
        return http_errors.body(code, str(desc))

    def _authorize(self) -> None:
        if self.token is None:
            return
        header = _header("Authorization") or ""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self.token):
            raise Unauthorized("missing or wrong bearer token", param="Authorization")

    # -- endpoints -----------------------------------------------------------------------------------------------

    def liveness(self) -> bytes:
        request = bottle.request
        self._require_ready()
        options = parse_flags(request.query_string)
        check_content_type(_header("Content-Type"))
        length = request.content_length
        if length > self.cfg.limits.video_size:
            raise VideoTooLarge(f"body is {length} bytes, over limits.video-size ({self.cfg.limits.video_size})",
                                param="limits.video-size")
        body = request.environ["wsgi.input"]
        body.seek(0)
        with self.admission:
            self.metrics.in_flight.inc()
            try:
                result = self.pipeline.run(body, options)
            except LivenessError as exc:
                self._count_frames(exc.details)
                raise
            finally:
                self.metrics.in_flight.dec()
        for stage, seconds in result.stage_seconds.items():
            self.metrics.latency.labels(stage).observe(seconds)
        self.metrics.latency.labels("total").observe(sum(result.stage_seconds.values()))
        self._count_frames({"frames_decoded": result.frames_decoded, "frames_selected": result.frames_selected,
                            "dropped": result.dropped})
        self.metrics.decisions.labels(str(result.alive).lower()).inc()
        bottle.response.content_type = JSON_TYPE
        return json.dumps(result_json(result)).encode()

    def _count_frames(self, details: dict) -> None:
        if "frames_decoded" in details:
            self.metrics.frames.labels("decoded").inc(details["frames_decoded"])
        if "frames_selected" in details:
            self.metrics.frames.labels("selected").inc(details["frames_selected"])
        for reason, count in details.get("dropped", {}).items():
            if count:
                self.metrics.frames.labels(reason).inc(count)

    def detection(self, detection_id: str) -> bytes:
        if not re.fullmatch(r"[0-9a-f]{32}", detection_id):
            raise NotFound(f"no detection {detection_id!r}", param="detection_id")
        self._require_ready()
        det = self.cache.get(detection_id)
        if det is None:
            raise NotFound(f"no detection {detection_id!r} (unknown or expired)", param="detection_id")
        left, top, right, bottom = det.bbox
        bottle.response.content_type = JSON_TYPE
        return json.dumps({
            "id": det.id, "created": det.created,
            "liveness": round(det.liveness, 6), "quality": round(det.quality, 6),
            "bbox": {"left": left, "top": top, "right": right, "bottom": bottom},
            "frame_no": det.frame_no, "frame_ts": det.frame_ts,
            "normalized": base64.b64encode(det.normalized_png).decode(),
        }).encode()

    def health(self) -> bytes:
        state = self.state
        status = "draining" if state.draining else ("ok" if state.ready else "starting")
        if status != "ok":
            bottle.response.status = 503
        bottle.response.content_type = JSON_TYPE
        return json.dumps({
            "status": status,
            "version": __version__,
            "uptime_sec": round(time.time() - state.started, 3),
            "delegate": self.models.backend.describe() if self.models else None,
            "models": [info.as_dict() for info in self.models.infos] if self.models else [],
            "cache_entries": self.cache.count() if self.cache is not None else 0,  # null: the cache cannot be read
            # What a client needs to read an answer, or to size a clip before sending it (the demo page shows them).
            "liveness_threshold": self.cfg.liveness_threshold,
            "min_selected_frames": self.cfg.min_selected_frames,
            "max_decoded_frames": self.cfg.max_decoded_frames,
            "limits": {key.replace("_", "-"): value for key, value in asdict(self.cfg.limits).items()},
            # How `liveness` is made, so an integrator can see what a config change (camera, model slot) did.
            "camera": self.cfg.camera,
            # Whether the API wants a bearer token (auth.token-file), so a client (the demo page) can ask for one first.
            "auth_required": self.token is not None,
            "scoring": self.pipeline.describe() if self.pipeline else None,
        }).encode()

    def demo_asset(self, name: str) -> bytes:
        asset = self.demo.asset(name)
        for header, value in DEMO_HEADERS.items():
            bottle.response.set_header(header, value)
        bottle.response.content_type = asset.content_type
        return asset.body

    def metrics_page(self) -> bytes:
        entries = self.cache.count() if self.cache is not None else None
        if entries is not None:
            self.metrics.cache_entries.set(entries)
        bottle.response.content_type = self.metrics.content_type
        return self.metrics.render()


class _Outer:
    """WSGI wrapper, before routing: a Host not allowed by server.allowed-hosts gets a JSON 421; CORS (preflights
    answered here, the allow headers added to every answer, errors included); an Expect header other than
    100-continue gets a JSON 417."""

    def __init__(self, app: bottle.Bottle, service: Service):
        self.bottle = app
        self.service = service
        self.cors = service.cors

    def __call__(self, environ, start_response):
        host = environ.get("HTTP_HOST")
        if not host_allowed(host, self.service.cfg.server.allowed_hosts):
            # A name the daemon is not known by: a web page whose own domain was re-pointed at the box (DNS
            # rebinding) would otherwise be "same origin" with the API and read its answers.
            return self._refuse(environ, start_response, 421, "Misdirected Request",
                                f"Host {(host or '')[:80]!r} is not an address of this daemon nor in "
                                "server.allowed-hosts", "server.allowed-hosts")
        origin = environ.get("HTTP_ORIGIN")
        if environ.get("REQUEST_METHOD") == "OPTIONS" and environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
            headers = self.cors.preflight_headers(origin)
            if headers is not None:
                self.service.metrics.requests.labels("other", "204").inc()
                start_response("204 No Content", headers + [("X-Request-Id",
                                                              _request_id(environ.get("HTTP_X_REQUEST_ID")))])
                return [b""]
        cors_headers = self.cors.response_headers(origin)
        if cors_headers:
            plain_start = start_response

            def start_response(status, headers, exc_info=None):
                return plain_start(status, headers + cors_headers, exc_info)

        expect = environ.get("HTTP_EXPECT")
        if expect is not None and expect.strip().lower() != "100-continue":
            return self._refuse(environ, start_response, 417, "Expectation Failed",
                                f"unsupported Expect: {expect[:64]!r}", "Expect")
        return self.bottle(environ, start_response)

    def _refuse(self, environ, start_response, status: int, reason: str, desc: str, param: str) -> list[bytes]:
        """An error answered here, before routing, in the standard JSON shape, logged and counted like the rest."""
        code = http_errors.CODE_FOR_STATUS[status]
        request_id = self.service.record_transport_error(status, code, environ.get("REQUEST_METHOD", ""),
                                                         environ.get("PATH_INFO", ""), environ.get("REMOTE_ADDR", "-"))
        start_response(f"{status} {reason}", [("Content-Type", JSON_TYPE), ("X-Request-Id", request_id)])
        return [http_errors.body(code, desc, param=param)]


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a request's Host header names this daemon: anything when server.allowed-hosts is empty (the seed's
    behaviour); else an IP address, localhost, or one of the listed names (any port)."""
    if not allowed:
        return True
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1:name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in ("localhost", *allowed) or name.endswith(".localhost")


def _header(name: str) -> str | None:
    """A request header as the WSGI environ holds it (latin-1 text). bottle's own header access re-decodes values as
    UTF-8 and raises on bytes that are not, which turned a stray 0x80 in a header into a 500."""
    key = name.upper().replace("-", "_")
    environ = bottle.request.environ
    return environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key)


def _request_id(supplied: str | None) -> str:
    if supplied and REQUEST_ID_RE.fullmatch(supplied):
        return supplied
    return uuid.uuid4().hex


def _read_token(cfg: Config) -> bytes | None:
    if cfg.token_file is None:
        return None
    try:
        token = cfg.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StartupError(f"auth.token-file {cfg.token_file}: cannot read: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise StartupError(f"auth.token-file {cfg.token_file}: the token must be at least 16 characters")
    return token.encode()

