"""Staging of member streams: the members one group touches, brought up to date and changed, before its append.

The writer keeps the members' states as last committed (:class:`MemberCache`, bounded, most recently used
last). A group's :class:`GroupStaging` brings every member it names up to date with the log in one read
(``prefetch``), loads any other member a command reaches (an owner, an invitee, a merge's source), runs what
fell due (``catch_up``) and applies each decided event to the state (``apply``), keeping it as the
:class:`NewEvent` to append with the balances around it. Nothing is written here: the group's commit appends
every staged stream at the version it was decided on, or drops what was staged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.application.new_events import SYSTEM_ACTOR, caused_by, new_event
from ledger.application.ports import ProgramDirectory
from ledger.application.stock_staging import StockStaging
from ledger.application.write_requests import Peek, Quote, Request
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, next_due, tick
from ledger.domain.errors import Refusal
from ledger.domain.evolve import evolve
from ledger.domain.queries import tier_in_effect
from ledger.domain.state import Balances, MemberState
from ledger.domain.streams import member_stream
from ledger.eventlog.port import EventStore, NewEvent
from policies import NoPolicyInForce, Policy, PolicyHistory

AppliedEvent = tuple[ev.MemberEvent, NewEvent, Balances, Balances, str]
"""An event as the writer applied it: the event, as appended, the balances before and after, the tier after."""


@dataclass(slots=True)
class StagedMember:
    """A member's stream in one group: its state (changed as the group's events are applied), the version the
    group found it at, and what the group adds to it."""

    program_id: str
    member_id: str
    state: MemberState
    expected_version: int
    events: list[AppliedEvent] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One member touched by a committed group: its state after, and the events with balances around them."""

    program_id: str
    member_id: str
    state: MemberState
    events: tuple[AppliedEvent, ...]
    identities_added: tuple[str, ...]
    due_at: datetime | None


class MemberCache:
    """The members' states as last committed, at most ``size`` of them (the writer thread's alone)."""

    def __init__(self, size: int) -> None:
        self._states: OrderedDict[str, MemberState] = OrderedDict()
        self._size = size

    def get(self, stream_id: str) -> MemberState | None:
        return self._states.get(stream_id)

    def remember(self, stream_id: str, state: MemberState) -> None:
        self._states[stream_id] = state
        self._states.move_to_end(stream_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)

    def drop(self, stream_ids: Iterable[str]) -> None:
        for stream_id in stream_ids:
            self._states.pop(stream_id, None)

    def clear(self) -> None:
        self._states.clear()


def _policy_at(policies: PolicyHistory, at: datetime) -> Policy | None:
    try:
        return policies.in_force_at(at).policy
    except NoPolicyInForce:
        return None


def members_named(req: Request) -> tuple[str, ...]:
    """The members a request names itself (read before the group is decided); an owner or an invitee a command
    reaches only once decided is loaded then."""
    if isinstance(req, Peek):
        return (req.member_id,)
    if isinstance(req, Quote):
        return (req.command.member_id,)
    command = req.command
    if isinstance(command, cmd.MergeMembers):
        return (command.member_id, command.source_member_id)
    if isinstance(command, cmd.JoinHousehold):
        return (command.member_id, command.owner_member_id)
    if isinstance(command, cmd.TransferPoints):
        return (command.member_id, command.to_member_id)
    if isinstance(command, cmd.AdjustStock):
        return ()  # no member: the reward's stock stream is read when the command is decided
    return (command.member_id,)


