"""The hash chain's encoding: canonical JSON and the envelope that every backend hashes the same way."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.eventlog.chain import GENESIS, canonical_json, envelope, envelope_json, event_hash, format_time
from ledger.eventlog.port import NewEvent

text = st.text(max_size=12)
maybe_text = st.none() | text
zones = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30))])
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)

events = st.builds(
    NewEvent,
    event_id=text,
    type=text,
    schema_version=st.integers(min_value=0, max_value=2**40),
    occurred_at=times,
    recorded_at=times,
    policy_version=st.none() | st.integers(min_value=-(2**70), max_value=2**70),
    idempotency_key=maybe_text,
    correlation_id=maybe_text,
    causation_id=maybe_text,
    actor=st.dictionaries(text, text, max_size=4),
    payload=st.binary(max_size=40),
)


@given(event=events, stream_id=text, version=st.integers(min_value=1, max_value=2**40))
def test_the_fast_envelope_is_the_canonical_json_of_the_envelope(
    event: NewEvent, stream_id: str, version: int
) -> None:
    assert envelope_json(stream_id, version, event).encode("utf-8") == canonical_json(
        envelope(stream_id, version, event)
    )


@given(event=events)
def test_event_hash_follows_the_definition(event: NewEvent) -> None:
    body = canonical_json(envelope("member-p1-m1", 3, event))
    expected = hashlib.sha256(b"\x01" * 32 + body + event.payload).digest()
    assert event_hash(b"\x01" * 32, "member-p1-m1", 3, event) == expected


def test_canonical_json_is_sorted_compact_utf8_with_utc_times() -> None:
    shanghai = timezone(timedelta(hours=8))
    value = {"b": [1, None, True], "a": "积分", "t": datetime(2026, 3, 1, 10, 0, tzinfo=shanghai)}
    assert (
        canonical_json(value) == '{"a":"积分","b":[1,null,true],"t":"2026-03-01T02:00:00.000000Z"}'.encode()
    )


def test_canonical_json_refuses_naive_times_and_nan() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical_json({"t": datetime(2026, 3, 1)})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_format_time_pads_and_keeps_microseconds() -> None:
    assert format_time(datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "0999-01-02T03:04:05.000006Z"


def test_format_time_tells_apart_the_two_sides_of_a_fold() -> None:
    new_york = ZoneInfo("America/New_York")
    first = datetime(2026, 11, 1, 1, 30, tzinfo=new_york)
    second = first.replace(fold=1)
    assert format_time(first) == "2026-11-01T05:30:00.000000Z"
    assert format_time(second) == "2026-11-01T06:30:00.000000Z"


def test_genesis_is_32_zero_bytes() -> None:
    assert GENESIS == b"\x00" * 32
