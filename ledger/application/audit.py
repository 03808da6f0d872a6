"""Replaying and verifying a member's log: the events with the balances and tier around each, the hash chain.

:class:`MemberAudit` is a part of :class:`~ledger.application.service.LedgerApp`; replay and verify always fold
the log itself, never the read models.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.domain import events as ev
from ledger.domain import program as prog
from ledger.domain.errors import NotFound
from ledger.domain.evolve import evolve
from ledger.domain.queries import tier_in_effect
from ledger.domain.state import Balances, MemberState
from ledger.domain.streams import member_stream, member_streams_of
from ledger.eventlog.chain import ChainBreak, stream_head, verify_stream
from ledger.eventlog.port import EventStore, StoredEvent
from policies import Policy, PolicyHistory

REPLAY_CHUNK = 500
"""Events a replay reads from the store at a time."""


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    stored: StoredEvent
    event: ev.MemberEvent
    before: Balances
    after: Balances
    tier_after: str = ""
    """The tier in effect after the event, at its business time (the earned tier or an override)."""


class _PolicyAt:
    """The policy in force at a business time, for a fold: one bisect per policy version's time range, not per event.

    A time before the first version has no policy (None).
    """

    __slots__ = ("_end", "_policy", "_start", "_starts", "_versions")

    def __init__(self, policies: PolicyHistory) -> None:
        self._versions = list(policies)
        self._starts = [v.effective_from for v in self._versions]
        self._policy: Policy | None = None
        self._start: datetime | None = None
        self._end: datetime | None = None

    def __call__(self, at: datetime) -> Policy | None:
        start, end = self._start, self._end
        if start is not None and start <= at and (end is None or at < end):
            return self._policy
        index = bisect_right(self._starts, at)
        if index == 0:
            return None
        self._policy = self._versions[index - 1].policy
        self._start = self._starts[index - 1]
        self._end = self._starts[index] if index < len(self._starts) else None
        return self._policy


@dataclass(slots=True)
class VerifyReport:
    program_id: str
    member_id: str
    ok: bool
    events: int
    head_hash: bytes
    chain_break: ChainBreak | None = None
    mismatches: list[str] = field(default_factory=list)


ProjectionCheck = Callable[[MemberState, list[ReplayEntry]], list[str]]


def _tier_after(state: MemberState, policy_at: _PolicyAt, at: datetime) -> str:
    """The tier in effect at ``at`` for the folded ``state``; its stored tier when no policy was in force then."""
    return tier_in_effect(state, policy_at(at), at)


def _fold(
    state: MemberState, policy_at: _PolicyAt, chunks: Iterable[list[StoredEvent]], after_version: int = 0
) -> Iterator[ReplayEntry]:
    """Fold ``chunks`` (a stream's events in order, from its first) into ``state``, yielding an entry for each
    event after ``after_version``: the balances around it and the tier in effect after it."""
    decode = ev.decode
    before: Balances | None = None
    for chunk in chunks:
        for stored in chunk:
            event = decode(stored.payload)
            if stored.version <= after_version:
                evolve(state, event)
                continue
            if before is None:
                before = Balances.of(state)
            evolve(state, event)
            after = Balances.of(state)
            yield ReplayEntry(stored, event, before, after, _tier_after(state, policy_at, stored.occurred_at))
            before = after


class MemberAudit:
    """Replay and verification of members' streams (a part of ``LedgerApp``)."""

    if TYPE_CHECKING:
        store: EventStore[Any]
        _check_projection: ProjectionCheck | None

        def program(self, program_id: str) -> prog.ProgramState: ...


    def replay(self, program_id: str, member_id: str, after_version: int = 0) -> Iterator[ReplayEntry]:
        """The member's events in stream order, each with the balances around it and the tier in effect after it.

        One fold of the stream computes all three. Events at or before ``after_version`` are folded (the later
        balances and tiers depend on them) but not yielded. The events are those stored when the call starts.
        """
        policy_at = _PolicyAt(self.program(program_id).policies)
        stream = member_stream(program_id, member_id)
        head = self.store.stream_version(stream)
        if head == 0:
            raise NotFound("member", member_id)
        state = MemberState(program_id=program_id, member_id=member_id)
        yield from _fold(state, policy_at, self._chunks(stream, head), after_version)

    def _chunks(self, stream: str, head: int) -> Iterator[list[StoredEvent]]:
        """The stream's events up to version ``head``, read in chunks as they are needed, so a long stream's
        events do not all stay in memory for the whole replay."""
        version = 0
        while version < head:
            limit = min(REPLAY_CHUNK, head - version)
            chunk = self.store.read_stream(stream, after_version=version, limit=limit)
            if not chunk:
                break
            yield chunk
            version = chunk[-1].version

    def verify_member(self, program_id: str, member_id: str) -> VerifyReport:
        """The member's hash chain checked, then the same events folded (once) and, when the application has
        read models, the rows they should hold compared with those it holds."""
        policies = self.program(program_id).policies
        stream = member_stream(program_id, member_id)
        # The head the store keeps with the stream, read first: events removed from the end leave a chain that is
        # intact up to where it stops, and only the head tells. Events appended after it are not read.
        head_version, head_hash = stream_head(self.store, stream)
        stored_events = self.store.read_stream(stream, limit=head_version or None)
        if not stored_events:
            raise NotFound("member", member_id)
        report = VerifyReport(program_id, member_id, True, len(stored_events), stored_events[-1].hash)
        try:
            report.chain_break = verify_stream(stored_events, head_version=head_version, head_hash=head_hash)
        except Exception as exc:  # a row altered into something unreadable is a finding too
            first = stored_events[0]
            report.chain_break = ChainBreak(first.stream_id, first.version, first.position, f"unreadable event: {exc}")
        if report.chain_break is not None:
            report.ok = False
            return report
        try:
            # The events whose chain was just checked, folded once: ``state`` ends as the member's state.
            state = MemberState(program_id=program_id, member_id=member_id)
            entries = list(_fold(state, _PolicyAt(policies), [stored_events]))
        except Exception as exc:  # a log that cannot be folded is a finding, not a crash
            report.ok = False
            report.mismatches.append(f"replay failed: {exc}")
            return report
        if self._check_projection is not None:
            report.mismatches = self._check_projection(state, entries)
            report.ok = not report.mismatches
        return report

    def verify_program(self, program_id: str) -> Iterator[VerifyReport]:
        self.program(program_id)
        prefix = member_streams_of(program_id)
        for stream_id in self.store.list_streams(prefix):
            yield self.verify_member(program_id, stream_id.removeprefix(prefix))
