"""API keys on the log: issued with only a slow hash kept, refused once revoked or expired, on every process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ledger.adapters.memory.store import InMemoryEventStore
from ledger.application.clock import ManualClock
from ledger.application.keys import REFRESH_SECONDS, KeyRefused, KeyRing
from ledger.domain.streams import KEYS_STREAM

T = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_log_keeps_a_slow_hash_never_the_secret() -> None:
    store = InMemoryEventStore()
    ring = KeyRing(store, ManualClock(T))
    key, token = ring.issue("p1", "pos", store_id="S-1", name="till")
    secret = token.split("_", 2)[2]
    [stored] = store.read_stream(KEYS_STREAM)
    assert secret.encode() not in stored.payload
    assert json.loads(stored.payload)["secret_hash"].startswith("$argon2id$")
    principal = ring.authenticate(token)
    assert principal is not None and (principal.key_id, principal.role, principal.store_id) == (key.key_id, "pos", "S-1")
    assert ring.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert ring.authenticate(f"lk_{key.key_id}_") is None
    assert ring.authenticate("Bearer nonsense") is None


def test_a_revocation_on_one_process_reaches_another_within_the_refresh_interval() -> None:
    store = InMemoryEventStore()
    ticks = Monotonic()
    here = KeyRing(store, ManualClock(T), monotonic=ticks)
    there = KeyRing(store, ManualClock(T), monotonic=ticks)
    key, token = there.issue("p1", "auditor")
    assert here.authenticate(token) is None  # unknown ids re-read the keys at most every 0.1 s
    ticks.now += 0.2
    assert here.authenticate(token) is not None  # then a key issued elsewhere works at once
    there.revoke(key.key_id)
    assert there.authenticate(token) is None
    assert here.authenticate(token) is not None  # not yet re-read here...
    ticks.now += REFRESH_SECONDS + 0.01  # ...but within the refresh interval
    assert here.authenticate(token) is None


def test_an_expired_key_is_refused() -> None:
    clock = ManualClock(T)
    ring = KeyRing(InMemoryEventStore(), clock)
    _, token = ring.issue("p1", "checkout", expires_at=T + timedelta(days=1))
    assert ring.authenticate(token) is not None
    clock.set(T + timedelta(days=1))
    assert ring.authenticate(token) is None


@pytest.mark.parametrize(
    ("program", "role", "store"),
    [("*", "pos", ""), ("p1", "root", ""), ("p1", "auditor", "S-1")],
)
def test_keys_that_cannot_exist_are_refused(program: str, role: str, store: str) -> None:
    with pytest.raises(KeyRefused):
        KeyRing(InMemoryEventStore(), ManualClock(T)).issue(program, role, store_id=store)



def test_callers_arriving_together_with_a_new_key_share_one_argon2_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import ledger.application.keys as keys_module

    ring = KeyRing(InMemoryEventStore(), ManualClock(T))
    _, token = ring.issue("p1", "pos")
    real = keys_module._HASHER
    checks: list[str] = []

    class Counting:
        def verify(self, hashed: str, secret: str) -> bool:
            checks.append(secret)
            return real.verify(hashed, secret)

    monkeypatch.setattr(keys_module, "_HASHER", Counting())
    start = threading.Barrier(8)
    answers: list[object] = []

    def call() -> None:
        start.wait()
        answers.append(ring.authenticate(token))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(checks) == 1 and len(answers) == 8 and all(a is not None for a in answers)
