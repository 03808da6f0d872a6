"""An in-memory stand-in for the ``KurrentDBClient`` methods :class:`~ledger.adapters.kurrentdb.store.KurrentDBEventStore`
calls, shared by the contract tests and the serving tests (no server needed).

:class:`FakeKurrentDB` checks the store's own logic (staging, reservations, conflict diagnosis, read-back,
filters) and whatever is built on it; it is NOT KurrentDB: anything verified only against it is unverified
against a real server (see ``docs/kurrentdb.md``). Needs the ``kurrentdb`` extra (``kurrentdbclient``).
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from kurrentdbclient import NewEvent, NewEvents, NewRecord, RecordedEvent, StreamState, StreamStateCheck
from kurrentdbclient.exceptions import (
    ConsistencyCheckFailure,
    ConsistencyChecksFailedError,
    InvalidCommitPositionError,
    MultiAppendToSameStreamError,
    NotFoundError,
    StreamStateCheckFailure,
    WrongCurrentVersionError,
)
from kurrentdbclient.v2streams import _metadata_to_properties

__all__ = ["FakeKurrentDB"]


class _Response:
    def __init__(self, events: Iterable[RecordedEvent]) -> None:
        self._events = iter(list(events))

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self._events

    def __enter__(self) -> _Response:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class FakeKurrentDB:
    """An in-memory stand-in for the ``KurrentDBClient`` methods the store uses.

    Commit positions grow by an irregular step (like log offsets); the multi-stream append refuses the
    same stream twice and non-string metadata values, as KurrentDB 25.1 does; reads of ``$all`` from a
    commit position that holds no event fail with :class:`InvalidCommitPositionError`.
    """

    def __init__(self) -> None:
        self.streams: dict[str, list[RecordedEvent]] = {}
        self.log: list[RecordedEvent] = []
        self._next_position = itertools.count(start=1000, step=137)
        self._lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def _revision(self, name: str) -> int | StreamState:
        events = self.streams.get(name)
        return events[-1].stream_position if events else StreamState.NO_STREAM

    def _ok(self, name: str, expected: int | StreamState) -> bool:
        return expected == StreamState.ANY or self._revision(name) == expected

    def _conflict(self, name: str, expected: int | StreamState) -> WrongCurrentVersionError:
        actual = self._revision(name)
        return WrongCurrentVersionError(
            f"{name}: expected {expected}, actual {actual}",
            stream_name=name,
            actual_version=-1 if actual == StreamState.NO_STREAM else actual,
        )

    def _write(self, name: str, events: Iterable[NewEvent | NewRecord]) -> int:
        stream = self.streams.setdefault(name, [])
        position = 0
        for event in events:
            position = next(self._next_position)
            recorded = RecordedEvent(
                type=event.type,
                data=event.data,
                metadata=event.metadata,
                content_type=event.content_type,
                id=event.id,
                stream_name=name,
                stream_position=len(stream),
                commit_position=position,
                prepare_position=position,
            )
            stream.append(recorded)
            self.log.append(recorded)
        return position

    def append_to_stream(
        self, stream_name: str, *, current_version: int | StreamState, events: Iterable[NewEvent]
    ) -> int:
        with self._lock:
            if not self._ok(stream_name, current_version):
                raise self._conflict(stream_name, current_version)
            return self._write(stream_name, events)

    def multi_append_to_stream(self, events: Iterable[NewEvents]) -> int:
        requests = list(events)
        with self._lock:
            names = [r.stream_name for r in requests]
            if len(set(names)) != len(names):
                raise MultiAppendToSameStreamError("same stream twice", stream_name=names[0])
            for request in requests:
                for event in request.events:
                    _metadata_to_properties(event)  # string values only, as the server requires
                if not self._ok(request.stream_name, request.current_version):
                    raise self._conflict(request.stream_name, request.current_version)
            position = 0
            for request in requests:
                position = self._write(request.stream_name, request.events)
            return position

    def append_records(self, records: Sequence[NewRecord], checks: Sequence[StreamStateCheck]) -> object:
        with self._lock:
            failures = tuple(
                ConsistencyCheckFailure(i, StreamStateCheckFailure(c.stream_name, -1, -1))
                for i, c in enumerate(checks)
                if not self._ok(c.stream_name, c.expected_state)
            )
            if failures:
                raise ConsistencyChecksFailedError("checks failed", failures=failures)
            for record in records:
                self._write(record.stream_name, [record])
            return object()

    def get_stream(
        self,
        stream_name: str,
        *,
        stream_position: int | None = None,
        backwards: bool = False,
        limit: int = sys.maxsize,
    ) -> tuple[RecordedEvent, ...]:
        with self._lock:
            events = list(self.streams.get(stream_name, ()))
        if not events:
            raise NotFoundError(stream_name)
        if backwards:
            events.reverse()
        elif stream_position is not None:
            events = events[stream_position:]
        return tuple(events[:limit])

    def read_all(
        self,
        *,
        commit_position: int | None = None,
        filter_include: Sequence[str] = (),
        filter_by_stream_name: bool = False,
        **_: Any,
    ) -> _Response:
        assert filter_by_stream_name and len(filter_include) == 1
        pattern = re.compile("^" + filter_include[0] + "$")
        with self._lock:
            log = list(self.log)
        if commit_position is not None:
            if commit_position not in {e.commit_position for e in log}:
                raise InvalidCommitPositionError(str(commit_position))
            log = [e for e in log if e.commit_position >= commit_position]
        return _Response(e for e in log if pattern.match(e.stream_name))
