"""JSON over HTTP: the Connect protocol's unary calls, forwarded to this process's own gRPC server.

``ledger serve --http-listen HOST:PORT`` (``LEDGER_HTTP_LISTEN``) answers ``POST /loyalty.v1.<Service>/<Method>``
with a protobuf JSON body (``Content-Type: application/json``; ``application/proto`` for binary protobuf) by
making the same call over gRPC on a private Unix socket of the same server (a directory only this user may
enter). So an HTTP call passes everything a gRPC call passes - the shutdown gate, the API key and its role, the
rate limits, the deadline and worker limits, the access line, the metrics and the trace - and gets the same
answer; a failure is answered as a Connect error (:mod:`ledger.entrypoints.http.connect`). The gateway itself
adds only what HTTP needs:

* ``GET /healthz``: the gRPC health service's overall status, 200 ``SERVING`` or 503 (no key needed);
* CORS for the origins configured (``LEDGER_HTTP_CORS_ORIGINS``; none by default), preflights included;
* limits: a body of at most :data:`MAX_BODY` bytes (the gRPC server's largest message), a request line, headers
  and body that arrive within ``read_seconds`` (an idle keep-alive connection is closed after that too), at most
  ``max_connections`` connections served at once (one more is answered ``resource_exhausted`` and closed), and
  the call's deadline (``Connect-Timeout-Ms``, at most the server's ``LEDGER_CALL_TIMEOUT``);
* TLS with the gRPC server's certificate, re-read when its files change, and client certificates when the gRPC
  server requires them; the caller's address and certificate name reach the key checks through
  :mod:`ledger.entrypoints.grpc.forwarded`.

Streaming procedures (ReplayMember, VerifyProgram) are not served over HTTP: ``unimplemented``. On shutdown the
listener closes first; each open connection gets one more answer, with ``Connection: close`` (once the server's
gate is shut, ``unavailable`` with the reason ``SHUTTING_DOWN``: nothing was done); the calls in flight finish;
then the connections still idle are closed.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import grpc
import structlog
from grpc_health.v1 import health_pb2

from ledger.entrypoints.grpc import forwarded
from ledger.entrypoints.grpc.tls import TlsSettings, check_pair
from ledger.entrypoints.http.connect import (
    JSON,
    PROTO,
    ConnectError,
    Procedure,
    decode_request,
    encode_response,
    error_body,
    from_rpc_error,
    invalid,
    procedures,
)

log = structlog.get_logger("ledger.http")

MAX_BODY: Final = 4 * 1024 * 1024
"""The largest request body: the gRPC server's largest message (``grpc.max_receive_message_length``)."""
READ_SECONDS: Final = 10.0
MAX_CONNECTIONS: Final = 64
HEALTH_PATH: Final = "/healthz"
_HEALTH_CHECK: Final = "/grpc.health.v1.Health/Check"
#: The request headers handed on to the gRPC call (the key, the caller's trace); nothing else of HTTP is.
_PASSED_HEADERS: Final = ("authorization", "traceparent", "tracestate")
_ALLOWED_HEADERS: Final = (
    "authorization, content-type, connect-protocol-version, connect-timeout-ms, traceparent, tracestate"
)
#: The Connect code of the HTTP errors the server itself answers before a procedure is known.
_STATUS_CODES: Final = {400: "invalid_argument", 404: "unimplemented", 405: "unimplemented", 408: "deadline_exceeded",
                        411: "invalid_argument", 413: "resource_exhausted", 414: "resource_exhausted",
                        415: "invalid_argument", 431: "resource_exhausted"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class HttpSettings:
    listen: str
    cors_origins: tuple[str, ...] = ()
    call_timeout: float = 30.0
    tls: TlsSettings | None = None
    port_file: str | None = None
    max_connections: int = MAX_CONNECTIONS
    read_seconds: float = READ_SECONDS


class HttpGateway:
    """The HTTP listener: bound when made (so a taken port stops ``serve`` before anything starts), serving once
    :meth:`start` is called with the gRPC server listening on :attr:`grpc_target`."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self.procedures = procedures()
        self._tls = _TlsContexts(settings.tls) if settings.tls is not None else None
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._lock = threading.Condition()
        # a connection -> since when it waits for a request (None: being answered)
        self._connections: dict[socket.socket, float | None] = {}
        self._busy = 0  # requests being answered
        self._closing = False
        self._stopped = False
        host, _, port = settings.listen.rpartition(":")
        host = host.strip("[]")
        try:
            self._server = _Server((host, int(port)), self, ipv6=":" in host)
        except OSError as exc:
            raise SystemExit(f"ledger serve: --http-listen {settings.listen}: {exc.strerror}") from None
        self.port: int = self._server.server_address[1]
        self._dir = Path(tempfile.mkdtemp(prefix="ledger-http-"))  # mode 0700: the socket is this user's only
        self.grpc_target = f"unix:{self._dir / 'grpc.sock'}"
        self._channel: grpc.Channel | None = None
        self._calls: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve (the gRPC server listens on :attr:`grpc_target` by now); write the port file."""
        self._channel = grpc.insecure_channel(
            self.grpc_target, options=[("grpc.max_receive_message_length", -1)]
        )
        for target, name in ((self._server.serve_forever, "http-accept"), (self._reap, "http-reaper")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.settings.port_file:
            tmp = Path(f"{self.settings.port_file}.tmp")
            tmp.write_text(str(self.port))
            tmp.replace(self.settings.port_file)
        log.info("http_serving", listen=self.settings.listen, port=self.port, tls=self._tls is not None,
                 cors_origins=list(self.settings.cors_origins))  # fmt: skip

    def close(self) -> None:
        """Stop accepting connections. The connections open get one more answer each, with ``Connection: close``
        (a call that arrives once the server's gate is shut: ``unavailable``, ``SHUTTING_DOWN``)."""
        self._server.shutdown()
        self._server.take_waiting()  # connected already, in the listen queue: answered, not reset by the close
        self._server.server_close()
        # Only now do answers say ``Connection: close``: a client told so earlier would connect again at once and
        # could land in the listen queue between the last accept and the close, to be reset by the kernel.
        with self._lock:
            self._closing = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being answered (True), or ``timeout`` (False)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def stop(self) -> None:
        """After :meth:`close` and :meth:`wait_idle`: the connections still waiting for a request are closed, and
        a request that comes after all is answered ``unavailable``; then the channel and the socket's directory go."""
        with self._lock:
            self._stopped = True
        self._drop_waiting(time.monotonic(), all_waiting=True)
        if self._channel is not None:
            self._channel.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- connections -------------------------------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing

    def opened(self) -> bool:
        """A connection arrives: True when there is a slot for it."""
        return self._slots.acquire(blocking=False)

    def finished(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)
        self._slots.release()

    def waiting(self, connection: socket.socket) -> None:
        """``connection`` waits for a request (or the rest of one): closed if that takes too long."""
        with self._lock:
            self._connections[connection] = time.monotonic()
            drop = self._stopped
        if drop:
            _drop(connection)

    def answering(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections[connection] = None
            self._busy += 1

    def answered(self) -> None:
        with self._lock:
            self._busy -= 1
            if not self._busy:
                self._lock.notify_all()

    def _reap(self) -> None:
        while not self._closing:
            time.sleep(min(0.5, self.settings.read_seconds / 4))
            self._drop_waiting(time.monotonic() - self.settings.read_seconds)

    def _drop_waiting(self, since: float, *, all_waiting: bool = False) -> None:
        with self._lock:
            late = [
                c for c, at in self._connections.items() if at is not None and (all_waiting or at <= since)
            ]
        for connection in late:
            _drop(connection)

    def tls_context(self) -> ssl.SSLContext | None:
        return self._tls.current() if self._tls is not None else None

    # -- calls -------------------------------------------------------------------------------------------------------

    def procedure(self, path: str) -> Procedure:
        found = self.procedures.get(path)
        if found is None:
            raise ConnectError("unimplemented", f"no procedure {path}: POST /<package>.<Service>/<Method>, e.g."
                               " /loyalty.v1.MemberQueryService/GetBalance", status=404)  # fmt: skip
        if found.streaming:
            raise ConnectError("unimplemented", f"{path.lstrip('/')} streams its answer: it is served over gRPC"
                               " only; over HTTP only unary procedures are")  # fmt: skip
        return found

    def call(
        self, path: str, request: bytes, metadata: list[tuple[str, str]], timeout: float | None
    ) -> bytes:
        """Make the call on the gRPC server; its ``grpc.RpcError`` is the caller's to map."""
        if self._stopped:
            raise ConnectError("unavailable", "the server is shutting down; retry on another server")
        call = self._calls.get(path)
        if call is None:
            assert self._channel is not None, "start() first"
            call = self._calls[path] = self._channel.unary_unary(  # bytes in, bytes out
                path, request_serializer=None, response_deserializer=None
            )
        ceiling = self.settings.call_timeout + 1.0  # the server's own deadline answers first
        answer: bytes = call(
            request, timeout=min(timeout, ceiling) if timeout else ceiling, metadata=tuple(metadata)
        )
        return answer

    def allowed_origin(self, origin: str) -> bool:
        return origin in self.settings.cors_origins or "*" in self.settings.cors_origins


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # the gateway counts its requests itself (wait_idle)
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], gateway: HttpGateway, *, ipv6: bool) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.gateway = gateway
        super().__init__(address, _Handler)

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


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "loyalty-ledger"

    # -- connection --------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        self.gateway = self.server.gateway
        self._client_cn = ""
        self.gateway.waiting(self.request)
        super().setup()
        # every read and write of the connection
        self.connection.settimeout(self.gateway.settings.read_seconds)
        # an answer is headers and body in two writes: without this the body waits for the client's delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()
            self._client_cn = _common_name(self.connection.getpeercert())

    def handle_one_request(self) -> None:
        self.gateway.waiting(self.request)
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        """The access line is the gRPC call's (``ledger.access``); the HTTP server writes none of its own."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (a malformed request line, an unknown HTTP method) as Connect errors."""
        self.close_connection = True
        if not str(getattr(self, "request_version", "")).startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"  # a status line even for a request line that was not HTTP
        text = message or (self.responses.get(code, ("error",))[0])
        self._answer(code, error_body(_STATUS_CODES.get(code, "unknown"), text, []))

    # -- requests ----------------------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        try:
            path = self.path.split("?", 1)[0]
            procedure = self.gateway.procedure(path)
            content_type = self._content_type()
            body = self._body()
        except ConnectError as refusal:
            self._refuse(refusal)
            return
        self.gateway.answering(self.request)
        try:
            try:
                request = decode_request(procedure, content_type, body)
                answer = self.gateway.call(path, request, self._metadata(), self._timeout())
            except ConnectError as refusal:
                self._refuse(refusal)
                return
            except grpc.RpcError as failed:
                status, error, retry_after = from_rpc_error(failed)
                self._answer(status, error, extra=[("Retry-After", str(retry_after))] if retry_after else [])
                return
            except Exception as exc:
                error_id = uuid.uuid4().hex[:16]
                log.error(
                    "http_call_failed", error_id=error_id, procedure=path, error=repr(exc), exc_info=exc
                )
                self._answer(500, error_body("internal", f"internal error (error id {error_id})", []))
                return
            self._answer(200, encode_response(procedure, content_type, answer), content_type)
        finally:
            self.gateway.answered()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != HEALTH_PATH:
            self._refuse(self._no_such(path, "GET"))
            return
        self.gateway.answering(self.request)
        try:
            try:
                reply = health_pb2.HealthCheckResponse.FromString(
                    self.gateway.call(
                        _HEALTH_CHECK, health_pb2.HealthCheckRequest().SerializeToString(), [], 3.0
                    )
                )
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError:
                status = "UNKNOWN"
            body = f'{{"status": "{status}"}}'.encode("ascii")
            self._answer(200 if status == "SERVING" else 503, body)
        finally:
            self.gateway.answered()

    def do_OPTIONS(self) -> None:  # a CORS preflight
        origin = self.headers.get("Origin", "")
        method = self.headers.get("Access-Control-Request-Method", "")
        if not origin or not self.gateway.allowed_origin(origin) or method not in ("POST", "GET"):
            self._refuse(ConnectError("permission_denied", f"origin {origin!r} may not call this server"
                                      if origin else "OPTIONS is only a CORS preflight (send Origin)"))  # fmt: skip
            return
        self._answer(204, b"", extra=[
            ("Access-Control-Allow-Methods", "POST, GET"), ("Access-Control-Allow-Headers", _ALLOWED_HEADERS),
            ("Access-Control-Max-Age", "7200"),
        ])  # fmt: skip

    def do_PUT(self) -> None:
        self._refuse(self._no_such(self.path.split("?", 1)[0], "PUT"))

    do_DELETE = do_PATCH = do_HEAD = do_PUT

    def _no_such(self, path: str, method: str) -> ConnectError:
        if path in self.gateway.procedures:
            return ConnectError(
                "unimplemented", f"{method} {path}: procedures are called with POST", status=405
            )
        return ConnectError("unimplemented", f"no such path {path}", status=404)

    # -- reading -----------------------------------------------------------------------------------------------------

    def _content_type(self) -> str:
        given = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if given in (JSON, PROTO):
            return given
        raise ConnectError("invalid_argument", f"Content-Type {given or '(none)'!r}: send {JSON} (protobuf JSON)"
                           f" or {PROTO}")  # fmt: skip

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise ConnectError("invalid_argument", "send the body with a Content-Length, not chunked")
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit():
            self.close_connection = True
            raise invalid(f"Content-Length {text!r} is not a number", "Content-Length")
        length = int(text)
        if length > MAX_BODY:
            self.close_connection = True  # the body is not read: the connection cannot carry another request
            raise ConnectError(
                "resource_exhausted", f"the body is {length} bytes; at most {MAX_BODY} are taken"
            )
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise ConnectError("invalid_argument", f"the body ended after {len(body)} of {length} bytes")
        return body

    def _timeout(self) -> float | None:
        text = self.headers.get("Connect-Timeout-Ms")
        if text is None:
            return None
        if not (text.isdigit() and 0 < len(text) <= 10) or int(text) == 0:
            raise invalid(
                f"Connect-Timeout-Ms {text!r}: a positive number of milliseconds", "Connect-Timeout-Ms"
            )
        return int(text) / 1000

    def _metadata(self) -> list[tuple[str, str]]:
        out = [(forwarded.TOKEN_HEADER, forwarded.TOKEN), (forwarded.PEER_HEADER, _peer(self.client_address))]
        if self._client_cn:
            out.append((forwarded.CN_HEADER, self._client_cn))
        for name in _PASSED_HEADERS:
            value = self.headers.get(name)
            # grpc takes printable ASCII only
            if value is not None and value.isascii() and value.isprintable():
                out.append((name, value.strip()))
        return out

    # -- answering ---------------------------------------------------------------------------------------------------

    def _refuse(self, refusal: ConnectError) -> None:
        """A refusal of the gateway's own (the call never reached gRPC, so it has no access line): logged here."""
        path = self.path.split("?", 1)[0] if getattr(self, "path", "") else ""
        known = path in self.gateway.procedures or path == HEALTH_PATH
        log.info("http_refused", path=path if known else "(unknown)", method=self.command, code=refusal.code)
        status = refusal.http_status
        self._answer(status, refusal.body(), extra=[("Allow", "POST")] if status == 405 else [])

    def _answer(self, status: int, body: bytes, content_type: str = JSON,
                extra: Iterable[tuple[str, str]] = ()) -> None:  # fmt: skip
        if self.gateway.closing:
            self.close_connection = True
        try:
            self.send_response(status)
            if body or status != 204:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            origin = self.headers.get("Origin") if getattr(self, "headers", None) else None
            if self.gateway.settings.cors_origins:
                self.send_header("Vary", "Origin")
            if origin and self.gateway.allowed_origin(origin):
                self.send_header("Access-Control-Allow-Origin", origin)
            for name, value in extra:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, None):
                log.debug("http_write_failed", error=repr(exc))
            self.close_connection = True


def _drop(connection: socket.socket) -> None:
    """Close a connection under the thread reading it (a late or idle client; a stopping server)."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


def _peer(address: Any) -> str:
    """The caller's address as grpc names a peer without its port: ``ipv4:10.0.0.7``, ``ipv6:[::1]``."""
    host = str(address[0]) if isinstance(address, tuple) and address else "unknown"
    return f"ipv6:[{host}]" if ":" in host else f"ipv4:{host}"


def _common_name(certificate: Any) -> str:
    for entry in (certificate or {}).get("subject", ()):
        for key, value in entry:
            if key == "commonName":
                return str(value)
    return ""


class _TlsContexts:
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
