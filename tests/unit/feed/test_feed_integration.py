"""The pure mapping of stored ledger events to the feed's integration events and subjects."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from ledger.domain import events as ev
from ledger.domain import program as prog
from ledger.domain.streams import parse_stream, signal_stream
from ledger.eventlog.port import NewEvent, StoredEvent
from ledger.feed.integration import (
    ENVELOPE_VERSION,
    LEFT_OUT,
    subject_of,
    to_integration_event,
    to_message,
)
from ledger.feed.signals import MemberFacts, due_signals, signal_event
from loyalty.v1 import feed_pb2

T = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


def stored(stream_id: str, new: NewEvent, *, version: int = 1, position: int = 7) -> StoredEvent:
    fields = {name: getattr(new, name) for name in NewEvent.__dataclass_fields__}
    return StoredEvent(**fields, stream_id=stream_id, version=version, position=position, prev_hash=b"", hash=b"")


def new(event: ev.MemberEvent | prog.ProgramEvent, payload: bytes, *, policy_version: int | None = 3) -> NewEvent:
    return NewEvent(
        event_id="e-1",
        type=event.type,
        schema_version=1,
        occurred_at=T,
        recorded_at=T + timedelta(seconds=1),
        policy_version=policy_version,
        idempotency_key="k",
        correlation_id="corr-1",
        causation_id=None,
        actor={"channel": "pos", "operator_id": "op-3"},
        payload=payload,
    )


ENROLLED = ev.MemberEnrolled(at=T, member_id="m-1", identities=("card_number:abc",), tier="regular", policy_version=3)
ADJUSTED = ev.PointsAdjusted(
    at=T,
    points=50,
    reason_code="GOODWILL",
    note="called by Ms Wang on 138...",
    operator_id="op-3",
    lot=None,
    debits=(),
    arrears_added=0,
    arrears_repaid=0,
    policy_version=3,
)


@pytest.mark.parametrize(
    ("stream_id", "expected"),
    [
        ("member-little_sprout-m-1", ("member", "little_sprout", "m-1")),
        ("member-p-a-b", ("member", "p", "a-b")),
        ("program-little_sprout", ("program", "little_sprout", "")),
        ("signal-little_sprout", ("signal", "little_sprout", "")),
        ("member-p", None),
        ("member--m", None),
        ("program-", None),
        ("other-p", None),
    ],
)
def test_parse_stream(stream_id: str, expected: tuple[str, str, str] | None) -> None:
    assert parse_stream(stream_id) == expected


def test_a_member_event_maps_to_a_versioned_envelope() -> None:
    s = stored("member-little_sprout-m-1", new(ENROLLED, ev.encode(ENROLLED)), version=1, position=42)
    message = to_integration_event(s)
    assert message is not None
    assert message.event_id == "e-1"
    assert message.envelope_version == ENVELOPE_VERSION == 1
    assert message.kind == feed_pb2.INTEGRATION_EVENT_KIND_MEMBER_EVENT
    assert (message.program_id, message.member_id, message.stream_id) == ("little_sprout", "m-1", s.stream_id)
    assert (message.stream_version, message.position) == (1, 42)
    assert (message.event_type, message.payload_version, message.policy_version) == ("MemberEnrolled", 1, 3)
    assert message.occurred_at.ToDatetime(tzinfo=UTC) == T
    assert message.recorded_at.ToDatetime(tzinfo=UTC) == T + timedelta(seconds=1)
    assert message.correlation_id == "corr-1"
    assert not message.HasField("signal")
    assert json.loads(message.payload_json) == {
        "at": "2026-03-10T02:00:00Z",
        "member_id": "m-1",
        "tier": "regular",
        "policy_version": 3,
        "profile_stored": None,
        "type": "MemberEnrolled",
    }
    assert subject_of(message) == "loyalty.v1.little_sprout.member.MemberEnrolled"
    assert subject_of(message, "t.x") == "t.x.little_sprout.member.MemberEnrolled"


def test_no_identity_free_text_or_actor_reaches_the_feed() -> None:
    s = stored("member-p-m-1", new(ADJUSTED, ev.encode(ADJUSTED)))
    message = to_integration_event(s)
    assert message is not None
    body = json.loads(message.payload_json)
    assert "note" not in body and body["reason_code"] == "GOODWILL" and body["points"] == 50
    data = message.SerializeToString()
    assert b"Wang" not in data and b"op-3" in data  # operator ids are pseudonymous staff ids in the payload
    enrolled = to_integration_event(stored("member-p-m-1", new(ENROLLED, ev.encode(ENROLLED))))
    assert enrolled is not None and b"card_number" not in enrolled.SerializeToString()
    assert set(LEFT_OUT["MemberEnrolled"]) == {"identities"}


def test_a_policy_document_is_replaced_by_its_hash() -> None:
    published = prog.PolicyPublished(at=T, version=2, effective_from=T, document="points: {}\n")
    s = stored("program-p", new(published, prog.encode(published), policy_version=None), version=3)
    message = to_integration_event(s)
    assert message is not None
    assert message.kind == feed_pb2.INTEGRATION_EVENT_KIND_PROGRAM_EVENT
    assert (message.member_id, message.policy_version) == ("", 0)
    body = json.loads(message.payload_json)
    assert "document" not in body
    assert body["document_sha256"] == hashlib.sha256(b"points: {}\n").hexdigest()
    assert subject_of(message) == "loyalty.v1.p.program.PolicyPublished"


def test_a_signal_event_carries_the_typed_signal() -> None:
    facts = MemberFacts(program_id="p", member_id="m-1", last_activity_at=T - timedelta(days=31))
    [signal] = due_signals(facts, T)
    s = stored(signal_stream("p"), signal_event(signal, T), version=5, position=99)
    message = to_integration_event(s)
    assert message is not None
    assert message.kind == feed_pb2.INTEGRATION_EVENT_KIND_LIFECYCLE_SIGNAL
    assert message.event_id == message.signal.signal_id == signal.signal_id
    assert message.member_id == message.signal.member_id == "m-1"
    assert message.signal.kind == feed_pb2.LIFECYCLE_SIGNAL_KIND_INACTIVE_30_DAYS
    assert message.signal.inactive_days == 31
    assert message.signal.last_activity_at.ToDatetime(tzinfo=UTC) == T - timedelta(days=31)
    assert message.signal.reference_at == message.signal.last_activity_at
    assert not message.signal.HasField("expires_at")
    assert subject_of(message) == "loyalty.v1.p.signal.inactive_30_days"


def test_to_message_headers_and_skipped_streams() -> None:
    s = stored("member-p-m-1", new(ENROLLED, ev.encode(ENROLLED)), position=9)
    message = to_message(s, "feed.x")
    assert message is not None
    assert message.subject == "feed.x.p.member.MemberEnrolled"
    assert message.msg_id == message.headers["Nats-Msg-Id"] == "e-1"
    assert message.headers["Loyalty-Position"] == "9" and message.position == 9
    assert feed_pb2.IntegrationEvent.FromString(message.data).event_id == "e-1"
    assert to_message(stored("elsewhere", new(ENROLLED, ev.encode(ENROLLED)))) is None
