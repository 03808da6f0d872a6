"""Program writes share the member commands' write path: one idempotency fingerprint, one event-id scheme (a
random UUID for every new event), one retry policy; program streams stored before (``{program}:{n}`` ids, JSON
fingerprints) still load, verify and answer their retries."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.application.idempotency import fingerprint
from ledger.application.program_writes import AdvanceClock, CreateProgram, PublishPolicy
from ledger.application.retry import WriteRetry
from ledger.application.writer import Contended
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain import program as prog
from ledger.domain.errors import Conflict
from ledger.domain.streams import program_stream
from ledger.eventlog.chain import verify_stream
from ledger.eventlog.port import AppendBatch, CommandRecord, NewEvent, StreamAppend, WrongExpectedVersion
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "progs"
SETTINGS = Settings(store_url="memory://", reference_program=False)


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = build(SETTINGS, ManualClock(START))
    try:
        yield w
    finally:
        w.app.close()


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def test_every_new_event_of_a_program_a_member_or_a_stock_gets_a_random_uuid(wired: Wired) -> None:
    app = wired.app
    app.create_program(P, "Programs", reference_document(), "test", START, "create")
    app.publish_policy(P, reference_document(), START + timedelta(days=1), "publish")
    app.enroll(P, "m1", [], None, "e1")
    line = OrderLine("l1", "SKU-TOY", "toys", 1, 100_00)
    app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", "O1", (line,), 100_00), "buy"))
    app.advance_clock(P, START + timedelta(days=8), "clock")  # the clock move, and the lot's activation
    ids = [e.event_id for e in app.store.read_all()]
    types = {e.type for e in app.store.read_all()}
    assert {"ProgramCreated", "PolicyPublished", "ClockAdvanced", "PurchaseRecorded", "LotActivated"} <= types
    assert all(_is_uuid(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_a_program_write_is_fingerprinted_as_a_member_command_is() -> None:
    create = CreateProgram("Programs", "doc", "test", START)
    assert fingerprint(create) == hashlib.sha256(f"{create!r}|".encode()).hexdigest()
    assert fingerprint(PublishPolicy("doc", None)) != fingerprint(PublishPolicy("doc", START))
    assert fingerprint(AdvanceClock(START)) != fingerprint(AdvanceClock(START + timedelta(seconds=1)))


def _store_a_program_as_recorded_before(w: Wired, program_id: str) -> None:
    """A program stream as the ledger wrote it before program writes joined the write path: ``{id}:{n}`` event
    ids and the JSON text of the request as the key's fingerprint."""
    created = prog.create_program(
        prog.ProgramState(program_id=program_id),
        name="Old",
        document=reference_document(),
        clock="test",
        test_time=START,
        now=START,
    )
    new = [
        NewEvent(
            event_id=f"{program_id}:1",
            type=e.type,
            schema_version=1,
            occurred_at=e.at,
            recorded_at=START,
            policy_version=None,
            idempotency_key="create-old",
            correlation_id=None,
            causation_id=None,
            actor={"channel": "operator_console"},
            payload=prog.encode(e),
        )
        for e in created
    ]
    request = {
        "op": "create",
        "name": "Old",
        "document": reference_document(),
        "clock": "test",
        "test_time": START,
    }
    fp = json.dumps(request, sort_keys=True, default=str)
    record = CommandRecord(program_id, "create-old", fp, b"{}", START, program_stream(program_id))
    w.backend.store.append(AppendBatch([StreamAppend(program_stream(program_id), 0, new)], [record]))


def test_a_program_stored_before_loads_answers_its_retry_verifies_and_takes_new_events() -> None:
    first = build(SETTINGS, ManualClock(START))
    _store_a_program_as_recorded_before(first, "old")
    first.app.close()
    w = build(SETTINGS, ManualClock(START), backend=first.backend)  # the ledger started again on that store
    try:
        app = w.app
        assert app.program("old").name == "Old"
        # The retry of the create recorded with the JSON fingerprint is the same request: its first answer.
        again = app.create_program("old", "Old", reference_document(), "test", START, "create-old")
        assert again.version == 1
        with pytest.raises(Conflict):
            app.create_program("old", "Renamed", reference_document(), "test", START, "create-old")
        app.advance_clock("old", START + timedelta(days=1), "clock-old")
        app.enroll("old", "m1", [], None, "e1")
        stored = list(app.store.read_stream(program_stream("old")))
        assert stored[0].event_id == "old:1"  # stored ids stay as they are
        assert _is_uuid(stored[1].event_id)
        assert verify_stream(stored) is None  # the chain runs on through the old id and the new
        assert app.verify_member("old", "m1").ok
    finally:
        w.app.close()


def test_a_program_write_refused_for_a_conflict_is_decided_again(
    wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = wired.app
    app.create_program(P, "Programs", reference_document(), "test", START, "create")
    real = app.store.append
    calls: list[Any] = []

    def refuse_once(batch: AppendBatch, *args: Any, **kwargs: Any) -> Any:
        calls.append(batch)
        if len(calls) == 1:
            raise WrongExpectedVersion(program_stream(P), 1, 2)
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(app.store, "append", refuse_once)
    moved = app.advance_clock(P, START + timedelta(days=1), "clock")
    assert moved["now"] == START + timedelta(days=1)
    assert len(calls) == 2


def test_a_program_write_that_keeps_conflicting_is_contended_after_the_policy_s_attempts(
    wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = wired.app
    app.create_program(P, "Programs", reference_document(), "test", START, "create")
    calls: list[Any] = []

    def refuse(batch: AppendBatch, *args: Any, **kwargs: Any) -> Any:
        calls.append(batch)
        raise WrongExpectedVersion(program_stream(P), 1, 2)

    monkeypatch.setattr(app.store, "append", refuse)
    with pytest.raises(Contended):
        app.publish_policy(P, reference_document(), START + timedelta(days=1), "publish")
    assert len(calls) == WriteRetry().max_attempts
    assert app.program(P).policies.latest.version == 1  # nothing of it was kept
