"""Channel identities (card number, phone hash, open id) are kept only as keyed hashes."""

from __future__ import annotations

import hashlib
import hmac

IDENTITY_KINDS = ("card_number", "phone_hash", "open_id", "union_id", "external_id")


def identity_digest(pepper: bytes, program_id: str, kind: str, value: str) -> str:
    """``kind:hex`` of HMAC-SHA256(pepper, program|kind|value): stable, pseudonymous, useless without the pepper."""
    mac = hmac.new(pepper, f"{program_id}\x1f{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind}:{mac}"
