"""Prometheus metrics and the /healthz probe, served on a local HTTP port.

The registry is owned by a `Metrics` instance, not prometheus_client's global one, so two
gateways (or two tests) in one process never share counters. This module is a leaf: it
imports nothing from the `gateway` package. Labels never carry patient data; the only label
is the pipeline stage.
"""

from __future__ import annotations

import logging
import math
import ssl
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote
from wsgiref.simple_server import ServerHandler

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["PREFIX", "Metrics", "MetricsServer"]

log = logging.getLogger(__name__)

PREFIX = "dicom_gateway_"

# Per-study processing runs from under a second (a few slices) to minutes (a whole-body CT
# with OCR), so the buckets span that range.
# The HTTP endpoint serves probes and scrapes, a few at a time: more at once is a misbehaving
# or hostile client, and each request must arrive and be answered within seconds.
MAX_HANDLERS = 8
HANDLER_SECONDS = 10.0
# With the web console mounted a browser loads a page and its pictures at once.
MAX_HANDLERS_WITH_APP = 16

WsgiApp = Callable[..., Any]  # a WSGI application (the web console), type kept loose here

_PROCESSING_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, math.inf)


class Metrics:
    """The gateway's counters, one gauge and one histogram, in a registry of their own.

    Counters are prometheus_client objects: `metrics.instances_received.inc()`,
    `metrics.failures.labels(stage="receive").inc()`,
    `with metrics.processing_seconds.time(): ...`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.instances_received = Counter(
            f"{PREFIX}instances_received",
            "Instances acknowledged to a sender (durable in the spool)",
            registry=reg,
        )
        self.studies_completed = Counter(
            f"{PREFIX}studies_completed",
            "Studies declared complete after their quiet period",
            registry=reg,
        )
        self.studies_forwarded = Counter(
            f"{PREFIX}studies_forwarded",
            "Studies de-identified and delivered to the destination",
            registry=reg,
        )
        self.instances_quarantined = Counter(
            f"{PREFIX}instances_quarantined",
            "Instances held back because they could not be shown to be clean",
            registry=reg,
        )
        self.failures = Counter(
            f"{PREFIX}failures",
            "Failures by pipeline stage (receive, association, deid, verify, forward, ...)",
            ["stage"],
            registry=reg,
        )
        self.forward_retries = Counter(
            f"{PREFIX}forward_retries",
            "Forwarding attempts that will be retried (refused, aborted, 0xA7xx)",
            registry=reg,
        )
        self.processing_seconds = Histogram(
            f"{PREFIX}processing_seconds",
            "Time to de-identify and verify one study",
            buckets=_PROCESSING_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}queue_depth",
            "Instances received and not yet forwarded (read at scrape time)",
            registry=reg,
        )
        self._queue_depth_source: Callable[[], int] | None = None
        self.queue_depth.set_function(self._read_queue_depth)
        self.instances_forwarded = Counter(
            f"{PREFIX}instances_forwarded",
            "Instances the destination confirmed (success or warning status)",
            registry=reg,
        )
        self.forward_next_attempt_seconds = Gauge(
            f"{PREFIX}forward_next_attempt_seconds",
            "Seconds until the earliest forward retry now waiting (0: none waits)",
            registry=reg,
        )
        self.process_retries = Counter(
            f"{PREFIX}process_retries",
            "Study rounds whose processing failed for the environment's sake (a full disk, "
            "a worker killed) and will be tried again after a backoff",
            registry=reg,
        )
        self.process_held_studies = Gauge(
            f"{PREFIX}process_held_studies",
            "Study rounds held after too many failed processing attempts, kept whole, "
            "waiting for `quarantine release`",
            registry=reg,
        )
        self.forward_failed_studies = Gauge(
            f"{PREFIX}forward_failed_studies",
            "Study rounds in the failed-forward state, waiting for `quarantine release`",
            registry=reg,
        )

    @staticmethod
    def measure(gauge: Gauge, source: Callable[[], float]) -> None:
        """Read `gauge` from `source` at every scrape; NaN when the source fails."""

        def read() -> float:
            try:
                return float(source())
            except Exception as exc:
                log.warning("gauge source failed: %s", type(exc).__name__)
                return math.nan

        gauge.set_function(read)

    def measure_queue_depth(self, source: Callable[[], int]) -> None:
        """Read the queue depth from `source` (e.g. `spool.queue_depth`) at every scrape.

        Read at scrape time rather than pushed, so the figure is never stale and the spool
        needs no reference to the metrics.
        """
        self._queue_depth_source = source

    def _read_queue_depth(self) -> float:
        source = self._queue_depth_source
        if source is None:
            return math.nan
        try:
            return float(source())
        except Exception as exc:  # a broken source must not break the whole scrape
            log.warning("queue depth unavailable: %s", type(exc).__name__)
            return math.nan

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    def start_http(
        self,
        host: str,
        port: int,
        healthy: Callable[[], bool],
        *,
        app: WsgiApp | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> MetricsServer:
        """Serve /healthz and /metrics from a daemon thread; port 0 picks a free port.

        `healthy()` is called on every probe (200 "ok" when true, 503 otherwise); it should
        be cheap, e.g. "the SCP is accepting and the spool is writable". `app`: a WSGI
        application (the web console) answers every other path on the same port, through
        the same bounded server; `ssl_context`: the port speaks TLS.
        """
        server = MetricsServer(
            (host, port),
            _handler_class(self, healthy, app, https=ssl_context is not None),
            max_handlers=MAX_HANDLERS if app is None else MAX_HANDLERS_WITH_APP,
            ssl_context=ssl_context,
        )
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits for the loop to look
            name=f"metrics-http:{server.port}",
            daemon=True,
        )
        thread.start()
        server.thread = thread
        scheme = "https" if ssl_context is not None else "http"
        log.info("metrics and health on %s://%s:%d", scheme, host, server.port)
        return server


class MetricsServer(ThreadingHTTPServer):
    """The HTTP server returned by `Metrics.start_http`; `shutdown()` also frees the port.

    Bounded for a hostile or broken client: at most `MAX_HANDLERS` requests are served at
    once (a connection beyond that is closed unread), each has `HANDLER_SECONDS` to arrive
    and be answered, and a client that drops its connection is a debug line, not a trace.
    """

    daemon_threads = True
    thread: threading.Thread | None = None

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_handlers: int = MAX_HANDLERS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_handlers)
        self._ssl_context = ssl_context
        self.turned_away = 0  # connections closed unread because every slot was busy

    def get_request(self) -> tuple[Any, Any]:
        """Accept; under TLS the handshake is left to the handler's thread (and its
        timeout), so a client that never completes it cannot stall the accept loop."""
        sock, address = super().get_request()
        if self._ssl_context is not None:
            sock = self._ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address

    @property
    def port(self) -> int:
        """The bound port (the free one chosen when asked for port 0)."""
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.turned_away += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or sent too slowly: one debug line, no traceback."""
        kind = type(sys.exc_info()[1]).__name__
        log.debug("http client %s: %s", client_address[0] if client_address else "?", kind)

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)


