"""Reading the ledger's events, stream heads and reservations back from a KurrentDB client."""

from __future__ import annotations

import sys

from kurrentdbclient import KurrentDBClient, RecordedEvent
from kurrentdbclient.exceptions import KurrentDBClientError, NotFoundError

from ledger.adapters.kurrentdb.mapping import (
    decode_metadata,
    ledger_stream_id,
    server_stream,
    stored_event_from,
    version_of,
)
from ledger.eventlog.port import StoredEvent, StoreError
from ledger.eventlog.staging import EMPTY_HEAD, StreamHead


class StreamReads:
    """The reads both the store and its batch appender make: a stream's last event and head, one stream's
    events, decoding what the server returns (no open/closed check: the store makes it)."""

    def __init__(self, client: KurrentDBClient, namespace: str) -> None:
        self._client = client
        self._namespace = namespace

    def _last(self, stream_name: str) -> RecordedEvent | None:
        try:
            events = self._client.get_stream(stream_name, backwards=True, limit=1)
        except NotFoundError:
            return None
        except KurrentDBClientError as error:
            raise StoreError(f"reading {stream_name!r} failed: {error}") from error
        return events[0] if events else None

    def _head(self, stream_id: str) -> StreamHead:
        last = self._last(server_stream(self._namespace, stream_id))
        if last is None:
            return EMPTY_HEAD
        meta = decode_metadata(last.metadata)
        if meta is None or "hash" not in meta:
            raise StoreError(f"the last event of {stream_id!r} was not written by the ledger")
        return StreamHead(version_of(last.stream_position), bytes.fromhex(meta["hash"]))

    def _decode(self, recorded: RecordedEvent) -> StoredEvent | None:
        meta = decode_metadata(recorded.metadata)
        if meta is None or "hash" not in meta:
            return None
        sid = ledger_stream_id(self._namespace, recorded.stream_name)
        if sid is None or meta.get("stream_id") != sid:
            return None
        try:
            return stored_event_from(
                meta,
                event_type=recorded.type,
                payload=recorded.data,
                stream_position=recorded.stream_position,
                commit_position=recorded.commit_position,
            )
        except (KeyError, ValueError) as error:
            raise StoreError(
                f"event {recorded.id} of {recorded.stream_name!r} is malformed: {error}"
            ) from error

    def _read_stream(
        self, stream_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        if limit is not None and limit <= 0:
            return []
        try:
            recorded = self._client.get_stream(
                server_stream(self._namespace, stream_id),
                stream_position=max(after_version, 0),
                limit=sys.maxsize if limit is None else limit,
            )
        except NotFoundError:
            return []
        except KurrentDBClientError as error:
            raise StoreError(f"reading {stream_id!r} failed: {error}") from error
        events = []
        for r in recorded:
            event = self._decode(r)
            if event is None:
                raise StoreError(f"stream {stream_id!r} holds an event the ledger did not write")
            events.append(event)
        return events
