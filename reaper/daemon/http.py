"""The daemon's HTTP endpoints: /metrics, /healthz, /readyz, served from a thread of their own.

No handler touches the database: /metrics renders our registry (whose gauges come from the latest
snapshot), /healthz asks whether the schedule loop has ticked lately, /readyz whether the last
database poll worked. TLS, when a certificate is configured, uses the same options as
prometheus-client's own servers (certificate, key, and an optional CA file that then requires
client certificates).
"""

from __future__ import annotations

import math
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from loguru import logger
from prometheus_client import CollectorRegistry, make_wsgi_app

from reaper.errors import ConfigError

REFUSAL_LOG_SECONDS = 60.0
StartResponse = Callable[..., Any]
Probe = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate and key, and optionally a CA that client certificates must chain to."""

    certfile: Path
    keyfile: Path
    client_cafile: Path | None = None


@dataclass(frozen=True)
class HttpLimits:
    """How long the server waits on a client, and how many clients it serves at once."""

    # Each read (and the TLS handshake) must make progress within this: an idle or half-sent
    # request is dropped instead of holding its thread for as long as the client stays.
    read_timeout_seconds: float = 10.0
    # Connections beyond this are closed at once: a thread each, and scrapes need one or two.
    max_connections: int = 32


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bound(HttpLimits())

    def bound(self, limits: HttpLimits) -> None:
        """Serve with ``limits``."""
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._refused_logged_at = -math.inf

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread of its own, if one of ``max_connections`` is free; else close it."""
        if not self._slots.acquire(blocking=False):
            self._log_refusal(client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out, hung up or failed its TLS handshake: nothing to print a traceback for."""
        error = sys.exc_info()[1]
        logger.debug(f"metrics HTTP connection from {client_address[0]} dropped: {type(error).__name__}: {error}")

    def _log_refusal(self, client_address: Any) -> None:
        now = time.monotonic()
        if now - self._refused_logged_at >= REFUSAL_LOG_SECONDS:  # at most once a minute, whatever the flood
            self._refused_logged_at = now
            logger.warning(
                f"metrics HTTP server: {self.limits.max_connections} connections open, refusing more "
                f"(this one from {client_address[0]})"
            )


class _QuietHandler(WSGIRequestHandler):
    server: _ThreadingServer

    def setup(self) -> None:
        """Bound every read by the read time-out; a TLS handshake happens here, in this connection's thread."""
        super().setup()
        self.connection.settimeout(self.server.limits.read_timeout_seconds)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Scrapes every few seconds would flood the log; stay quiet."""


def build_app(registry: CollectorRegistry, healthy: Probe, ready: Probe, page: Callable[[], str] | None = None) -> Any:
    """Return the WSGI application serving the daemon's endpoints."""
    metrics_app = make_wsgi_app(registry)

    def probe_response(check: Probe, start_response: StartResponse) -> Iterable[bytes]:
        ok, detail = check()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{'ok' if ok else 'unavailable'}: {detail}\n".encode()]

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            # prometheus_client's WSGI app is unannotated.
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]  # see above
        if path == "/healthz":
            return probe_response(healthy, start_response)
        if path == "/readyz":
            return probe_response(ready, start_response)
        if path == "/" and page is not None:
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [page().encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]

    return app


def _tls_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile=tls.certfile, keyfile=tls.keyfile)
        if tls.client_cafile is not None:
            context.load_verify_locations(cafile=tls.client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the metrics TLS certificate or key (REAPER_METRICS_CERTFILE): {exc}") from None
    return context


class MetricsServer:
    """The HTTP server in a background thread; ``port`` is the one really bound (0 picks a free one)."""

    def __init__(
        self, app: Any, host: str, port: int, tls: TlsFiles | None = None, limits: HttpLimits = HttpLimits()
    ) -> None:
        try:
            self._server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} (REAPER_METRICS_HOST, REAPER_METRICS_PORT): {exc.strerror}"
            ) from None
        self._server.bound(limits)
        if tls is not None:
            # Not on accept: the serving thread would wait there on a client that never completes it.
            self._server.socket = _tls_context(tls).wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.host = host
        self.port = int(self._server.server_address[1])
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, name="reaper-http", daemon=True)

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
