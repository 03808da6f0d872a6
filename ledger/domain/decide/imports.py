"""Moving in: a member brought over from the previous system (pure).

The imported values are taken as they are; nothing is re-decided by the program's rules. A lot keeps its earn
and expiry dates (it expires at its given date through the normal due work); the tier is the given one (no
upgrade is judged at import); the growth value counts in the tier window at the end of the window the old
system counted it over; a paid term keeps its dates (its start grants were the old system's to give).

What the decision does choose is only the schedule the program runs from then on: the first tier review is the
first anniversary of ``tier_since`` after the import (none for the entry tier).
"""

from __future__ import annotations

from datetime import datetime

from ledger.domain import events as ev
from ledger.domain.commands import ImportMember
from ledger.domain.decide.context import Context
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.state import MemberState
from policies import Policy, review_due, tier_rank

MAX_LOTS = 1_000
"""Opening lots one member may bring."""


def _first_review(policy: Policy, tier: str, since: datetime, now: datetime) -> datetime | None:
    if tier_rank(policy, tier) == 0:
        return None
    review = review_due(policy, since)
    while review <= now:
        review = review_due(policy, review)
    return review


def import_member(command: ImportMember, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    """The ``MemberImported`` event of one import row, or why it cannot be imported."""
    if state.enrolled:
        raise Refusal(
            "MEMBER_EXISTS",
            f"member {state.member_id} already exists in the program",
            {"id": state.member_id},
        )
    now = ctx.now
    version = ctx.policy_at(now)
    policy = version.policy
    codes = [level.code for level in policy.tiers.levels]
    tier = command.tier or codes[0]
    if tier not in codes:
        raise InvalidCommand("tier", f"unknown tier {tier!r}; known: {', '.join(codes)}")
    since = command.tier_since or now
    if since > now:
        raise InvalidCommand("tier_since", "is after the time of the import")
    if len(command.lots) > MAX_LOTS:
        raise InvalidCommand("lots", f"at most {MAX_LOTS} opening lots per member")
    lots: list[ev.NewLot] = []
    for i, lot in enumerate(command.lots):
        if lot.points <= 0:
            raise InvalidCommand(f"lots[{i}].points", "must be positive")
        if lot.earned_at > now:
            raise InvalidCommand(f"lots[{i}].earned_at", "is after the time of the import")
        if lot.expires_at <= lot.earned_at:
            raise InvalidCommand(f"lots[{i}].expires_at", "must be after earned_at")
        if lot.expires_at <= now:
            raise InvalidCommand(
                f"lots[{i}].expires_at", "has already passed: an expired lot holds no points"
            )
        lots.append(
            ev.NewLot(
                lot_id=f"import-{i + 1}",
                source="imported",
                points=lot.points,
                active_at=lot.earned_at,
                expires_at=lot.expires_at,
            )
        )
    start, end = command.growth_window_start, command.growth_window_end
    if command.growth < 0:
        raise InvalidCommand("growth", "must not be negative")
    if command.growth and (start is None or end is None):
        raise InvalidCommand(
            "growth_window_end", "growth needs its window (growth_window_start and growth_window_end)"
        )
    if start is not None and end is not None and not start < end:
        raise InvalidCommand("growth_window_start", "must be before growth_window_end")
    if end is not None and end > now:
        raise InvalidCommand("growth_window_end", "is after the time of the import")
    term: ev.ImportedTerm | None = None
    m = command.membership
    if m is not None:
        if m.plan not in policy.memberships:
            known = ", ".join(sorted(policy.memberships))
            raise InvalidCommand("membership_plan", f"unknown plan {m.plan!r}; known: {known}")
        if not m.term_start < m.term_end:
            raise InvalidCommand("membership_end", "must be after membership_start")
        if m.term_end <= now:
            raise InvalidCommand(
                "membership_end", "has already passed: only a running or future term is imported"
            )
        if m.price_fen < 0:
            raise InvalidCommand("membership_paid_fen", "must not be negative")
        term = ev.ImportedTerm(
            membership_id=m.membership_id,
            plan=m.plan,
            price_fen=m.price_fen,
            term_start=m.term_start,
            term_end=m.term_end,
        )
    return [
        ev.MemberImported(
            at=now,
            member_id=command.member_id,
            identities=command.identities,
            source=command.source,
            row=command.row,
            tier=tier,
            tier_since=since,
            next_review_at=_first_review(policy, tier, since, now),
            lots=tuple(lots),
            growth=command.growth,
            growth_window_start=start if command.growth else None,
            growth_window_end=end if command.growth else None,
            membership=term,
            profile_stored=command.profile_stored,
            policy_version=version.version,
        )
    ]
