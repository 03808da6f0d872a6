"""Calls the HTTP gateway forwards: who the HTTP caller is, believed only from the gateway of this process.

The JSON-over-HTTP gateway (:mod:`ledger.entrypoints.http.gateway`) forwards every HTTP call as a gRPC call on a
private Unix socket, so grpc sees the socket as the peer of all of them. The gateway says who the HTTP caller
was in two metadata entries: the caller's address (:data:`PEER_HEADER`, as ``ipv4:10.0.0.7``; the failed key
check limit is per address) and, with ``--tls-store-from-cn``, its client certificate's common name
(:data:`CN_HEADER`). Both are believed only when the call also carries :data:`TOKEN`, a secret made when the
process starts and known only to its own gateway: a gRPC caller sending those headers itself is ignored.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, Final

TOKEN: Final = secrets.token_hex(16)
"""This process's gateway secret: never logged, never sent outside the process (the socket is private)."""

TOKEN_HEADER: Final = "x-ledger-gateway"
PEER_HEADER: Final = "x-ledger-http-peer"
CN_HEADER: Final = "x-ledger-http-client-cn"


def forwarded(metadata: Any) -> dict[str, str] | None:
    """The gateway's entries of a call's metadata (``PEER_HEADER``, ``CN_HEADER``), or None when the call did not
    come through this process's gateway."""
    found: dict[str, str] = {}
    token = ""
    for key, value in metadata or ():
        if not isinstance(value, str):
            continue
        if key == TOKEN_HEADER:
            token = value
        elif key in (PEER_HEADER, CN_HEADER):
            found[key] = value
    if not token or not hmac.compare_digest(token, TOKEN):
        return None
    return found
