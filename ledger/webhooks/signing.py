"""The signature of a webhook delivery, and its check for receivers written in Python.

``Ledger-Webhook-Signature: v1=<hex>`` where ``<hex>`` is HMAC-SHA256, keyed with the subscription's secret (its
UTF-8 bytes), of ``f"{timestamp}."`` followed by the exact body bytes; ``timestamp`` is the
``Ledger-Webhook-Timestamp`` header (Unix seconds). Signing the timestamp lets a receiver refuse an old delivery
replayed by someone who captured it. The header may carry several comma-separated ``v1=`` values (one per secret
while a secret is being changed); a receiver accepts the delivery if any of them matches.

:func:`verify` is the receiver's side; it reads no clock unless given none (then ``time.time()``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SCHEME: Final = "v1"
ID_HEADER: Final = "Ledger-Webhook-Id"
TIMESTAMP_HEADER: Final = "Ledger-Webhook-Timestamp"
SIGNATURE_HEADER: Final = "Ledger-Webhook-Signature"
DEFAULT_TOLERANCE_SECONDS: Final = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}." + body`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Ledger-Webhook-Signature`` value: ``v1=<hex>``."""
    return f"{SCHEME}={signature(secret, timestamp, body)}"


def verify(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature_value: str | None,
    *,
    now: float | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Whether a delivery is genuine: its ``Ledger-Webhook-Timestamp`` (``timestamp``) is within
    ``tolerance_seconds`` of ``now`` and one ``v1=`` value of ``Ledger-Webhook-Signature`` (``signature_value``)
    is the HMAC of that timestamp and the raw ``body`` under ``secret``. Compare in constant time; parse the body
    only after this returned True::

        from ledger.webhooks.signing import verify
        ok = verify(SECRET, request.body, request.headers.get("Ledger-Webhook-Timestamp"),
                    request.headers.get("Ledger-Webhook-Signature"))
    """
    if not timestamp or not signature_value or not timestamp.isdigit():
        return False
    at = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - at) > tolerance_seconds:
        return False
    expected = signature(secret, at, body)
    found = False
    for part in signature_value.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME and hmac.compare_digest(value.encode(), expected.encode()):
            found = True
    return found
