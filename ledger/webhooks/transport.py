"""One HTTP POST of a delivery, with a timeout, never following a redirect.

:class:`HttpTransport` speaks HTTPS (certificates checked against the system's CAs) and, for tests on this
host only, plain HTTP to a loopback address when allowed. The answer is the status, or why none came; its text
never holds a header value (so never the signature) nor the URL.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

from ledger.application.webhooks import is_loopback

MAX_ANSWER_BYTES: Final = 64 * 1024
"""Of the endpoint's answer, at most this much is read (and then dropped)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None
    """The HTTP status; None when there was no answer (refused, timed out, TLS failure)."""
    error: str = ""

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Transport(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer: ...


class HttpTransport:
    """POSTs over ``http.client``; ``timeout_seconds`` bounds the connection and every read and write."""

    def __init__(self, *, timeout_seconds: float = 10.0, allow_loopback_http: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.timeout = timeout_seconds
        self.allow_loopback_http = allow_loopback_http
        self.tls = tls or ssl.create_default_context()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        parts = urlsplit(url)
        host = parts.hostname or ""
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(host, parts.port, timeout=self.timeout, context=self.tls)
        elif parts.scheme == "http" and self.allow_loopback_http and is_loopback(host):
            connection = http.client.HTTPConnection(host, parts.port, timeout=self.timeout)
        else:
            return Answer(
                None, "refused to send: the URL is not https:// (or loopback http:// with it allowed)"
            )
        try:
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(MAX_ANSWER_BYTES)
            return Answer(response.status, "" if 200 <= response.status < 300 else f"HTTP {response.status}")
        except TimeoutError:
            return Answer(None, f"timed out after {self.timeout:g} s")
        except ConnectionRefusedError:
            return Answer(None, "connection refused")
        except ssl.SSLError as exc:
            return Answer(None, f"TLS: {exc.reason or type(exc).__name__}")
        except (OSError, http.client.HTTPException) as exc:
            return Answer(
                None, f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) else exc}"[:300]
            )
        finally:
            connection.close()
