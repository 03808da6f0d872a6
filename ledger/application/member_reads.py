"""Answering the member queries: balance, lots, history pages, tier state, entitlements, exchanges, the
household and look-ups from the read models, or the writer's state.

:class:`MemberReads` is a part of :class:`~ledger.application.service.LedgerApp`. The read models answer when
they can answer for now (nothing due for the member, the caller's ``min_version`` reached, the rows and columns
an answer needs present); otherwise the member's state from the writer (due work applied first) or a replay
answers. Either way the same domain functions compute the answer.

Read-your-writes is one rule for every query: a write returns the member's version, and a query given it as
``min_version`` is never answered by a row older than that. The writer holds every acknowledged write (on a
shared store it reads what other replicas appended before answering), so a lagging row is bypassed rather
than polled, and the caller waits at most its call deadline
(:data:`~ledger.application.deadline.CALL_DEADLINE`) for the writer, which then fails with the writer's own
status (``DeadlineExceeded``, ``StoreUnavailable``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ledger.domain import program as prog
from ledger.domain.errors import InvalidCommand
from ledger.domain.queries import (
    BalanceFigures,
    balance_figures,
    current_tier,
    growth_delta,
    lot_status,
    order_of,
    summary,
)
from ledger.domain.state import Balances, MemberState
from policies import PolicyVersion
from projections.queries import BalanceNow, LotsPage, MemberNow, StandingNow
from projections.rows import HistoryRow, LotRow, lot_row
from projections.standing import EXCHANGES, HOUSEHOLD, StandingIncomplete, standing_state

if TYPE_CHECKING:
    from ledger.application.audit import ReplayEntry


@dataclass(frozen=True, slots=True)
class MemberView:
    state: MemberState
    now: datetime
    policy: PolicyVersion


@dataclass(frozen=True, slots=True)
class MemberLookup:
    """What LookupMember shows of the member an identity resolves to."""

    member_id: str
    merged_into: str | None
    tier: str
    """In effect now."""
    enrolled_at: datetime | None
    balance: BalanceFigures


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a member's history as ListHistory shows it."""

    version: int
    event_id: str
    event_type: str
    summary: str
    points_delta: int
    """Change of active + pending - arrears."""
    growth_delta: int
    after: Balances
    tier_after: str
    order_id: str
    policy_version: int
    actor: dict[str, str]
    occurred_at: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[HistoryEntry]
    """Newest first."""
    next_through: int
    """Where the next (older) page ends: the versions at or before it (0: this page was the oldest)."""


def _net(b: Balances) -> int:
    return b.active + b.pending - b.arrears


def _nothing_due(due_at: datetime | None, now: datetime) -> bool:
    """Whether a member whose next due moment is ``due_at`` has nothing due at ``now`` (its rows are current)."""
    return due_at is None or due_at > now


def _figures(found: BalanceNow, now: datetime) -> BalanceFigures:
    """:class:`BalanceFigures` from a balance row and its figures at ``now`` (as ``balance_figures`` of the state)."""
    r = found.row
    return BalanceFigures(
        member_id=r.member_id,
        active=r.active,
        pending=r.pending,
        held=r.held,
        available=max(r.available, 0),
        arrears=r.arrears,
        expiring_soon=found.expiring_soon,
        next_expiry_at=found.next_expiry_at,
        next_expiry_points=found.next_expiry_points,
        lifetime_earned=r.lifetime_earned,
        lifetime_redeemed=r.lifetime_redeemed,
        lifetime_expired=r.lifetime_expired,
        version=r.version,
        as_of=now,
    )


def _entry_of(r: HistoryRow) -> HistoryEntry:
    assert r.event_id is not None and r.tier_after is not None
    return HistoryEntry(
        version=r.version,
        event_id=r.event_id,
        event_type=r.event_type,
        summary=r.summary,
        points_delta=r.points_delta,
        growth_delta=r.growth_delta,
        after=Balances(
            active=r.active_after, pending=r.pending_after, held=r.held_after, arrears=r.arrears_after
        ),
        tier_after=r.tier_after,
        order_id=r.order_id or "",
        policy_version=r.policy_version or 0,
        actor=json.loads(r.actor_json),
        occurred_at=r.occurred_at,
        recorded_at=r.recorded_at,
    )


