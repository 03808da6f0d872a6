"""The HTTP gateway's request handler: one connection's requests read (path, content type, body, deadline,
headers), handed to the gateway's gRPC call, and answered (with CORS and the Connect error body)."""

from __future__ import annotations

import errno
import socket
import ssl
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Final

import grpc
import structlog
from grpc_health.v1 import health_pb2

from ledger.entrypoints.grpc import forwarded
from ledger.entrypoints.http.connect import (
    JSON,
    PROTO,
    ConnectError,
    decode_request,
    encode_response,
    error_body,
    from_rpc_error,
    invalid,
)

if TYPE_CHECKING:
    from ledger.entrypoints.http.listener import HttpServer

log = structlog.get_logger("ledger.http")

MAX_BODY: Final = 4 * 1024 * 1024
"""The largest request body: the gRPC server's largest message (``grpc.max_receive_message_length``)."""
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


class RequestHandler(BaseHTTPRequestHandler):
    server: HttpServer
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
