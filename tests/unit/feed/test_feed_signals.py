"""The lifecycle signal rules (pure) and their idempotent recording in the event log."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from ledger.adapters.memory.store import InMemoryEventStore
from ledger.domain.streams import signal_stream
from ledger.eventlog.port import ANY, AppendBatch, CommandRecord, NewEvent, StreamAppend
from ledger.feed.signal_scan import raise_signals
from ledger.feed.signals import (
    SIGNAL_EVENT_TYPE,
    ExpiringLot,
    MemberFacts,
    SignalKind,
    SignalRules,
    due_signals,
    signal_command_program,
)

NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def facts(**kw: object) -> MemberFacts:
    base: dict[str, object] = {"program_id": "p", "member_id": "m1", "tier": "gold", "last_activity_at": NOW - DAY}
    base.update(kw)
    return MemberFacts(**base)  # type: ignore[arg-type]


def kinds(f: MemberFacts, now: datetime = NOW) -> list[SignalKind]:
    return [s.kind for s in due_signals(f, now)]


def test_an_active_member_with_nothing_due_gets_no_signal() -> None:
    assert due_signals(facts(lots=(ExpiringLot(100, NOW + 31 * DAY),)), NOW) == []


def test_points_expiring_within_30_days_sum_and_earliest_expiry() -> None:
    lots = (
        ExpiringLot(100, NOW + 20 * DAY),
        ExpiringLot(40, NOW + 30 * DAY),  # the window's end is included
        ExpiringLot(7, NOW + 30 * DAY + timedelta(microseconds=1)),  # beyond it
        ExpiringLot(9, NOW),  # already expired (an end time is exclusive)
        ExpiringLot(0, NOW + DAY),  # nothing left
    )
    [signal] = due_signals(facts(lots=lots), NOW)
    assert signal.kind is SignalKind.POINTS_EXPIRING
    assert signal.points == 140
    assert signal.expires_at == signal.reference_at == NOW + 20 * DAY
    assert signal.signal_id == "signal:p:m1:POINTS_EXPIRING:2026-06-21T04:00:00.000000Z"


def test_tier_review_ahead_within_the_notice_period() -> None:
    assert kinds(facts(next_review_at=NOW + 15 * DAY)) == []
    [signal] = due_signals(facts(next_review_at=NOW + 14 * DAY), NOW)
    assert signal.kind is SignalKind.TIER_REVIEW_AHEAD
    assert signal.tier == "gold" and signal.next_review_at == NOW + 14 * DAY
    assert kinds(facts(next_review_at=NOW)) == [], "a review due now is the review itself, not a notice"
    longer = SignalRules(review_notice=30 * DAY)
    assert [s.kind for s in due_signals(facts(next_review_at=NOW + 20 * DAY), NOW, longer)] == [
        SignalKind.TIER_REVIEW_AHEAD
    ]


@pytest.mark.parametrize(
    ("quiet", "expected"),
    [
        (29 * DAY, []),
        (30 * DAY, [SignalKind.INACTIVE_30_DAYS]),
        (89 * DAY, [SignalKind.INACTIVE_30_DAYS]),
        (90 * DAY, [SignalKind.INACTIVE_90_DAYS]),
        (400 * DAY, [SignalKind.INACTIVE_90_DAYS]),
    ],
)
def test_inactivity_thresholds(quiet: timedelta, expected: list[SignalKind]) -> None:
    assert kinds(facts(last_activity_at=NOW - quiet)) == expected


def test_inactivity_counts_from_enrolment_when_never_active_and_is_keyed_by_the_last_activity() -> None:
    enrolled = NOW - 45 * DAY
    [signal] = due_signals(facts(last_activity_at=None, enrolled_at=enrolled), NOW)
    assert signal.kind is SignalKind.INACTIVE_30_DAYS
    assert signal.last_activity_at == enrolled and signal.inactive_days == 45
    later = due_signals(facts(last_activity_at=None, enrolled_at=enrolled), NOW + 5 * DAY)[0]
    assert later.signal_id == signal.signal_id, "the same stretch of inactivity is one occurrence"
    assert kinds(facts(last_activity_at=None, enrolled_at=None)) == []


def test_a_merged_member_gets_nothing() -> None:
    assert due_signals(facts(merged=True, last_activity_at=NOW - 100 * DAY), NOW) == []


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        due_signals(facts(), NOW.replace(tzinfo=None))


def test_raise_signals_records_each_occurrence_once() -> None:
    store = InMemoryEventStore()
    members = [
        facts(member_id="m1", last_activity_at=NOW - 40 * DAY, lots=(ExpiringLot(5, NOW + DAY),)),
        facts(member_id="m2", last_activity_at=NOW - DAY),
        facts(program_id="q", member_id="m1", last_activity_at=NOW - 95 * DAY),
    ]
    assert raise_signals(store, members, NOW) == 3
    assert raise_signals(store, members, NOW) == 0
    assert raise_signals(store, members, NOW + DAY) == 0, "a later scan finds the same occurrences"
    events = store.read_all()
    assert [(e.stream_id, e.type) for e in events] == [
        (signal_stream("p"), SIGNAL_EVENT_TYPE),
        (signal_stream("p"), SIGNAL_EVENT_TYPE),
        (signal_stream("q"), SIGNAL_EVENT_TYPE),
    ]
    for event in events:
        assert event.idempotency_key == event.event_id
        program_id = event.event_id.split(":")[1]
        assert store.find_command(signal_command_program(program_id), event.event_id) is not None
        assert store.find_command(program_id, event.event_id) is None, "not in the clients' key space"
        assert json.loads(event.payload)["signal_id"] == event.event_id
    more = [*members, facts(member_id="m3", last_activity_at=NOW - 31 * DAY)]
    assert raise_signals(store, more, NOW) == 1


def test_signal_command_records_live_outside_every_client_program() -> None:
    assert signal_command_program("little_sprout") == "signal:little_sprout"
    assert not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", signal_command_program("p"))


def test_a_client_key_equal_to_a_signal_id_neither_blocks_nor_answers_for_the_signal() -> None:
    store = InMemoryEventStore()
    member = facts(member_id="m1", last_activity_at=NOW - 40 * DAY)
    [signal] = due_signals(member, NOW)
    client = CommandRecord("p", signal.signal_id, "client-fp", b"client", NOW, "member-p-m1")
    store.append(AppendBatch([StreamAppend("member-p-m1", ANY, [_client_event()])], [client]))
    assert raise_signals(store, [member], NOW) == 1, "the client's record under 'p' does not count as raised"
    assert store.find_command("p", signal.signal_id) == client, "and the client's answer is untouched"
    assert raise_signals(store, [member], NOW) == 0


def _client_event() -> NewEvent:
    return NewEvent(
        event_id="p:m1:1",
        type="PointsAdjusted",
        schema_version=1,
        occurred_at=NOW,
        recorded_at=NOW,
        policy_version=None,
        idempotency_key=None,
        correlation_id=None,
        causation_id=None,
        actor={"channel": "test"},
        payload=b"{}",
    )


class _CountingStore(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.batch_lookups: list[int] = []

    def find_command(self, program_id: str, idempotency_key: str) -> None:
        raise AssertionError("signals are looked up in batches")

    def find_commands(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CommandRecord]:
        self.batch_lookups.append(len(keys))
        return super().find_commands(keys)


def test_signals_are_looked_up_in_batches() -> None:
    store = _CountingStore()
    members = [facts(member_id=f"m{i:04}", last_activity_at=NOW - 40 * DAY) for i in range(1200)]
    assert raise_signals(store, members, NOW) == 1200
    assert store.batch_lookups == [1000, 200]
    assert raise_signals(store, members, NOW) == 0


class _RacingStore(InMemoryEventStore):
    """A store whose lookups miss, as when another scan commits between the check and the append."""

    def find_commands(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CommandRecord]:
        return {}


def test_a_signal_raised_concurrently_is_not_written_again_and_the_others_are() -> None:
    store = _RacingStore()
    first = [facts(member_id="m1", last_activity_at=NOW - 40 * DAY)]
    assert raise_signals(store, first, NOW) == 1
    both = [*first, facts(member_id="m2", last_activity_at=NOW - 40 * DAY)]
    assert raise_signals(store, both, NOW) == 1, "the batch fails on m1's duplicate; m2 is then written alone"
    assert [e.event_id.split(":")[2] for e in store.read_all()] == ["m1", "m2"]
