"""The read-model rows of one member, derived from its :class:`~ledger.domain.state.MemberState` (pure; no SQL).

Every row is an immutable ``NamedTuple`` (cheap to build by the million during a rebuild) whose fields are
plain values: ids and codes are ``str``, points and money (fen) are ``int``, times are timezone-aware
``datetime`` objects as the state holds them (the SQLite tables store them as integer microseconds since the
Unix epoch, UTC; see :mod:`projections.codec`). Field order is the tables' column order.

:func:`member_rows` gives the current rows of a member (balance, lots, tier, the identities that resolve to it
and the standing row, which holds the entitlements and memberships); :func:`history_row` gives the history row of one event from the stored
envelope, the decoded event and the balances around it. Collections come in a fixed order (the order the
queries return them), so equal states give equal rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import NamedTuple

from ledger.domain import events as ev
from ledger.domain.queries import LotStatus, growth_delta, lot_status, order_of, summary
from ledger.domain.state import Balances, Lot, MemberState
from ledger.domain.streams import parse_member_stream
from ledger.eventlog.port import StoredEvent
from projections.standing import StandingRow, standing_row

# -- rows -------------------------------------------------------------------------------------------------------


class BalanceRow(NamedTuple):
    program_id: str
    member_id: str
    version: int
    active: int
    pending: int
    held: int
    available: int
    arrears: int
    lifetime_earned: int
    lifetime_redeemed: int
    lifetime_expired: int
    lifetime_clawed_back: int
    lifetime_returned: int
    lifetime_adjusted: int
    merged_into: str | None


class LotRow(NamedTuple):
    program_id: str
    member_id: str
    lot_id: str
    source: str
    amount: int
    remaining: int
    held: int
    occurred_at: datetime
    active_at: datetime
    expires_at: datetime
    order_id: str | None
    status: LotStatus
    seq: int | None
    """The order the lot was recorded in (the last key of the debit order); None only in rows written before
    the column existed."""


class TierRow(NamedTuple):
    program_id: str
    member_id: str
    tier: str
    tier_since: datetime | None
    next_review_at: datetime | None
    downgrade_at: datetime | None
    downgrade_target: str | None
    override_tier: str | None
    override_kind: str | None
    override_ends_at: datetime | None
    override_reason: str | None


class IdentityRow(NamedTuple):
    program_id: str
    identity: str
    member_id: str


class DueRow(NamedTuple):
    """When the member next has time-driven work (activation, expiry, review, ...); None: nothing scheduled."""

    program_id: str
    member_id: str
    due_at: datetime | None


class HistoryRow(NamedTuple):
    """One event of a member's stream with the balances right after it (``*_after``) and what it changed."""

    program_id: str
    member_id: str
    version: int
    position: int
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    points_delta_active: int
    points_delta_pending: int
    active_after: int
    pending_after: int
    held_after: int
    arrears_after: int
    available_after: int
    policy_version: int | None
    summary: str
    actor_json: str
    idempotency_key: str | None
    event_id: str | None
    """None only in rows written before the column existed (``ledger rebuild-projections`` fills them)."""
    points_delta: int
    """Change of active + pending - arrears (what a member sees their points move by)."""
    growth_delta: int
    order_id: str | None
    tier_after: str | None
    """The tier in effect after the event, at its business time (as ReplayMember shows it)."""


@dataclass(frozen=True, slots=True)
class MemberRows:
    """Every current row of one member (history aside), in query order."""

    balance: BalanceRow
    tier: TierRow
    lots: tuple[LotRow, ...]
    identities: tuple[IdentityRow, ...]
    standing: StandingRow


# -- from the state ---------------------------------------------------------------------------------------------


def balance_row(state: MemberState) -> BalanceRow:
    b = Balances.of(state)
    return BalanceRow(
        state.program_id,
        state.member_id,
        state.version,
        b.active,
        b.pending,
        b.held,
        b.available,
        b.arrears,
        state.lifetime_earned,
        state.lifetime_redeemed,
        state.lifetime_expired,
        state.lifetime_clawed_back,
        state.lifetime_returned,
        state.lifetime_adjusted,
        state.merged_into,
    )


