"""A real HTTP endpoint on 127.0.0.1 for webhook tests, which fails on purpose when told to.

:class:`Receiver` runs ``http.server`` in a thread on a free port and records every request it reads (headers and
body), the failed ones too. Its ``script`` says how to answer the next requests, one entry each: an HTTP status
(``500``), or ``"hang"`` (hold the request until :meth:`Receiver.release` or the receiver stops, so the client's
timeout fires); when the script is empty it answers ``default`` (200). :meth:`Receiver.stop` closes the port (a
delivery then meets a refused connection) and :meth:`Receiver.restart` opens the same port again. With ``tls`` it serves HTTPS with that certificate.
"""

from __future__ import annotations

import ssl
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | str


class Receiver:
    def __init__(self, port: int = 0, *, tls: tuple[Path, Path] | None = None) -> None:
        self.requests: list[Request] = []
        self.script: deque[int | str] = deque()
        self.default: int = 200
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self._tls = tls
        self.restart()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/...``; with ``tls`` (a certificate for localhost and its key),
        ``https://localhost:PORT/...``."""
        if self._tls is not None:
            return f"https://localhost:{self.port}/hooks/ledger"
        return f"http://127.0.0.1:{self.port}/hooks/ledger"

    def accepted(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if isinstance(r.answered, int) and 200 <= r.answered < 300]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` requests were accepted (a condition, not a sleep); False at the timeout."""
        with self._arrived:
            return self._arrived.wait_for(
                lambda: sum(1 for r in self.requests if r.answered == 200) >= count, timeout=timeout
            )

    def release(self) -> None:
        self._released.set()

    def restart(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    answer = receiver.script.popleft() if receiver.script else receiver.default
                if answer == "hang":
                    receiver._released.wait(30)
                with receiver._arrived:
                    receiver.requests.append(Request(self.path, dict(self.headers.items()), body, answer))
                    receiver._arrived.notify_all()
                if answer == "hang":
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._released.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
