"""Times on the wire: protobuf Timestamps and RFC 3339 text, to and from aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp


def to_datetime(ts: Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime (microsecond precision)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def optional_datetime(message: Any, name: str) -> datetime | None:
    return to_datetime(getattr(message, name)) if message.HasField(name) else None


def to_timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    ts.seconds = delta.days * 86400 + delta.seconds
    ts.nanos = delta.microseconds * 1000
    return ts


def stamp(target: Timestamp, value: datetime | None) -> None:
    """Set a Timestamp field in place (leaves it unset for None)."""
    if value is not None:
        target.CopyFrom(to_timestamp(value))


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
