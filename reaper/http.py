"""The daemon's HTTP endpoints: /metrics, /healthz, /readyz, served from a thread of their own.

No handler touches the database: /metrics renders our registry (whose gauges come from the latest
snapshot), /healthz asks whether the schedule loop has ticked lately, /readyz whether the last
database poll worked. TLS, when a certificate is configured, uses the same options as
prometheus-client's own servers (certificate, key, and an optional CA file that then requires
client certificates).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from reaper.errors import ConfigError

StartResponse = Callable[..., Any]
Probe = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate and key, and optionally a CA that client certificates must chain to."""

    certfile: Path
    keyfile: Path
    client_cafile: Path | None = None


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
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

    def __init__(self, app: Any, host: str, port: int, tls: TlsFiles | None = None) -> None:
        try:
            self._server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} (REAPER_METRICS_HOST, REAPER_METRICS_PORT): {exc.strerror}"
            ) from None
        if tls is not None:
            self._server.socket = _tls_context(tls).wrap_socket(self._server.socket, server_side=True)
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
