"""Serving: waitress with JSON errors, systemd notification, a watchdog and a graceful SIGTERM drain.

waitress answers some errors itself before the app sees the request (a body over max_request_body_size, a malformed
request line, headers too large); ``JsonErrorTask`` gives those the standard JSON error body too.

Lifecycle: the sockets are bound first (a port in use fails before seconds of model loading) and ``/health`` answers
503 ``starting`` while the models are loaded, verified and warmed in a thread; then ``READY=1``. On SIGTERM or SIGINT
``STOPPING=1`` is sent, ``/health`` turns 503 ``draining``, the listening sockets close (no new connections),
in-flight requests get up to ``server.drain-timeout`` to finish, the cache is checkpointed, and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable

import sdnotify
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask

from ..memory import malloc_trim
from . import errors as http_errors
from .app import Service

log = logging.getLogger(__name__)
LOOP_TICK = 0.25
IDLE_TRIM_INTERVAL = 1.0
EXPIRE_INTERVAL = 60.0  # seconds between deletions of expired detections (cache.ttl) on a box that stores none
STUCK_GRACE = 300.0  # seconds past server.read-timeout after which a request still in a worker counts as stuck


class JsonErrorTask(ErrorTask):
    """waitress's own errors (413 body too large, 431 headers too large, 400 malformed) in the standard JSON shape,
    counted in the metrics and logged like every other request."""

    def execute(self):
        error = self.request.error
        status_code, reason, param = error.code, error.reason, "limits.video-size" if error.code == 413 else ""
        if status_code == 501:  # an unknown Transfer-Encoding: the client's request is at fault, not the daemon
            status_code, reason, param = 400, "Bad Request", "Transfer-Encoding"
        code = http_errors.CODE_FOR_STATUS.get(status_code, "BAD_REQUEST")
        desc = f"{error.reason}: {error.body}".strip(": ")
        if status_code == 413:  # waitress names its own cut-off (the limit + 1, see build_server), not the setting
            largest = self.channel.adj.max_request_body_size - 1
            desc = f"the request body is larger than limits.video-size ({largest} bytes)"
        body = http_errors.body(code, desc, param=param)
        status = f"{status_code} {reason}"
        self.status = status
        self.response_headers.append(("Content-Type", "application/json"))
        service = getattr(self.channel.server, "liveness_service", None)
        if service is not None:
            request_id = service.record_transport_error(status_code, code, getattr(self.request, "command", ""),
                                                        getattr(self.request, "path", ""), _remote(self.channel))
            self.response_headers.append(("X-Request-Id", request_id))
            # A browser page on a listed origin must be able to read this error too (server.cors-origins).
            self.response_headers.extend(service.cors.response_headers(_origin(self.request)))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


def _remote(channel) -> str:
    addr = getattr(channel, "addr", None)
    return str(addr[0]) if isinstance(addr, tuple) and addr else "-"


def _origin(request) -> str | None:
    headers = getattr(request, "headers", None) or {}
    return headers.get("ORIGIN")  # waitress keys request headers upper-case, "-" as "_"


class JsonChannel(HTTPChannel):
    """A channel that remembers when the request it is receiving began, so a client that trickles its headers or
    body (defeating waitress's idle timeout one byte at a time) is cut off after ``server.read-timeout`` in total.
    A request already refused from its headers (413: Content-Length over limits.video-size) gets no
    ``100 Continue``: a client that sent ``Expect: 100-continue`` then reads the 413 instead of uploading the body."""

    error_task_class = JsonErrorTask
    request_started: float | None = None

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        service = getattr(server, "liveness_service", None)
        cap = service.cfg.server.connections_per_client if service is not None else 0
        if cap and self._connections_from_same_client() > cap:
            # One client holding many idle connections would lock the others out (waitress accepts at most
            # server.max-connections): this one is answered at once and closed, and counted as shed.
            service.metrics.shed.inc()
            self.refuse(503, "Service Unavailable", "BUSY",
                        f"more than server.connections-per-client ({cap}) connections from {_remote(self)}",
                        "server.connections-per-client", ("Retry-After: 1",))

    def _connections_from_same_client(self) -> int:
        host = _remote(self)
        return sum(1 for obj in list(self._map.values())
                   if isinstance(obj, HTTPChannel) and _remote(obj) == host and not obj.will_close)

    def send_continue(self):
        if self.request is not None and self.request.error is not None:
            self.sent_continue = True  # waitress would otherwise try again after each request it answers
            self.request.expect_continue = False
            return
        super().send_continue()

    def received(self, data):
        if data and self.request is None:
            self.request_started = time.monotonic()
        result = super().received(data)
        if self.request is None:
            self.request_started = None
        return result

    def overdue(self, now: float, limit: float) -> bool:
        started = self.request_started
        return (started is not None and now - started > limit and not self.requests
                and not self.will_close and not self.close_when_flushed)

    def time_out(self, limit: float) -> None:
        """Answer 408 in the standard JSON shape from the I/O thread and close once it is flushed."""
        self.refuse(408, "Request Timeout", http_errors.CODE_FOR_STATUS[408],
                    f"the request was not received within server.read-timeout ({limit:g} s)", "server.read-timeout")

    def refuse(self, status: int, reason: str, code: str, desc: str, param: str, extra: tuple[str, ...] = ()) -> None:
        """Answer an error in the standard JSON shape from the I/O thread (no worker involved) and close once it is
        flushed; whatever part of a request had arrived is dropped."""
        body = http_errors.body(code, desc, param=param)
        service = getattr(self.server, "liveness_service", None)
        request_id = service.record_transport_error(status, code, getattr(self.request, "command", ""),
                                                    getattr(self.request, "path", ""), _remote(self)) if service else ""
        cors = "".join(f"{k}: {v}\r\n" for k, v in service.cors.response_headers(_origin(self.request))) \
            if service else ""
        extra_headers = "".join(f"{h}\r\n" for h in extra)
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-Request-Id: {request_id}\r\n{extra_headers}{cors}\r\n").encode()
        with self.requests_lock:
            if self.request is not None:
                self.request.close()  # its body buffer may be a temporary file already
            self.request = None
            self.request_started = None
            with self.outbuf_lock:
                self.outbufs[-1].append(head + body)
                self.current_outbuf_count += len(head) + len(body)
                self.total_outbufs_len += len(head) + len(body)
            self.close_when_flushed = True


def listen_spec(host: str, port: int) -> str:
    if host == "":
        return f"*:{port}"  # the seed's ":PORT": every interface, IPv4 and IPv6
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def socket_map(server) -> dict:
    """waitress's asyncore map: ``map`` on a multi-socket server, ``_map`` on a single one."""
    return server.map if hasattr(server, "map") else server._map


def build_server(service: Service):
    cfg = service.cfg
    server = create_server(
        service.app,
        listen=listen_spec(cfg.listen.host, cfg.listen.port),
        threads=cfg.server.workers,
        channel_timeout=max(1, int(cfg.server.read_timeout)),
        cleanup_interval=max(1, min(30, int(cfg.server.read_timeout / 2))),  # idle channels go within ~1.5x
        # waitress refuses a body of max_request_body_size bytes or more; limits.video-size is the largest allowed.
        max_request_body_size=cfg.limits.video_size + 1,
        connection_limit=cfg.server.max_connections,
        ident="liveness-edge",
        clear_untrusted_proxy_headers=True,
        expose_tracebacks=False,
    )
    for obj in list(socket_map(server).values()):
        if isinstance(obj, BaseWSGIServer):
            obj.channel_class = JsonChannel
            obj.liveness_service = service
    return server


def bound_addresses(server) -> list[tuple[str, int]]:
    return [(obj.effective_host, obj.effective_port) for obj in socket_map(server).values()
            if isinstance(obj, BaseWSGIServer)]


class Runner:
    """Drives waitress's loop so that shutdown can drain instead of dropping in-flight responses."""

    def __init__(self, service: Service, server):
        self.service = service
        self.server = server
        self.stop_requested = threading.Event()
        self.notifier = sdnotify.SystemdNotifier()
        self.last_tick = time.monotonic()
        self._malloc_trim = malloc_trim()
        self._trimmed_after = 0  # service.completed at the last trim
        self._last_trim = 0.0
        self._last_expiry = time.monotonic()  # the cache purges at start; the first tick need not
        self._stuck_logged = False

    def request_stop(self, signum=None, _frame=None) -> None:
        if not self.stop_requested.is_set():
            log.info("signal %s: draining", signal.Signals(signum).name if signum else "stop")
        self.stop_requested.set()

    def serve(self, load: Callable[[], tuple]) -> int:
        """Answer /health ("starting") while ``load()`` builds the models and cache in a thread, then serve clips.

        A StartupError from ``load`` closes the sockets and is raised here, so the CLI prints its one line.
        """
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        for host, port in bound_addresses(self.server):
            log.info("listening on %s port %s; loading models", host, port)
        self._load_while_serving(load)
        if self.stop_requested.is_set():
            return self._drain()
        self.service.state.ready = True
        for host, port in bound_addresses(self.server):
            log.info("serving on %s port %s", host, port)
        self._start_watchdog()
        self.notifier.notify("READY=1\nSTATUS=serving")
        while not self.stop_requested.is_set():
            self._tick()
        return self._drain()

    def _load_while_serving(self, load: Callable[[], tuple]) -> None:
        outcome: dict = {}

        def run():
            try:
                outcome["value"] = load()
            except BaseException as exc:  # re-raised in the main thread below
                outcome["error"] = exc

        loader = threading.Thread(target=run, name="load-models", daemon=True)
        loader.start()
        while loader.is_alive():
            self._tick()
        if "error" in outcome:
            for obj in list(socket_map(self.server).values()):
                if isinstance(obj, BaseWSGIServer):
                    wasyncore.dispatcher.close(obj)
            self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
            raise outcome["error"]
        self.service.attach(*outcome["value"])

    def _tick(self) -> None:
        wasyncore.loop(timeout=LOOP_TICK, map=socket_map(self.server), use_poll=True, count=1)
        self.last_tick = now = time.monotonic()
        limit = self.service.cfg.server.read_timeout
        for obj in list(socket_map(self.server).values()):
            if isinstance(obj, JsonChannel) and obj.overdue(now, limit):
                obj.time_out(limit)
        self._trim_when_idle(now)
        self._expire_detections(now)

    def _expire_detections(self, now: float) -> None:
        cache = self.service.cache
        if cache is not None and now - self._last_expiry >= EXPIRE_INTERVAL:
            self._last_expiry = now
            cache.purge_expired()

    def _trim_when_idle(self, now: float) -> None:
        """Give freed heap pages back to the system once the daemon is idle after some work.

        glibc keeps pages that frames and crops freed in its arenas; without a trim the RSS after a burst of big or
        odd clips stays at the burst's high-water mark. At most once a second, only with nothing in flight.
        """
        service = self.service
        if (self._malloc_trim is None or service.in_flight or service.completed == self._trimmed_after
                or now - self._last_trim < IDLE_TRIM_INTERVAL):
            return
        self._trimmed_after, self._last_trim = service.completed, now
        self._malloc_trim(0)

    def _busy(self) -> bool:
        if self.service.in_flight:
            return True
        return any(isinstance(obj, HTTPChannel) and (obj.requests or obj.total_outbufs_len)
                   for obj in list(socket_map(self.server).values()))

    def _drain(self) -> int:
        state = self.service.state
        state.draining, state.ready = True, False
        self.notifier.notify("STOPPING=1\nSTATUS=draining")
        for obj in list(socket_map(self.server).values()):
            if isinstance(obj, BaseWSGIServer):
                # Stop accepting; open connections keep being served. Only the listening socket is closed:
                # BaseWSGIServer.close() would also close the trigger that workers pull when a response is ready,
                # and a worker finishing later would then write to a closed (or reused) file descriptor.
                wasyncore.dispatcher.close(obj)
        deadline = time.monotonic() + self.service.cfg.server.drain_timeout
        while self._busy() and time.monotonic() < deadline:
            self._tick()
        leftover = self.service.in_flight
        if leftover:
            log.warning("drain timeout: %d request(s) still running are abandoned", leftover)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        if self.service.cache is not None:
            self.service.cache.checkpoint()
        log.info("stopped")
        return 0

    def watchdog_ok(self, now: float, period: float) -> bool:
        """The request loop turned within half a period and no request is stuck in a worker.

        A request may legitimately wait ``server.read-timeout`` for an admission slot and then take a while on a slow
        box; one still inside a handler ``STUCK_GRACE`` seconds after that is a wedged worker (a hung delegate, a
        deadlock): withholding WATCHDOG=1 lets systemd restart the daemon instead of it answering nothing forever.
        """
        if now - self.last_tick >= period / 2:
            return False
        oldest = self.service.oldest_handler_seconds(now)
        if oldest > self.service.cfg.server.read_timeout + STUCK_GRACE:
            if not self._stuck_logged:
                log.error("watchdog: a request has been in a worker for %.0f s; withholding WATCHDOG=1", oldest)
                self._stuck_logged = True
            return False
        self._stuck_logged = False
        return True

    def _start_watchdog(self) -> None:
        """WATCHDOG=1 at half the systemd period while ``watchdog_ok``."""
        usec = os.environ.get("WATCHDOG_USEC")
        if not usec or not usec.isdigit():
            return
        period = int(usec) / 1e6

        def ping():
            while not self.stop_requested.wait(period / 2):
                if self.watchdog_ok(time.monotonic(), period):
                    self.notifier.notify("WATCHDOG=1")

        threading.Thread(target=ping, name="watchdog", daemon=True).start()
