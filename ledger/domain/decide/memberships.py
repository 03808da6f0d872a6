"""Paid memberships ("black-gold card"): purchase, renewal, cancellation in the cooling-off period, lapse.

* A purchase must pay the plan's price exactly. If the member already holds the same plan (a term covering the
  purchase or starting later), the new term starts where the last one ends: renewal extends the term.
* A term runs ``term_months`` calendar months in the program's time zone. Its ``membership_start`` grants
  (e.g. the annual parenting card) are made when the term starts: at once for a new membership, at the
  term's start for a renewal (due work), so a card's quotas start afresh on its anniversary.
* Cancellation within ``cooling_off_days`` of the purchase refunds the full price and revokes what remains of
  the benefits that came with the membership (its start grants and the monthly coupons of its term, those whose
  ``revoke_on`` names ``membership_cancelled``): an unused coupon is revoked, a partly used card loses its
  remaining uses; what was used stays used.
* At the end of its term a membership lapses; benefits marked ``membership_lapsed`` are revoked.
"""

from __future__ import annotations

from datetime import datetime

from ledger.domain import commands as cmd
from ledger.domain.decide import benefits
from ledger.domain.decide.context import Context
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.events import (
    EntitlementRevoked,
    MemberEvent,
    MembershipCancelled,
    MembershipLapsed,
    MembershipPurchased,
)
from ledger.domain.state import Membership, MemberState
from policies import GrantRule, Policy, cooling_off_end, term_end


def _start_rules(policy: Policy, plan: str) -> list[GrantRule]:
    return [r for r in policy.grants if r.schedule == "membership_start" and r.plan in (None, plan)]


def _start_grants(state: MemberState, m: Membership, at: datetime, ctx: Context, n0: int = 0) -> list[MemberEvent]:
    """The ``membership_start`` grants of membership ``m`` whose term starts at ``at``."""
    policy = ctx.policy_at(at).policy
    return [
        benefits.grant(
            state,
            rule.benefit,
            at,
            ctx,
            source=f"membership:{m.membership_id}:{rule.benefit}",
            n=n0 + i,
            term_end=m.term_end,
        )
        for i, rule in enumerate(_start_rules(policy, m.plan))
    ]


def _revocations(state: MemberState, m: Membership, at: datetime, ctx: Context, reason: str) -> list[MemberEvent]:
    """Revoke what remains of the benefits that came with ``m`` and may be revoked for ``reason``.

    These are the membership's own grants (source exactly ``membership:{id}:{benefit}``: another membership's
    id may begin with ``{id}:``) and, when no other term of the same plan carries on at ``at``, the monthly
    grants for holders of the plan made during this term.
    """
    policy = ctx.policy_at(at).policy
    monthly = {r.benefit for r in policy.grants if r.schedule == "membership_monthly" and r.plan in (None, m.plan)}
    continues = any(
        o.membership_id != m.membership_id and o.plan == m.plan and o.covers(at) for o in state.memberships.values()
    )
    own = f"membership:{m.membership_id}:"
    out: list[MemberEvent] = []
    for ent in state.entitlements.values():
        if reason not in ent.revoke_on or not benefits.revocable(ent, at):
            continue
        monthly_of_term = (
            not continues
            and ent.source.startswith("schedule:membership_monthly:")
            and ent.benefit in monthly
            and m.term_start <= ent.granted_at < m.term_end
        )
        if not (ent.source == own + ent.benefit or monthly_of_term):
            continue
        out.append(EntitlementRevoked(at=at, entitlement_id=ent.entitlement_id, reason=reason))
    return out


