"""``LedgerApp``: the application facade the gRPC edge and the command line call.

It owns the programs (their policies and clocks), hands member commands to the single writer, runs time-driven
work, and answers the queries and audits. It knows nothing of gRPC or SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ledger.application.audit import MemberAudit, ProjectionCheck, ReplayEntry, VerifyReport
from ledger.application.clock import Clock
from ledger.application.deadline import CALL_DEADLINE
from ledger.application.identity import IDENTITY_KINDS, identity_digest
from ledger.application.member_reads import HistoryEntry, HistoryPage, MemberReads, MemberView
from ledger.application.personal import PersonalData, PersonalProfile
from ledger.application.program_writes import (
    AdvanceClock,
    CreateProgram,
    ProgramStates,
    ProgramWrites,
    PublishPolicy,
)
from ledger.application.results import CommandResult
from ledger.application.retry import WriteRetry
from ledger.application.writer import (
    CommandWriter,
    MemberChange,
    Peek,
    PeekResult,
    Quote,
)
from ledger.domain import commands as cmd
from ledger.domain import program as prog
from ledger.domain.decide import Context, next_due
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.queries import (
    tier_in_effect,
)
from ledger.domain.state import MemberState
from ledger.domain.streams import PROGRAM_PREFIX, program_ids_of
from ledger.eventlog.port import EventStore, StoredEvent
from policies import NoPolicyInForce, OrderEarning, PolicyVersion, dump_policy
from projections.queries import BalanceNow, LotsPage, MemberNow, StandingNow
from projections.rows import HistoryRow

TICK_CHUNK = 500

__all__ = ["HistoryEntry", "HistoryPage", "LedgerApp", "MemberView", "ReplayEntry", "VerifyReport"]


class LedgerApp(MemberReads, MemberAudit):
    """The ledger's application: programs, member commands through the writer, time-driven work; the member
    queries (:class:`MemberReads`) and audits (:class:`MemberAudit`). It is the writer's
    :class:`~ledger.application.ports.ProgramDirectory`."""

    def __init__(
        self,
        store: EventStore[Any],
        clock: Clock,
        personal: PersonalData,
        *,
        project: Callable[[Any, list[StoredEvent], Sequence[MemberChange]], None],
        identity_owner: Callable[[str, str], str | None],
        due_members: Callable[[str, datetime, int], list[str]],
        check_projection: ProjectionCheck | None = None,
        balance_now: Callable[[str, str, datetime], BalanceNow | None] | None = None,
        history_through: Callable[[str, str, int | None, int], tuple[list[HistoryRow], int]] | None = None,
        lots_in_debit_order: Callable[[str, str, Sequence[str], int, int], LotsPage | None] | None = None,
        standing_now: Callable[[str, str], StandingNow | None] | None = None,
        member_now: Callable[[str, str, datetime], MemberNow | None] | None = None,
        pepper: bytes = b"little-sprout-dev-pepper",
        max_batch: int = 256,
        max_queue: int = 1_000,
        project_in_transaction: bool | None = None,
        shared: bool = False,
    ) -> None:
        self.store = store
        self.shared = shared
        self.clock = clock
        self.personal = personal
        self._identity_owner = identity_owner
        self._due_members = due_members
        self._check_projection = check_projection
        self._balance_now = balance_now
        self._history_through = history_through
        self._lots_in_debit_order = lots_in_debit_order
        self._standing_now = standing_now
        self._member_now = member_now
        self._pepper = pepper
        self._programs = ProgramStates(store)
        for program_id in program_ids_of(store.list_streams(PROGRAM_PREFIX)):
            self._programs.load(program_id)
        retry = WriteRetry()  # one retry policy for member commands and program writes
        self.writer = CommandWriter(
            store,
            self,
            project,
            retry=retry,
            max_batch=max_batch,
            max_queue=max_queue,
            shared=shared,
            project_in_transaction=project_in_transaction,
        )
        self._program_writes = ProgramWrites(store, self._programs, self.writer.lock, shared=shared, retry=retry)

    def close(self) -> None:
        self.writer.stop()

    # -- ProgramDirectory -----------------------------------------------------------------------------------

    def program(self, program_id: str) -> prog.ProgramState:
        found = self._programs.get(program_id)
        if found is None and self.shared:
            found = self._programs.load(program_id)  # created by another replica
        if found is None:
            raise NotFound("program", program_id)
        return found

    def refresh(self, program_ids: set[str]) -> None:
        """On a shared store, pick up policy versions and clock moves other replicas wrote."""
        for program_id in program_ids:
            if program_id in self._programs:
                self._programs.load(program_id)

    def program_ids(self) -> list[str]:
        return self._programs.ids()

    def time_zone(self, program_id: str) -> ZoneInfo:
        """The zone the program's days and months are counted in: its policy's in force now (else its latest)."""
        policies = self.program(program_id).policies
        try:
            return ZoneInfo(policies.in_force_at(self.now(program_id)).policy.timezone)
        except NoPolicyInForce:
            return ZoneInfo(policies.latest.policy.timezone)

    def tier_in_effect(self, state: MemberState, at: datetime) -> str:
        """The tier in effect at ``at`` for ``state``, under the member's program's policy in force then."""
        try:
            policy = self.program(state.program_id).policies.in_force_at(at).policy
        except NoPolicyInForce:
            return state.tier
        return tier_in_effect(state, policy, at)

    def now(self, program_id: str) -> datetime:
        p = self.program(program_id)
        if p.clock == "test":
            assert p.test_time is not None
            return p.test_time
        return self.clock.now()

    def context(
        self, program_id: str, occurred_at: datetime | None, member_id: str, *, look_up_profile: bool = True
    ) -> Context:
        """What the rules see besides the member's state; ``look_up_profile=False`` skips the personal-data
        store for a member whose enrolment recorded that it has no profile."""
        p = self.program(program_id)
        now = self.now(program_id)
        profile = self.personal.load(program_id, member_id) if look_up_profile else None
        return Context(
            now=now,
            at=occurred_at or now,
            policies=p.policies,
            profile=profile.rule_inputs() if profile else cmd.Profile(),
        )

    def context_of(self, state: MemberState, occurred_at: datetime | None = None) -> Context:
        """:meth:`context` for a member whose state is at hand (its enrolment says whether to look up a profile)."""
        return self.context(state.program_id, occurred_at, state.member_id, look_up_profile=not state.no_profile)

    def due_at(self, state: MemberState) -> datetime | None:
        """When the member next has time-driven work (what the ``due`` read model holds), from its state."""
        return next_due(state, self.context_of(state))

    def identity_owner(self, program_id: str, identity: str) -> str | None:
        return self._identity_owner(program_id, identity)

    @property
    def pepper(self) -> bytes:
        """The identity pepper (a secret: never logged); an import digests the identities of its rows with it."""
        return self._pepper

    # -- programs -------------------------------------------------------------------------------------------

    def create_program(
        self, program_id: str, name: str, document: str, clock: str, test_time: datetime | None, idempotency_key: str = ""
    ) -> prog.ProgramState:
        state, _ = self._program_writes.write(
            program_id,
            idempotency_key,
            CreateProgram(name, document, clock, test_time),
            lambda s: prog.create_program(s, name=name, document=document, clock=clock, test_time=test_time, now=self.clock.now()),
        )
        return state

    def publish_policy(
        self, program_id: str, document: str, effective_from: datetime | None, idempotency_key: str = ""
    ) -> PolicyVersion:
        self.program(program_id)
        state, _ = self._program_writes.write(
            program_id,
            idempotency_key,
            PublishPolicy(document, effective_from),
            lambda s: prog.publish_policy(s, document=document, effective_from=effective_from, now=self.now(program_id)),
        )
        return state.policies.latest

    def get_policy(
        self, program_id: str, version: int | None = None, as_of: datetime | None = None
    ) -> tuple[PolicyVersion, list[PolicyVersion]]:
        p = self.program(program_id)
        if version:
            try:
                chosen = p.policies.get(version)
            except (KeyError, LookupError) as exc:
                raise NotFound("policy version", str(version)) from exc
        else:
            chosen = p.policies.in_force_at(as_of or self.now(program_id))
        return chosen, list(p.policies)

    @staticmethod
    def policy_document(pv: PolicyVersion) -> str:
        return dump_policy(pv.policy)

    def advance_clock(self, program_id: str, to: datetime, idempotency_key: str = "") -> dict[str, Any]:
        self.program(program_id)
        state, replayed = self._program_writes.write(
            program_id, idempotency_key, AdvanceClock(to), lambda s: prog.advance_clock(s, to=to)
        )
        counts = self.run_due(program_id, self.now(program_id))
        counts["events_written"] += 0 if replayed else 1  # the ClockAdvanced event itself
        counts["now"] = state.test_time
        return counts

    def run_due(self, program_id: str, upto: datetime) -> dict[str, Any]:
        """Tick every member whose next due moment is at or before ``upto`` (the scheduler and AdvanceClock)."""
        counts: dict[str, Any] = {
            "members_ticked": 0,
            "activations": 0,
            "expiries": 0,
            "holds_released": 0,
            "reviews": 0,
            "tier_changes": 0,
            "grants": 0,
            "overrides_ended": 0,
            "memberships_lapsed": 0,
            "events_written": 0,
        }
        seen_rounds = 0
        while True:
            members = self._due_members(program_id, upto, TICK_CHUNK)
            if not members or seen_rounds > 10_000:
                return counts
            seen_rounds += 1
            # Due work is the ledger's own: it waits for room in the queue and is not cut by a call's deadline.
            token = CALL_DEADLINE.set(None)
            try:
                results = self.writer.execute_many(
                    [cmd.Envelope(program_id, cmd.Tick(member_id=m), "") for m in members],
                    timeout=600,
                    wait_for_room=True,
                )
            finally:
                CALL_DEADLINE.reset(token)
            for r in results:
                if isinstance(r, BaseException):
                    if isinstance(r, NotFound):
                        continue
                    raise r
                counts["members_ticked"] += 1
                counts["events_written"] += len(r.events)
                for e in r.events:
                    key = {
                        "LotActivated": "activations",
                        "LotExpired": "expiries",
                        "HoldReleased": "holds_released",
                        "TierReviewed": "reviews",
                        "TierChanged": "tier_changes",
                        "EntitlementGranted": "grants",
                        "TierOverrideEnded": "overrides_ended",
                        "MembershipLapsed": "memberships_lapsed",
                    }.get(e.type)
                    if key:
                        counts[key] += 1

    # -- members --------------------------------------------------------------------------------------------

    def execute(self, envelope: cmd.Envelope, *, with_state: bool = False) -> CommandResult:
        """Run one member command through the writer. ``with_state``: the result also carries a copy of the
        member's state after the command, for an answer that needs more than its events and balance."""
        self.program(envelope.program_id)
        if isinstance(envelope.command, cmd.EraseMember):
            return self._erase(envelope, with_state=with_state)
        result: CommandResult = self.writer.execute(envelope, with_state=with_state)
        return result

    def _erase(self, envelope: cmd.Envelope, *, with_state: bool) -> CommandResult:
        """Record ``MemberErased`` (which also removes the member's identities from the read models), then destroy
        the vault entry. The vault is erased again on every retry and on MEMBER_ERASED, so an erasure whose
        vault step did not happen (a crash between the two) is completed by asking again."""
        member_id = envelope.command.member_id
        try:
            result: CommandResult = self.writer.execute(envelope, with_state=with_state)
        except Refusal as refusal:
            if refusal.reason == "MEMBER_ERASED":
                self.personal.erase(envelope.program_id, member_id)
            raise
        self.personal.erase(envelope.program_id, member_id)
        return result

    def after(self, result: CommandResult) -> MemberView:
        """The member as the write left it: from the result's own state copy when it has one; a replayed
        result has none, so the member's state now is read instead."""
        if result.state_after is None:
            return self.view(result.program_id, result.member_id)
        policies = self.program(result.program_id).policies
        return MemberView(result.state_after, result.recorded_at, policies.in_force_at(result.recorded_at))

    def enroll(
        self,
        program_id: str,
        member_id: str,
        identities: Sequence[tuple[str, str]],
        profile: PersonalProfile | None,
        idempotency_key: str,
        occurred_at: datetime | None = None,
        actor: cmd.Actor | None = None,
    ) -> CommandResult:
        self.program(program_id)
        digests = []
        for i, (kind, value) in enumerate(identities):
            if kind not in IDENTITY_KINDS:
                raise InvalidCommand(f"identities[{i}].kind", f"must be one of {', '.join(IDENTITY_KINDS)}")
            digests.append(identity_digest(self._pepper, program_id, kind, value))
        envelope = cmd.Envelope(
            program_id,
            cmd.EnrollMember(member_id=member_id, identities=tuple(digests), profile_stored=profile is not None),
            idempotency_key,
            occurred_at,
            actor or cmd.Actor(),
        )
        result: CommandResult = self.writer.execute(envelope)
        # A retried enrolment saves the profile again (the first save may not have happened), unless it was erased.
        if profile is not None and not (result.replayed and self._erased(program_id, member_id)):
            self.personal.save(program_id, member_id, profile)
        return result

    def _erased(self, program_id: str, member_id: str) -> bool:
        return self.view(program_id, member_id).state.erased_at is not None

    def lookup(self, program_id: str, kind: str, value: str) -> str:
        self.program(program_id)
        if kind not in IDENTITY_KINDS:
            raise InvalidCommand("identity.kind", f"must be one of {', '.join(IDENTITY_KINDS)}")
        owner = self._identity_owner(program_id, identity_digest(self._pepper, program_id, kind, value))
        if owner is None:
            raise NotFound("member", f"{kind} identity")
        return owner

    def quote(self, program_id: str, command: cmd.RecordPurchase, occurred_at: datetime | None) -> OrderEarning:
        self.program(program_id)
        result: OrderEarning = self.writer.execute(Quote(program_id, command, occurred_at))
        return result

    def view(self, program_id: str, member_id: str) -> MemberView:
        """The member's state now: due work runs first, so expired points are never shown as spendable.

        The writer answers from its cached state (reading only events other replicas appended), so a view
        costs a copy of the state, not a fold of the whole stream.
        """
        program = self.program(program_id)
        peeked: PeekResult = self.writer.execute(Peek(program_id, member_id))
        return MemberView(peeked.state, peeked.now, program.policies.in_force_at(peeked.now))