class MemberReads:
    """The member queries (a part of ``LedgerApp``)."""

    if TYPE_CHECKING:
        _balance_now: Callable[[str, str, datetime], BalanceNow | None] | None
        _history_through: Callable[[str, str, int | None, int], tuple[list[HistoryRow], int]] | None
        _lots_in_debit_order: Callable[[str, str, Sequence[str], int, int], LotsPage | None] | None
        _standing_now: Callable[[str, str], StandingNow | None] | None
        _member_now: Callable[[str, str, datetime], MemberNow | None] | None

        shared: bool

        def program(self, program_id: str) -> prog.ProgramState: ...

        def refresh(self, program_ids: set[str]) -> None: ...

        def now(self, program_id: str) -> datetime: ...

        def time_zone(self, program_id: str) -> ZoneInfo: ...

        def view(self, program_id: str, member_id: str) -> MemberView: ...

        def lookup(self, program_id: str, kind: str, value: str) -> str: ...

        def replay(
            self, program_id: str, member_id: str, after_version: int = 0
        ) -> Iterator[ReplayEntry]: ...

    def _now_for_reads(self, program_id: str) -> datetime:
        """The program's time now. On a shared store a test clock may have been moved by another replica: its
        program stream is read first (the writer does the same at the start of every group)."""
        if self.shared and self.program(program_id).clock == "test":
            self.refresh({program_id})
        return self.now(program_id)

    def balance(self, program_id: str, member_id: str, min_version: int = 0) -> BalanceFigures:
        """The member's balance now, from the read models when they can answer for now: the member has no
        time-driven work due (activation, expiry, a hold timing out) and its row has reached ``min_version`` (a
        version a write of the caller returned). Otherwise from the writer, which applies due work first, so
        points that have expired are never shown as spendable."""
        self.program(program_id)
        if self._balance_now is not None:
            now = self._now_for_reads(program_id)
            found = self._balance_now(program_id, member_id, now)
            if found is not None and found.row.version >= min_version and _nothing_due(found.due_at, now):
                return _figures(found, now)
        view = self.view(program_id, member_id)
        return balance_figures(view.state, view.now)

    def standing_view(
        self, program_id: str, member_id: str, min_version: int = 0, needs: Sequence[str] = ()
    ) -> MemberView:
        """The member now for its tier state and entitlements (GetTierState, ListEntitlements), and with
        ``needs`` for its exchanges or household (:meth:`exchanges_view`, :meth:`household_view`).

        From the read models (the standing row, :mod:`projections.standing`) when nothing is due for the member,
        the row has reached ``min_version`` and holds the facts in ``needs``: the view's state then holds only
        the facts those answers read (no lots, holds or orders), which the same domain functions turn into the
        same answers. Otherwise the writer's full state, after the due work (a review, a grant, an override
        ending, a membership lapsing)."""
        self.program(program_id)
        if self._standing_now is not None:
            now = self._now_for_reads(program_id)
            found = self._standing_now(program_id, member_id)
            if found is not None and found.row.version >= min_version and _nothing_due(found.due_at, now):
                try:
                    state = standing_state(found.row, needs)
                except StandingIncomplete:
                    return self.view(program_id, member_id)
                policy = self.program(program_id).policies.in_force_at(now)
                return MemberView(state, now, policy)
        return self.view(program_id, member_id)

    def exchanges_view(self, program_id: str, member_id: str, min_version: int = 0) -> MemberView:
        """The member now with its points-mall exchanges and entitlements (ListExchanges), as
        :meth:`standing_view`."""
        return self.standing_view(program_id, member_id, min_version, (EXCHANGES,))

    def household_views(
        self, program_id: str, member_id: str, min_version: int = 0
    ) -> tuple[MemberView, MemberView | None]:
        """The member now with its household facts and its household's owner (GetHousehold), each as
        :meth:`standing_view` (``min_version`` is the member's); no owner when the member is in no household.

        A join or a leave writes both members' streams, so the owner's row must agree with the member's: an owner
        row that does not list the member (it lags the member's write) is bypassed for the writer's state."""
        view = self.standing_view(program_id, member_id, min_version, (HOUSEHOLD,))
        owner_id = view.state.household_of
        if owner_id is None:
            return view, None
        if owner_id == member_id:
            return view, view
        owner = self.standing_view(program_id, owner_id, 0, (HOUSEHOLD,))
        if member_id not in owner.state.household_members:
            owner = self.view(program_id, owner_id)
        return view, owner

    def look_up(self, program_id: str, kind: str, value: str) -> MemberLookup:
        """The member an identity resolves to (the identity read model: an erased member's identities are gone,
        so it is not found), with its tier in effect now and its balance: from the balance and standing rows
        (one snapshot) when nothing is due for the member and both rows are of the same version, else from the
        writer's state."""
        member_id = self.lookup(program_id, kind, value)
        if self._member_now is not None:
            now = self._now_for_reads(program_id)
            found = self._member_now(program_id, member_id, now)
            if (
                found is not None
                and found.standing is not None
                and found.standing.version == found.balance.row.version
                and _nothing_due(found.balance.due_at, now)
            ):
                state = standing_state(found.standing)
                policy = self.program(program_id).policies.in_force_at(now).policy
                tier = current_tier(state, policy, now)
                return MemberLookup(
                    member_id, state.merged_into, tier, state.enrolled_at, _figures(found.balance, now)
                )
        view = self.view(program_id, member_id)
        return MemberLookup(
            member_id,
            view.state.merged_into,
            current_tier(view.state, view.policy.policy, view.now),
            view.state.enrolled_at,
            balance_figures(view.state, view.now),
        )

    def lots(
        self,
        program_id: str,
        member_id: str,
        statuses: Sequence[str],
        offset: int,
        size: int,
        min_version: int = 0,
    ) -> tuple[list[LotRow], int, int]:
        """Up to ``size`` of the member's lots after the first ``offset``, in the order debits consume them, with
        one of ``statuses`` (all when empty): the page, how many match in all, and the member's version. From
        the read models when nothing is due for the member (so every status is current) and they have reached
        ``min_version``, else from the writer."""
        self.program(program_id)
        if self._lots_in_debit_order is not None:
            now = self._now_for_reads(program_id)
            page = self._lots_in_debit_order(program_id, member_id, statuses, offset, size)
            if (
                page is not None
                and page.ordered
                and page.version >= min_version
                and _nothing_due(page.due_at, now)
            ):
                return page.lots, page.total, page.version
        view = self.view(program_id, member_id)
        wanted = set(statuses)
        rows = [
            lot_row(view.state, lot)
            for lot in sorted(view.state.lots.values(), key=lambda lot: lot.order_key())
            if not wanted or lot_status(lot) in wanted
        ]
        return rows[offset : offset + size], len(rows), view.state.version

    def history(
        self, program_id: str, member_id: str, through_version: int | None, size: int, min_version: int = 0
    ) -> HistoryPage:
        """A page of the member's history, newest first, of the events at or before ``through_version`` (None:
        from the newest). Read from the history read model by version; a stream whose rows predate the columns
        this needs (written before them, until ``ledger rebuild-projections``), or a first page whose read model
        has not reached ``min_version``, is replayed from the log instead."""
        self.program(program_id)
        if through_version is not None and through_version < 1:
            raise InvalidCommand("page_token", "is not a token this listing returned")
        if self._history_through is not None:
            rows, head = self._history_through(program_id, member_id, through_version, size)
            if through_version is not None and through_version > head and head:
                raise InvalidCommand("page_token", "is not a token this listing returned")
            current = through_version is not None or head >= min_version
            if current and rows and all(r.event_id is not None and r.tier_after is not None for r in rows):
                oldest = rows[-1].version
                return HistoryPage([_entry_of(r) for r in rows], oldest - 1 if oldest > 1 else 0)
        return self._history_replayed(program_id, member_id, through_version, size)

    def _history_replayed(
        self, program_id: str, member_id: str, through_version: int | None, size: int
    ) -> HistoryPage:
        entries = list(self.replay(program_id, member_id))
        end = len(entries) if through_version is None else through_version
        if end > len(entries):
            raise InvalidCommand("page_token", "is not a token this listing returned")
        start = max(0, end - size)
        tz = self.time_zone(program_id)
        page = [
            HistoryEntry(
                version=e.stored.version,
                event_id=e.stored.event_id,
                event_type=e.stored.type,
                summary=summary(e.event, tz),
                points_delta=_net(e.after) - _net(e.before),
                growth_delta=growth_delta(e.event),
                after=e.after,
                tier_after=e.tier_after,
                order_id=order_of(e.event),
                policy_version=e.stored.policy_version or 0,
                actor=dict(e.stored.actor),
                occurred_at=e.stored.occurred_at,
                recorded_at=e.stored.recorded_at,
            )
            for e in reversed(entries[start:end])
        ]
        return HistoryPage(page, start)
