"""The identity pepper's fingerprint: recorded once in the log, compared on every later start, never the pepper."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.application.pepper import PepperChanged, check_pepper, fingerprint, recorded_fingerprint
from ledger.bootstrap import Settings, build

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PEPPER = b"0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_recorded_once_then_compared() -> None:
    wired = build(Settings(store_url="memory://", reference_program=False))
    store = wired.backend.store
    try:
        assert check_pepper(store, PEPPER, NOW) is True
        assert check_pepper(store, PEPPER, NOW) is False
        with pytest.raises(PepperChanged, match="another identity pepper"):
            check_pepper(store, b"another pepper", NOW)
        recorded = recorded_fingerprint(store)
        assert recorded == fingerprint(PEPPER) and len(store.read_stream("identity-pepper")) == 1
        assert PEPPER.decode() not in recorded and PEPPER.hex() not in recorded
        assert fingerprint(PEPPER) != fingerprint(PEPPER + b"x")
    finally:
        wired.app.close()
