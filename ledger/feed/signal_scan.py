"""Recording the due lifecycle signals in the log, each occurrence once (:func:`raise_signals`), and the periodic
scan of every program that reads the facts and raises what is due (:func:`scan`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final

from ledger.domain import streams
from ledger.domain.streams import signal_stream
from ledger.eventlog.port import (
    ANY,
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    EventStore,
    NewEvent,
    StreamAppend,
)
from ledger.feed.signal_facts import load_member_facts
from ledger.feed.signals import (
    DEFAULT_RULES,
    MemberFacts,
    Signal,
    SignalRules,
    aware,
    due_signals,
    signal_command_program,
    signal_event,
)

_CHUNK: Final = 200
"""Signals appended per transaction."""
_LOOKUP_CHUNK: Final = 1000
"""Signals looked up per :meth:`EventStore.find_commands` call."""


def _batch(signals: Sequence[Signal], now: datetime) -> AppendBatch:
    by_program: dict[str, list[NewEvent]] = {}
    commands: list[CommandRecord] = []
    for signal in signals:
        event = signal_event(signal, now)
        by_program.setdefault(signal.program_id, []).append(event)
        commands.append(
            CommandRecord(
                program_id=signal_command_program(signal.program_id),
                idempotency_key=signal.signal_id,
                fingerprint=hashlib.sha256(event.payload).hexdigest(),
                response=event.event_id.encode(),
                recorded_at=now,
                stream_id=signal_stream(signal.program_id),
            )
        )
    appends = [StreamAppend(signal_stream(p), ANY, events) for p, events in by_program.items()]
    return AppendBatch(appends, commands)


def _due(facts: Iterable[MemberFacts], now: datetime, rules: SignalRules) -> Iterator[Signal]:
    """Every due signal of ``facts``, each occurrence once."""
    seen: set[str] = set()
    for member in facts:
        for signal in due_signals(member, now, rules):
            if signal.signal_id not in seen:
                seen.add(signal.signal_id)
                yield signal


def _chunked(signals: Iterable[Signal], size: int) -> Iterator[list[Signal]]:
    chunk: list[Signal] = []
    for signal in signals:
        chunk.append(signal)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _command_key(signal: Signal) -> tuple[str, str]:
    return (signal_command_program(signal.program_id), signal.signal_id)


def raise_signals(
    store: EventStore[Any], facts: Iterable[MemberFacts], now: datetime, rules: SignalRules = DEFAULT_RULES
) -> int:
    """Record every due signal not raised before; return how many were written (0 on a repeat).

    Signals are checked against the command records in batches (:meth:`EventStore.find_commands`, one call
    per 1,000 signals) and the missing ones appended 200 to a transaction.
    """
    aware(now)
    written = 0
    for looked_up in _chunked(_due(facts, now, rules), _LOOKUP_CHUNK):
        keys = [_command_key(s) for s in looked_up]
        known = store.find_commands(keys)
        missing = (s for s, key in zip(looked_up, keys, strict=True) if key not in known)
        for pending in _chunked(missing, _CHUNK):
            try:
                store.append(_batch(pending, now))
                written += len(pending)
            except (DuplicateCommand, DuplicateEventId):
                # Raised concurrently by someone else: write the others one by one.
                for signal in pending:
                    try:
                        store.append(_batch([signal], now))
                        written += 1
                    except (DuplicateCommand, DuplicateEventId):
                        pass
    return written


def program_ids_of(store: EventStore[Any]) -> list[str]:
    """Every program of the store (from its ``program-*`` streams)."""
    return streams.program_ids_of(store.list_streams(streams.PROGRAM_PREFIX))


def scan(
    store: EventStore[Any],
    connection_factory: Callable[[], AbstractContextManager[Any]],
    now_of: Callable[[str], datetime],
    rules: SignalRules = DEFAULT_RULES,
    *,
    program_ids: Iterable[str] | None = None,
    prefix: str = "",
) -> int:
    """Raise the due signals of every program (or of ``program_ids``); return how many were written.

    ``connection_factory()`` is a context manager yielding a read-model connection (SQLite or psycopg; e.g.
    ``Backend.read_connection`` of :mod:`ledger.bootstrap`), checked out once per program. ``now_of(program_id)``
    is the program's own now (``LedgerApp.now``: a test-clock program's time, the wall clock otherwise).
    """
    written = 0
    for program_id in program_ids_of(store) if program_ids is None else program_ids:
        now = now_of(program_id)
        with connection_factory() as conn:
            facts = load_member_facts(conn, program_id, now, rules, prefix=prefix)
        written += raise_signals(store, facts, now, rules)
    return written
