"""The pure mapping of the KurrentDB store: no server, no client."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from datetime import UTC, datetime

import pytest
from kurrentdbclient import NewEvent, StreamState
from kurrentdbclient.v2streams import _metadata_to_properties

from ledger.adapters.kurrentdb.mapping import (
    EVENT_ID_NAMESPACE,
    FORMAT,
    check_stream_id,
    command_from,
    command_metadata,
    command_stream,
    commit_position_of,
    decode_metadata,
    encode_metadata,
    escape_regex,
    event_id_stream,
    event_metadata,
    event_uuid,
    expected_revision,
    ledger_stream_id,
    next_revision,
    position_of,
    server_stream,
    stored_event_from,
    stream_filter,
    version_of,
)
from ledger.eventlog.chain import GENESIS, canonical_json
from ledger.eventlog.port import ANY, CommandRecord, StoredEvent
from ledger.eventlog.staging import EMPTY_HEAD, StreamHead, stored_event
from ledger.testing.store_contract import SHANGHAI, T0, new_event


def staged(event_id: str = "evt-1", **changes: object) -> StoredEvent:
    event = dataclasses.replace(new_event(event_id), **changes)  # type: ignore[arg-type]
    return stored_event(event, "member-p1-m1", EMPTY_HEAD, 1)


def round_trip(event: StoredEvent, *, commit_position: int = 4242) -> StoredEvent:
    meta = decode_metadata(encode_metadata(event_metadata(event)))
    assert meta is not None
    return stored_event_from(
        meta,
        event_type=event.type,
        payload=event.payload,
        stream_position=event.version - 1,
        commit_position=commit_position,
    )


# -- envelope <-> metadata ------------------------------------------------------------------------------------


def test_a_full_envelope_round_trips_through_metadata() -> None:
    event = staged(
        occurred_at=datetime(2026, 3, 1, 10, 0, 0, 1, tzinfo=SHANGHAI),
        policy_version=7,
        idempotency_key="idem-1",
        correlation_id="corr-1",
        causation_id="cause-1",
        actor={"channel": "小程序", "store_id": "门店-01"},
        payload=canonical_json({"points": 120, "note": "积分"}),
    )
    back = round_trip(event)
    assert back == dataclasses.replace(event, position=4243)
    assert back.occurred_at == datetime(2026, 3, 1, 2, 0, 0, 1, tzinfo=UTC)
    assert dict(back.actor) == {"channel": "小程序", "store_id": "门店-01"}


def test_none_fields_are_left_out_and_come_back_as_none() -> None:
    event = staged(
        policy_version=None, idempotency_key=None, correlation_id=None, causation_id=None, actor={}
    )
    meta = event_metadata(event)
    for key in ("policy_version", "idempotency_key", "correlation_id", "causation_id"):
        assert key not in meta
    back = round_trip(event)
    assert (back.policy_version, back.idempotency_key, back.correlation_id, back.causation_id) == (None,) * 4
    assert dict(back.actor) == {}


def test_empty_strings_and_zero_are_not_none() -> None:
    event = staged(policy_version=0, idempotency_key="", correlation_id="", causation_id="")
    back = round_trip(event)
    assert (back.policy_version, back.idempotency_key, back.correlation_id, back.causation_id) == (
        0,
        "",
        "",
        "",
    )


def test_metadata_values_are_all_strings_as_the_multi_stream_append_requires() -> None:
    meta = event_metadata(staged(policy_version=3))
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["ledger"] == FORMAT and meta["version"] == "1" and meta["policy_version"] == "3"
    _metadata_to_properties(NewEvent("PointsEarned", b"{}", encode_metadata(meta)))  # the client's own check


def test_hashes_are_kept_as_hex_and_the_payload_is_untouched() -> None:
    event = staged(payload=b"\x00not json\xff")
    meta = event_metadata(event)
    assert meta["prev_hash"] == GENESIS.hex() and bytes.fromhex(meta["hash"]) == event.hash
    assert round_trip(event).payload == b"\x00not json\xff"


def test_foreign_metadata_is_not_ours() -> None:
    assert decode_metadata(b"") is None
    assert decode_metadata(b"not json") is None
    assert decode_metadata(b"[1]") is None
    assert decode_metadata(b'{"a": "b"}') is None
    assert decode_metadata(b'{"ledger": "999"}') is None
    extra = json.loads(encode_metadata(event_metadata(staged())))
    extra["$schema.format"] = "Bytes"  # keys a server may add are ignored
    extra["$count"] = 3
    meta = decode_metadata(json.dumps(extra).encode())
    assert meta is not None and "$count" not in meta


def test_a_version_that_disagrees_with_the_revision_is_refused() -> None:
    event = staged()
    meta = decode_metadata(encode_metadata(event_metadata(event)))
    assert meta is not None
    with pytest.raises(Exception, match="revision"):
        stored_event_from(meta, event_type="X", payload=b"", stream_position=5, commit_position=1)


def test_a_later_event_keeps_its_chain() -> None:
    first = staged("a")
    second = stored_event(new_event("b"), "member-p1-m1", StreamHead(1, first.hash), 2)
    back = round_trip(second, commit_position=99)
    assert (back.version, back.prev_hash, back.hash, back.position) == (2, first.hash, second.hash, 100)


# -- versions, revisions and positions ----------------------------------------------------------------------


def test_expected_version_maps_to_expected_revision() -> None:
    assert expected_revision(0) == StreamState.NO_STREAM
    assert expected_revision(ANY) == StreamState.ANY
    assert expected_revision(1) == 0
    assert expected_revision(5) == 4
    with pytest.raises(ValueError):
        expected_revision(-2)


def test_revision_maps_back_to_version() -> None:
    assert version_of(StreamState.NO_STREAM) == 0
    assert version_of(0) == 1
    assert version_of(41) == 42
    for version in (0, 1, 7):
        revision = expected_revision(version)
        assert version_of(revision) == version
    with pytest.raises(ValueError):
        version_of(StreamState.ANY)
    assert next_revision(StreamState.NO_STREAM) == 0 and next_revision(3) == 4
    with pytest.raises(ValueError):
        next_revision(StreamState.ANY)


def test_positions_are_commit_positions_shifted_by_one() -> None:
    assert position_of(0) == 1  # 0 stays "before everything"
    assert position_of(12345) == 12346
    assert commit_position_of(0) is None
    assert commit_position_of(position_of(12345)) == 12345
    with pytest.raises(ValueError):
        position_of(-1)
    with pytest.raises(ValueError):
        commit_position_of(-1)


# -- ids and stream names -------------------------------------------------------------------------------------


def test_event_ids_map_to_deterministic_uuid5() -> None:
    assert event_uuid("evt-1") == uuid.uuid5(EVENT_ID_NAMESPACE, "evt-1")
    assert event_uuid("evt-1") == event_uuid("evt-1")
    assert event_uuid("evt-1") != event_uuid("evt-2")
    assert event_uuid("evt-1").version == 5


def test_command_streams_are_per_program_and_key() -> None:
    name = command_stream("", "p1", "k1")
    assert name.startswith("_ledger-command-p1-") and len(name) == len("_ledger-command-p1-") + 64
    assert command_stream("", "p1", "k1") == name
    assert command_stream("", "p2", "k1") != name
    assert command_stream("", "p1", "k2") != name
    # the digest covers both parts: no (program, key) split can collide with another
    assert command_stream("", "p1-", "k") != command_stream("", "p1", "-k")
    assert command_stream("ns-", "p1", "k1") == "ns-" + name


def test_event_id_streams_use_the_event_uuid() -> None:
    assert event_id_stream("ns-", "evt-1") == f"ns-_ledger-eventid-{event_uuid('evt-1')}"


def test_ledger_streams_keep_their_names_within_the_namespace() -> None:
    assert server_stream("", "member-p1-m1") == "member-p1-m1"
    assert server_stream("t1-", "member-p1-m1") == "t1-member-p1-m1"
    assert ledger_stream_id("t1-", "t1-member-p1-m1") == "member-p1-m1"
    assert ledger_stream_id("t1-", "t2-member-p1-m1") is None
    assert ledger_stream_id("", "$streams") is None
    assert ledger_stream_id("", command_stream("", "p1", "k")) is None
    assert ledger_stream_id("", event_id_stream("", "e")) is None


def test_reserved_stream_ids_are_refused() -> None:
    check_stream_id("member-p1-m1")
    for bad in ("", "$all", "_ledger-command-x"):
        with pytest.raises(ValueError):
            check_stream_id(bad)


# -- the $all filter --------------------------------------------------------------------------------------------


def matches(pattern: str, name: str) -> bool:
    # The client anchors include filters as ^...$; \xNN, (?!...) and [\s\S] mean the same in .NET and Python.
    return re.fullmatch("^" + pattern + "$", name) is not None


def test_the_filter_selects_ledger_streams_of_the_namespace() -> None:
    pattern = stream_filter("t1.-")
    assert matches(pattern, "t1.-member-p1-m1")
    assert matches(pattern, "t1.-s\nwith newline")
    assert not matches(pattern, "t1x-member")  # the "." of the namespace is literal
    assert not matches(pattern, "t2.-member")
    assert not matches(pattern, "t1.-_ledger-command-p1-abc")
    assert not matches(pattern, "t1.-$system")
    everything = stream_filter("")
    assert matches(everything, "member-p1-m1") and not matches(everything, "$streams")
    assert not matches(everything, "_ledger-eventid-x")


def test_the_filter_takes_a_literal_prefix() -> None:
    pattern = stream_filter("", "member-p1_%x")
    assert matches(pattern, "member-p1_%x") and matches(pattern, "member-p1_%xyz")
    assert not matches(pattern, "member-p1a%x")
    assert not matches(stream_filter("", "a.b"), "axb")


def test_escape_regex_makes_every_ascii_symbol_a_hex_escape() -> None:
    assert escape_regex("a-b.c") == "a\\x2db\\x2ec"
    assert escape_regex("门店_1") == "门店_1"
    for text in ("a.b*c", "(x)|[y]", "^$\\", "pre fix?", "{1,2}+#"):
        assert re.fullmatch(escape_regex(text), text)


# -- command records ------------------------------------------------------------------------------------------


def test_a_command_record_round_trips() -> None:
    record = CommandRecord("p1", "k-1", "sha256:abc", bytes(range(256)), T0.astimezone(SHANGHAI), None)
    meta = decode_metadata(encode_metadata(command_metadata(record)))
    assert meta is not None and "stream_id" not in meta
    back = command_from(meta, record.response)
    assert back == record and back.recorded_at.utcoffset() is not None
    with_stream = dataclasses.replace(record, stream_id="member-p1-m1")
    meta = decode_metadata(encode_metadata(command_metadata(with_stream)))
    assert meta is not None and command_from(meta, record.response) == with_stream
