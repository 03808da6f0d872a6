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

import shutil
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
import structlog

from ledger.entrypoints.grpc.tls import TlsSettings
from ledger.entrypoints.http.connect import ConnectError, Procedure, procedures
from ledger.entrypoints.http.handler import HEALTH_PATH, MAX_BODY
from ledger.entrypoints.http.listener import HttpServer, TlsContexts, drop_connection

__all__ = ["HEALTH_PATH", "MAX_BODY", "MAX_CONNECTIONS", "READ_SECONDS", "HttpGateway", "HttpSettings"]

log = structlog.get_logger("ledger.http")

READ_SECONDS: Final = 10.0
MAX_CONNECTIONS: Final = 64


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
        self._tls = TlsContexts(settings.tls) if settings.tls is not None else None
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
            self._server = HttpServer((host, int(port)), self, ipv6=":" in host)
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
            drop_connection(connection)

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
            drop_connection(connection)

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