def lot_row(state: MemberState, lot: Lot) -> LotRow:
    return LotRow(
        state.program_id,
        state.member_id,
        lot.lot_id,
        lot.source,
        lot.amount,
        lot.remaining,
        lot.held,
        lot.occurred_at,
        lot.active_at,
        lot.expires_at,
        lot.order_id,
        lot_status(lot),
        lot.seq,
    )


def lot_rows(state: MemberState) -> tuple[LotRow, ...]:
    """The member's lots, soonest expiry first (then by lot id)."""
    ordered = sorted(state.lots.values(), key=lambda lot: (lot.expires_at, lot.lot_id))
    return tuple(lot_row(state, lot) for lot in ordered)


def tier_row(state: MemberState) -> TierRow:
    notice = state.downgrade_notice
    override = state.override
    return TierRow(
        state.program_id,
        state.member_id,
        state.tier,
        state.tier_since,
        state.next_review_at,
        notice.downgrade_at if notice else None,
        notice.target_tier if notice else None,
        override.tier if override else None,
        override.kind if override else None,
        override.ends_at if override else None,
        override.reason if override else None,
    )


def member_identities(state: MemberState) -> tuple[str, ...]:
    """The identities that resolve to this member: its own and those it absorbed; none once merged away."""
    if state.merged_into is not None:
        return ()
    return tuple(sorted(set(state.identities)))


def member_rows(state: MemberState) -> MemberRows:
    return MemberRows(
        balance=balance_row(state),
        tier=tier_row(state),
        lots=lot_rows(state),
        identities=tuple(IdentityRow(state.program_id, i, state.member_id) for i in member_identities(state)),
        standing=standing_row(state),
    )


# -- history ----------------------------------------------------------------------------------------------------


_ACTOR_JSON: dict[tuple[tuple[str, str], ...], str] = {}
_ACTOR_JSON_MAX = 4096


def actor_json(actor: Mapping[str, str]) -> str:
    """The actor mapping as canonical JSON text (sorted keys, no spaces)."""
    key = tuple(actor.items())
    text = _ACTOR_JSON.get(key)
    if text is None:
        text = json.dumps(dict(actor), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if len(_ACTOR_JSON) >= _ACTOR_JSON_MAX:
            _ACTOR_JSON.clear()
        _ACTOR_JSON[key] = text
    return text


def history_row(
    stored: StoredEvent,
    event: ev.MemberEvent,
    before: Balances,
    after: Balances,
    *,
    program_id: str | None = None,
    member_id: str | None = None,
    tz: tzinfo = UTC,
    tier_after: str | None = None,
) -> HistoryRow:
    """The history row of ``event`` (stored as ``stored``), ``before`` and ``after`` it was applied.

    The ids come from the stream id unless given; dates in the summary are shown in ``tz`` (the program's
    time zone; UTC by default).
    """
    if program_id is None or member_id is None:
        parsed_program, parsed_member = parse_member_stream(stored.stream_id)
        program_id = program_id if program_id is not None else parsed_program
        member_id = member_id if member_id is not None else parsed_member
    return HistoryRow(
        program_id,
        member_id,
        stored.version,
        stored.position,
        stored.type,
        stored.occurred_at,
        stored.recorded_at,
        after.active - before.active,
        after.pending - before.pending,
        after.active,
        after.pending,
        after.held,
        after.arrears,
        after.active - after.held,
        stored.policy_version,
        summary(event, tz),
        actor_json(stored.actor),
        stored.idempotency_key,
        stored.event_id,
        (after.active + after.pending - after.arrears) - (before.active + before.pending - before.arrears),
        growth_delta(event),
        order_of(event) or None,
        tier_after,
    )


# -- summaries --------------------------------------------------------------------------------------------------