def _handler_class(
    metrics: Metrics, healthy: Callable[[], bool], app: WsgiApp | None = None, *, https: bool
) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to this registry and probe (no module-level state)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "dicom-gateway"
        sys_version = ""
        timeout = HANDLER_SECONDS  # the socket's: a half-sent request is dropped, not waited on

        def setup(self) -> None:
            super().setup()  # sets the socket's timeout, which bounds the handshake too
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok = _is_healthy(healthy)
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._reply(status, b"ok\n" if ok else b"unhealthy\n", "text/plain")
            elif path == "/metrics":
                self._reply(HTTPStatus.OK, metrics.render(), CONTENT_TYPE_LATEST)
            elif app is not None:
                self._run_app()
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        def do_POST(self) -> None:
            if app is None or self.path.split("?", 1)[0] in ("/healthz", "/metrics"):
                self._reply(HTTPStatus.NOT_IMPLEMENTED, b"not implemented\n", "text/plain")
            else:
                self._run_app()

        def _run_app(self) -> None:
            """Hand the request to the WSGI application (wsgiref's handler, as
            `wsgiref.simple_server` does, on this bounded server's thread)."""
            assert app is not None
            handler = ServerHandler(
                self.rfile, self.wfile, sys.stderr, self._environ(), multithread=True
            )
            handler.request_handler = self  # type: ignore[attr-defined]
            handler.run(app)

        def _environ(self) -> dict[str, Any]:
            path, _, query = self.path.partition("?")
            environ: dict[str, Any] = {
                "SERVER_NAME": self.server.server_address[0],
                "SERVER_PORT": str(self.server.server_address[1]),
                "SERVER_PROTOCOL": self.request_version,
                "SERVER_SOFTWARE": self.server_version,
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": self.command,
                "SCRIPT_NAME": "",
                "PATH_INFO": unquote(path, "iso-8859-1"),
                "QUERY_STRING": query,
                "REMOTE_ADDR": self.client_address[0],
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": self.headers.get("Content-Length", ""),
                "wsgi.url_scheme": "https" if https else "http",
            }
            for key, value in self.headers.items():
                name = "HTTP_" + key.upper().replace("-", "_")
                if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                    environ[name] = value if name not in environ else f"{environ[name]},{value}"
            return environ

        def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # The default writes every request to stderr; a scraper every 15 s is noise.
            log.debug("http %s", format % args)

    return Handler


def _is_healthy(healthy: Callable[[], bool]) -> bool:
    try:
        return bool(healthy())
    except Exception as exc:  # a probe that fails is a failed probe, not a 500
        log.warning("health check raised %s", type(exc).__name__)
        return False