class GroupStaging:
    """The member streams (and, in :attr:`stock`, the stock streams) one group has touched so far."""

    def __init__(
        self,
        store: EventStore[Any],
        programs: ProgramDirectory,
        cache: MemberCache,
        stock: StockStaging,
        *,
        shared: bool,
    ) -> None:
        self._store = store
        self.programs = programs
        self._cache = cache
        self._shared = shared
        self.stock = stock
        self.members: dict[str, StagedMember] = {}
        self._fresh: dict[str, MemberState] = {}  # the members the group names, up to date with the log
        # the identities this group gave a member: (program, identity) -> member
        self._claimed: dict[tuple[str, str], str] = {}

    def prefetch(self, requests: Iterable[Request]) -> None:
        """Bring the states of every member the group names up to date with the log, in one read.

        Members not cached are folded from their whole stream; on a shared store, cached members get the
        events other replicas appended since (usually none). Either way it is one ``read_tails`` call.
        """
        wanted: dict[str, tuple[str, str]] = {}
        for req in requests:
            for member_id in members_named(req):
                wanted[member_stream(req.program_id, member_id)] = (req.program_id, member_id)
        fresh: dict[str, MemberState] = {}
        after: dict[str, int] = {}
        for sid, (program_id, member_id) in wanted.items():
            state = self._cache.get(sid) or MemberState(program_id=program_id, member_id=member_id)
            fresh[sid] = state
            if state.version == 0 or self._shared:
                after[sid] = state.version
        if after:
            for sid, tail in self._store.read_tails(after).items():
                state = fresh[sid]
                for stored in tail:
                    evolve(state, ev.decode(stored.payload))
        self._fresh = fresh
        self._claimed = {}

    def load(self, program_id: str, member_id: str) -> StagedMember:
        """The member's stream as this group has it (loaded from the log the first time)."""
        sid = member_stream(program_id, member_id)
        if sid in self.members:
            return self.members[sid]
        state = self._fresh.get(sid)
        if state is None:  # not named by the request itself: read it now
            state = self._cache.get(sid) or MemberState(program_id=program_id, member_id=member_id)
            for stored in self._store.read_stream(sid, after_version=state.version):
                evolve(state, ev.decode(stored.payload))
        s = StagedMember(program_id, member_id, state, state.version)
        self.members[sid] = s
        return s

    def context(self, s: StagedMember, occurred_at: datetime | None) -> Context:
        """The member's context; its personal data is looked up only if enrolment may have stored some."""
        return self.programs.context(
            s.program_id, occurred_at, s.member_id, look_up_profile=not s.state.no_profile
        )

    def catch_up(self, s: StagedMember, ctx: Context) -> list[ev.MemberEvent]:
        """Apply what fell due for the member up to now; those events."""
        due = tick(s.state, ctx.for_time(ctx.now))
        if due:
            self.apply(s, due, None, ctx)
        return due

    def apply(
        self, s: StagedMember, events: Sequence[ev.MemberEvent], req: cmd.Envelope | None, ctx: Context
    ) -> None:
        """Apply ``events`` to the member's state and keep each as it is to be appended (``req``: the command
        that caused them; None for due work)."""
        now = ctx.now
        for event in events:
            before = Balances.of(s.state)
            evolve(s.state, event)
            after = Balances.of(s.state)
            tier = tier_in_effect(s.state, _policy_at(ctx.policies, event.at), event.at)
            new = new_event(
                event.type,
                ev.encode(event),
                event.at,
                now,
                policy_version=getattr(event, "policy_version", None),
                **(caused_by(req) if req else {"actor": dict(SYSTEM_ACTOR)}),
            )
            s.events.append((event, new, before, after, tier))

    def check_identities(self, program_id: str, command: cmd.EnrollMember | cmd.ImportMember) -> None:
        """Refuse an enrolment naming an identity another member holds (committed, or given in this group)."""
        for identity in command.identities:
            owner = self.programs.identity_owner(program_id, identity)
            if owner is None:  # given by a command of this group (staged, not committed yet)
                owner = self._claimed.get((program_id, identity))
            if owner is not None and owner != command.member_id:
                raise Refusal(
                    "IDENTITY_TAKEN",
                    "this channel identity already belongs to another member",
                    {"kind": identity.split(":", 1)[0].upper(), "member_id": owner},
                )

    def claim(self, s: StagedMember, identities: Iterable[str]) -> None:
        """The member now holds ``identities`` (its enrolment, or a merged member's cards)."""
        identities = tuple(identities)
        s.identities.extend(identities)
        self._claimed.update(((s.program_id, i), s.member_id) for i in identities)

    def changes(self) -> list[MemberChange]:
        """Every member the group changed, as the read models are told of it."""
        return [
            MemberChange(
                program_id=s.program_id,
                member_id=s.member_id,
                state=s.state,
                events=tuple(s.events),
                identities_added=tuple(s.identities),
                due_at=next_due(s.state, self.context(s, None)),
            )
            for s in self.members.values()
            if s.events
        ]

    def drop_cached(self) -> None:
        """Forget the cached states of what this group staged (it may hold part of effects never committed)."""
        self._cache.drop(self.members)
        self.stock.drop_cached()

    def remember(self) -> None:
        """Keep what this group committed as the cached states."""
        for sid, s in self.members.items():
            if s.state.enrolled:
                self._cache.remember(sid, s.state)
        self.stock.remember()
