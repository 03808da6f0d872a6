"""The HTTP gateway's listener: accepting connections up to the limit, TLS with the gRPC server's certificate
(re-read when its files change), and closing a connection under the thread that reads it."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ledger.entrypoints.grpc.tls import TlsSettings, check_pair
from ledger.entrypoints.http.connect import JSON, error_body
from ledger.entrypoints.http.handler import RequestHandler

if TYPE_CHECKING:
    from ledger.entrypoints.http.gateway import HttpGateway

log = structlog.get_logger("ledger.http")


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # the gateway counts its requests itself (wait_idle)
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], gateway: HttpGateway, *, ipv6: bool) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.gateway = gateway
        super().__init__(address, RequestHandler)

    def take_waiting(self) -> None:
        """Serve the connections the kernel has accepted but :meth:`serve_forever` has not taken yet."""
        self.socket.setblocking(False)
        while True:
            try:
                request, address = self.get_request()
            except OSError:
                return
            request.setblocking(True)
            self.process_request(request, address)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        context = self.gateway.tls_context()
        if context is not None:  # the handshake happens on the connection's own thread, under its time limit
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.gateway.opened():
            _refuse_busy(request, tls=self.gateway.tls_context() is not None)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.gateway.finished(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as exc:  # a connection that broke off (a failed handshake): nothing to answer
            log.debug("http_connection_failed", error=repr(exc))
        finally:
            self.shutdown_request(request)
            self.gateway.finished(request)


def _refuse_busy(sock: socket.socket, *, tls: bool) -> None:
    """All connections are taken: one short answer on a plaintext connection (a TLS one is just closed)."""
    if tls:
        return
    body = error_body("resource_exhausted", "too many HTTP connections; retry later", [])
    head = (f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: {JSON}\r\nContent-Length: {len(body)}\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\n")  # fmt: skip
    try:
        sock.settimeout(0.5)
        sock.sendall(head.encode("ascii") + body)
    except OSError:
        pass


def drop_connection(connection: socket.socket) -> None:
    """Close a connection under the thread reading it (a late or idle client; a stopping server)."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class TlsContexts:
    """The gRPC server's certificate for HTTPS, read again when one of its files changes (as :mod:`tls` does)."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stamps = self._read_stamps()
        self._failed: tuple[tuple[int, int], ...] | None = None
        try:
            self._context = self._load()
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise SystemExit(f"TLS (HTTP): {exc}") from None

    def _paths(self) -> tuple[Path, ...]:
        s = self.settings
        return (s.cert, s.key) + ((s.client_ca,) if s.client_ca is not None else ())

    def _read_stamps(self) -> tuple[tuple[int, int], ...]:
        return tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in self._paths())

    def _load(self) -> ssl.SSLContext:
        s = self.settings
        check_pair(s.cert.read_bytes(), s.key.read_bytes(), f"{s.cert} and {s.key}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(s.cert, s.key)
        if s.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(s.client_ca))
        context.set_alpn_protocols(["http/1.1"])
        return context

    def current(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamps = self._read_stamps()
            except OSError:
                return self._context
            if stamps in (self._stamps, self._failed):
                return self._context
            try:
                self._context = self._load()
            except (OSError, ValueError, ssl.SSLError) as exc:
                if stamps != self._failed:
                    log.error(
                        "tls_reload_failed", error=str(exc), message="the previous certificate stays in use"
                    )
                self._failed = stamps
                return self._context
            self._stamps = stamps
            log.info("tls_reloaded", cert=str(self.settings.cert), listener="http")
            return self._context