def purchase(command: cmd.PurchaseMembership, state: MemberState, ctx: Context) -> list[MemberEvent]:
    """Buy (or renew) a paid membership at business time ``ctx.at``."""
    version = ctx.version
    policy = version.policy
    plan = policy.memberships.get(command.plan)
    if plan is None:
        known = ", ".join(sorted(policy.memberships))
        raise InvalidCommand("plan", f"unknown plan {command.plan!r}; known: {known}")
    if command.paid_fen != plan.price_fen:
        raise InvalidCommand(
            "paid_fen", f"must be the price of plan {command.plan}, {plan.price_fen} fen; {command.paid_fen} fen paid"
        )
    if command.membership_id in state.memberships:
        raise Refusal(
            "MEMBERSHIP_EXISTS",
            f"membership {command.membership_id!r} already exists",
            {"id": command.membership_id},
        )
    at = ctx.at
    current = [
        m for m in state.memberships.values() if m.status == "active" and m.plan == command.plan and m.term_end > at
    ]
    renewal_of: str | None = None
    term_start = at
    if current:
        last = max(current, key=lambda m: (m.term_end, m.membership_id))
        renewal_of = last.membership_id
        term_start = last.term_end
    ends = term_end(policy, command.plan, term_start)
    out: list[MemberEvent] = [
        MembershipPurchased(
            at=at,
            membership_id=command.membership_id,
            plan=command.plan,
            price_fen=plan.price_fen,
            term_start=term_start,
            term_end=ends,
            renewal_of=renewal_of,
            policy_version=version.version,
        )
    ]
    if term_start == at:
        new = Membership(command.membership_id, command.plan, plan.price_fen, at, term_start, ends)
        out += _start_grants(state, new, at, ctx)
    return out


def cancel(command: cmd.CancelMembership, state: MemberState, ctx: Context) -> list[MemberEvent]:
    """Cancel a membership within its cooling-off period: full refund, remaining benefits revoked."""
    m = state.memberships.get(command.membership_id)
    if m is None:
        raise NotFound("membership", command.membership_id)
    if m.status != "active":
        raise Refusal(
            "MEMBERSHIP_NOT_ACTIVE",
            f"membership {m.membership_id!r} is {m.status}",
            {"membership_id": m.membership_id, "status": m.status.upper()},
        )
    at = ctx.at
    bought_under = ctx.policy_at(m.purchased_at).policy
    plan = bought_under.memberships.get(m.plan)
    days = plan.cooling_off_days if plan is not None else 0
    ends = cooling_off_end(bought_under, m.plan, m.purchased_at) if plan is not None else m.purchased_at
    if at >= ends:
        raise Refusal(
            "COOLING_OFF_ENDED",
            f"membership {m.membership_id!r} can be cancelled only within {days} days of its purchase",
            {
                "membership_id": m.membership_id,
                "cooling_off_ended_at": ends,
                "purchased_at": m.purchased_at,
                "cooling_off_days": days,
            },
        )
    out: list[MemberEvent] = [
        MembershipCancelled(at=at, membership_id=m.membership_id, refund_fen=m.price_fen, reason=command.reason)
    ]
    out += _revocations(state, m, at, ctx, "membership_cancelled")
    return out


def _pending_start(m: Membership, ctx: Context) -> bool:
    """A term bought ahead (a renewal) whose start grants have not been made yet, and that has some."""
    return (
        m.status == "active"
        and not m.benefits_granted
        and m.term_start > m.purchased_at
        and bool(_start_rules(ctx.policy_at(m.term_start).policy, m.plan))
    )


def next_due(state: MemberState, ctx: Context) -> datetime | None:
    moments: list[datetime] = []
    for m in state.memberships.values():
        if m.status != "active":
            continue
        moments.append(m.term_end)
        if _pending_start(m, ctx):
            moments.append(m.term_start)
    return min(moments) if moments else None


def run_due(state: MemberState, at: datetime, ctx: Context) -> list[MemberEvent]:
    """Terms ending at ``at`` lapse (then what they carried is revoked); terms starting at ``at`` get their grants."""
    out: list[MemberEvent] = []
    ordered = sorted(state.memberships.values(), key=lambda m: (m.term_start, m.membership_id))
    revoked: set[str] = set()
    for m in ordered:
        if m.status == "active" and m.term_end == at:
            out.append(MembershipLapsed(at=at, membership_id=m.membership_id))
            for e in _revocations(state, m, at, ctx, "membership_lapsed"):
                assert isinstance(e, EntitlementRevoked)
                if e.entitlement_id not in revoked:
                    revoked.add(e.entitlement_id)
                    out.append(e)
    granted = 0
    for m in ordered:
        if m.term_start == at and _pending_start(m, ctx):
            grants = _start_grants(state, m, at, ctx, granted)
            granted += len(grants)
            out += grants
    return out
