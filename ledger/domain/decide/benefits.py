"""Benefits: granting entitlements on the calendar and on tier changes, consuming and revoking them.

An entitlement is one grant of a benefit to one member: a coupon, free delivery, a card with quotas. Its id
names the owner (``"{member_id}/E-{benefit}-{version}"``), so a coupon code can only be written off by the
member who received it. Every limit a consumption runs into is refused with the numbers in the metadata:
the quota, what was used, what was asked for.

Calendar grants (birthday month, member day, quarterly, monthly for card holders) run as due work: the
member's cursor ``grants_through`` says up to which moment the calendar was considered; each due moment
emits the grants that apply or one ``GrantsChecked`` so the cursor moves on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from ledger.domain import commands as cmd
from ledger.domain.decide.context import Context, effective_tier, next_id
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.events import (
    EntitlementConsumed,
    EntitlementGranted,
    EntitlementRevoked,
    GrantsChecked,
    MemberEvent,
)
from ledger.domain.state import Entitlement, MemberState
from policies import (
    GrantRule,
    Policy,
    add_local_months,
    benefit_valid_until,
    benefit_value_fen,
    grant_moments,
    local_date,
    local_month_start,
    membership_grant_moments,
    month_end_exclusive,
    tier_rank,
)

EntitlementStatus = Literal["available", "used_up", "expired", "revoked"]

#: How far ahead ``next_due`` looks for the next calendar moment, nearest first: every calendar schedule
#: fires at least once a year, so a window a little over a year finds the next one if there is one.
_LOOKAHEAD_MONTHS = (2, 13)
_TICK = timedelta(microseconds=1)


# -- queries --------------------------------------------------------------------------------------------------


def entitlement_status(ent: Entitlement, at: datetime) -> EntitlementStatus:
    """What a member sees for ``ent`` at ``at``.

    Revoked wins over everything; then used up (a total quota reached); then expired (``at`` at or after
    ``valid_until``). Entitlements are valid from the moment they are granted, so "not yet valid" does not
    arise in practice; it is reported as available.
    """
    if ent.revoked_at is not None and ent.revoked_at <= at:
        return "revoked"
    if ent.quota_total is not None and ent.used_total >= ent.quota_total:
        return "used_up"
    if at >= ent.valid_until:
        return "expired"
    return "available"


def _month_bounds(policy: Policy, at: datetime) -> tuple[datetime, datetime]:
    """The local calendar month containing ``at``, as a half-open UTC interval."""
    return local_month_start(policy, at), month_end_exclusive(policy, at)


def used_in_month(ent: Entitlement, policy: Policy, at: datetime) -> int:
    """Quantity consumed in the local calendar month (policy time zone) that contains ``at``."""
    start, end = _month_bounds(policy, at)
    return sum(u.quantity for u in ent.uses if start <= u.at < end)


def remaining(ent: Entitlement) -> int | None:
    """What is left of the total quota (None: no total quota)."""
    if ent.quota_total is None:
        return None
    return max(ent.quota_total - ent.used_total, 0)


# -- granting -------------------------------------------------------------------------------------------------


def grant(
    state: MemberState,
    benefit_code: str,
    at: datetime,
    ctx: Context,
    *,
    source: str,
    n: int = 0,
    term_end: datetime | None = None,
    tier: str | None = None,
) -> EntitlementGranted:
    """One entitlement of ``benefit_code`` granted at ``at`` under the policy in force then.

    ``tier`` is the tier the value is judged by (default: the member's effective tier at ``at``);
    ``term_end`` bounds a benefit whose validity is the membership term. ``n`` tells apart several
    entitlements created by one decision.
    """
    version = ctx.policy_at(at)
    policy = version.policy
    benefit = policy.benefits.get(benefit_code)
    if benefit is None:
        raise InvalidCommand("benefit", f"unknown benefit {benefit_code!r}")
    judged_tier = tier if tier is not None else effective_tier(state, policy, at)
    return EntitlementGranted(
        at=at,
        entitlement_id=f"{state.member_id}/{next_id(state, 'E-' + benefit_code, n)}",
        benefit=benefit_code,
        name=benefit.name,
        kind=benefit.kind,
        value_fen=benefit_value_fen(policy, benefit_code, judged_tier),
        valid_from=at,
        valid_until=benefit_valid_until(policy, benefit_code, at, term_end),
        quota_total=benefit.quota_total,
        quota_per_month=benefit.quota_per_month,
        source=source,
        revoke_on=tuple(benefit.revoke_on),
        policy_version=version.version,
    )


def _plan_term_end(state: MemberState, plan: str | None, at: datetime) -> datetime | None:
    """The end of the covering term of ``plan`` (any plan if None) at ``at``, or None if none covers it."""
    ends = [m.term_end for m in state.memberships.values() if m.covers(at) and (plan is None or m.plan == plan)]
    return max(ends) if ends else None


def _moments(state: MemberState, policy: Policy, after: datetime, upto: datetime) -> list[tuple[datetime, GrantRule]]:
    """The calendar grants in ``(after, upto]``: the program's calendar, and the monthly grants of every
    membership term still running (a term ended, lapsed or cancelled grants nothing more)."""
    found = grant_moments(policy, after, upto)
    for m in state.memberships.values():
        if m.status == "active" and m.term_end > after and m.term_start <= upto:
            found += membership_grant_moments(policy, m.plan, m.term_start, m.term_end, after, upto)
    return sorted(found, key=lambda moment: moment[0])


def next_due(state: MemberState, ctx: Context) -> datetime | None:
    """The first calendar grant moment strictly after ``grants_through``.

    Each moment is judged by the policy in force at it: the version in force at the cursor answers until
    the next version takes effect, that version from then on.
    """
    cursor = state.grants_through
    if cursor is None:
        return None
    key = (cursor, tuple((m.plan, m.term_start, m.term_end) for m in state.memberships.values() if m.status == "active"))
    memo = _NEXT_DUE_MEMO.get(id(ctx.policies))
    if memo is not None and memo[0] is ctx.policies and key in memo[1]:
        return memo[1][key]
    found = _next_due(state, ctx, cursor)
    if memo is None or memo[0] is not ctx.policies:
        memo = (ctx.policies, {})
        _NEXT_DUE_MEMO[id(ctx.policies)] = memo
    if len(memo[1]) > 10_000:
        memo[1].clear()
    memo[1][key] = found
    return found


# The next grant moment depends only on the cursor, the program's policy versions and the member's active
# memberships; members share cursors (everyone's is the last 1st or 15th), so it is worth remembering.
_NEXT_DUE_MEMO: dict[int, tuple[object, dict[object, datetime | None]]] = {}


def _next_due(state: MemberState, ctx: Context, cursor: datetime) -> datetime | None:
    after, judged_at = cursor, cursor
    while True:
        policy = ctx.policy_at(judged_at).policy
        change = _next_change(ctx, judged_at)
        for months in _LOOKAHEAD_MONTHS:
            upto = add_local_months(policy, after, months)
            if change is not None:
                upto = min(upto, change - _TICK)
            found = _moments(state, policy, after, upto)
            if found:
                return found[0][0]
        if change is None:
            return None
        after, judged_at = max(after, change - _TICK), change


def _next_change(ctx: Context, after: datetime) -> datetime | None:
    """When the first policy version taking effect strictly after ``after`` does so (None: no later one)."""
    for v in ctx.policies.versions:
        if v.effective_from > after:
            return v.effective_from
    return None


def run_due(state: MemberState, at: datetime, ctx: Context) -> list[MemberEvent]:
    """The calendar grants due at ``at`` for this member (or one ``GrantsChecked``)."""
    version = ctx.policy_at(at)
    policy = version.policy
    tier = effective_tier(state, policy, at)
    day = local_date(policy, at)
    out: list[MemberEvent] = []
    seen: set[tuple[str, str]] = set()
    for t, rule in _moments(state, policy, at - _TICK, at):
        if t != at or (rule.schedule, rule.benefit) in seen:
            continue
        seen.add((rule.schedule, rule.benefit))
        if rule.min_tier is not None and tier_rank(policy, tier) < tier_rank(policy, rule.min_tier):
            continue
        term_end: datetime | None = None
        if rule.schedule == "birthday_month" and ctx.profile.birth_month != day.month:
            continue
        if rule.schedule == "membership_monthly":
            term_end = _plan_term_end(state, rule.plan, at)
            if term_end is None:
                continue
        out.append(
            grant(
                state,
                rule.benefit,
                at,
                ctx,
                source=f"schedule:{rule.schedule}:{rule.benefit}:{day.isoformat()}",
                n=len(out),
                term_end=term_end,
                tier=tier,
            )
        )
    return out or [GrantsChecked(at=at)]


# -- tier changes ---------------------------------------------------------------------------------------------


def _rule_min_tier(policy: Policy, ent: Entitlement) -> str | None:
    """The ``min_tier`` of the grant rule an entitlement came from (None: no tier condition)."""
    parts = ent.source.split(":")
    if parts[0] == "tier":
        schedule = "on_tier"
    elif parts[0] == "schedule" and len(parts) > 1:
        schedule = parts[1]
    else:
        return None
    tiers = [r.min_tier for r in policy.grants if r.benefit == ent.benefit and r.schedule == schedule]
    if not tiers:
        return None
    known = [t for t in tiers if t is not None]
    # Several rules for one benefit: the entitlement needs the lowest of their tiers.
    return min(known, key=lambda t: tier_rank(policy, t)) if len(known) == len(tiers) else None


def revocable(ent: Entitlement, at: datetime) -> bool:
    """Whether revoking ``ent`` at ``at`` takes anything away (not revoked, not expired, not used up)."""
    return entitlement_status(ent, at) == "available"


def _tier_perks(state: MemberState, tier: str, at: datetime, ctx: Context, n0: int) -> list[MemberEvent]:
    """Grants of the ``on_tier`` perks of ``tier`` (those whose ``min_tier`` it reaches), except those the
    member still holds an available entitlement of (from an earlier tier grant)."""
    policy = ctx.policy_at(at).policy
    rank = tier_rank(policy, tier)
    held = {e.benefit for e in state.entitlements.values() if e.source.startswith("tier:") and revocable(e, at)}
    out: list[MemberEvent] = []
    for rule in policy.grants:
        if rule.schedule != "on_tier" or rule.min_tier is None or rule.benefit in held:
            continue
        if tier_rank(policy, rule.min_tier) > rank:
            continue
        out.append(grant(state, rule.benefit, at, ctx, source=f"tier:{tier}:{rule.benefit}", n=n0 + len(out), tier=tier))
        held.add(rule.benefit)
    return out


def on_tier_change(
    state: MemberState, from_tier: str, to_tier: str, at: datetime, ctx: Context
) -> list[MemberEvent]:
    """Grants and revocations when the member's effective tier goes from ``from_tier`` to ``to_tier``.

    Up: the ``on_tier`` perks the member newly qualifies for, and any perk of a lower tier they no longer
    hold (one that ran out while they were in a grace period, say); a perk the member still holds an available
    entitlement of is not granted twice. Down: every available entitlement that may be revoked on a downgrade
    and whose rule asks for more than the new tier (the rule it was granted under).
    """
    policy = ctx.policy_at(at).policy
    new_rank = tier_rank(policy, to_tier)
    old_rank = tier_rank(policy, from_tier)
    if new_rank > old_rank:
        return _tier_perks(state, to_tier, at, ctx, 0)
    out: list[MemberEvent] = []
    if new_rank < old_rank:
        for ent in state.entitlements.values():
            if "downgrade" not in ent.revoke_on or not revocable(ent, at):
                continue
            min_tier = _rule_min_tier(ctx.policy_at(ent.granted_at).policy, ent)
            if min_tier is None or tier_rank(policy, min_tier) <= new_rank:
                continue
            out.append(EntitlementRevoked(at=at, entitlement_id=ent.entitlement_id, reason="downgrade"))
    return out


def renew_tier_perks(state: MemberState, tier: str, at: datetime, ctx: Context, *, n0: int = 0) -> list[MemberEvent]:
    """At a review the member passes: the ``on_tier`` perks of ``tier`` they no longer hold (a perk granted
    at the last tier change has usually run out by its anniversary) are granted again for the new year."""
    return _tier_perks(state, tier, at, ctx, n0)


# -- consuming ------------------------------------------------------------------------------------------------


def consume(command: cmd.ConsumeEntitlement, state: MemberState, ctx: Context) -> list[MemberEvent]:
    """Write off ``quantity`` uses of an entitlement at a till or a checkout, at business time ``ctx.at``."""
    if command.quantity < 1:
        raise InvalidCommand("quantity", "must be at least 1")
    ent = state.entitlements.get(command.entitlement_id)
    if ent is None:
        if not command.entitlement_id.startswith(f"{state.member_id}/"):
            raise Refusal(
                "ENTITLEMENT_NOT_OWNED",
                f"entitlement {command.entitlement_id!r} does not belong to member {state.member_id}",
                {"entitlement_id": command.entitlement_id},
            )
        raise NotFound("entitlement", command.entitlement_id)
    at = ctx.at
    if ent.revoked_at is not None:
        raise Refusal(
            "ENTITLEMENT_REVOKED",
            f"entitlement {ent.entitlement_id!r} was revoked ({ent.revoked_reason})",
            {
                "entitlement_id": ent.entitlement_id,
                "revoked_at": ent.revoked_at,
                "revoke_reason": ent.revoked_reason or "",
            },
        )
    if at < ent.valid_from:
        raise Refusal(
            "ENTITLEMENT_NOT_YET_VALID",
            f"entitlement {ent.entitlement_id!r} is valid from {ent.valid_from.isoformat()}",
            {"entitlement_id": ent.entitlement_id, "valid_from": ent.valid_from},
        )
    if at >= ent.valid_until:
        raise Refusal(
            "ENTITLEMENT_EXPIRED",
            f"entitlement {ent.entitlement_id!r} was valid until {ent.valid_until.isoformat()}",
            {"entitlement_id": ent.entitlement_id, "valid_until": ent.valid_until},
        )
    if ent.quota_total is not None and ent.used_total + command.quantity > ent.quota_total:
        raise Refusal(
            "QUOTA_EXHAUSTED",
            f"{ent.name}: {ent.used_total} of {ent.quota_total} used, {command.quantity} requested",
            {
                "entitlement_id": ent.entitlement_id,
                "period": "TOTAL",
                "limit": ent.quota_total,
                "used": ent.used_total,
                "requested": command.quantity,
            },
        )
    if ent.quota_per_month is not None:
        policy = ctx.policy_at(at).policy
        used = used_in_month(ent, policy, at)
        if used + command.quantity > ent.quota_per_month:
            _, resets_at = _month_bounds(policy, at)
            raise Refusal(
                "QUOTA_EXHAUSTED",
                f"{ent.name}: {used} of {ent.quota_per_month} this month used, {command.quantity} requested",
                {
                    "entitlement_id": ent.entitlement_id,
                    "period": "MONTH",
                    "limit": ent.quota_per_month,
                    "used": used,
                    "requested": command.quantity,
                    "resets_at": resets_at,
                },
            )
    return [
        EntitlementConsumed(
            at=at,
            entitlement_id=ent.entitlement_id,
            quantity=command.quantity,
            order_id=command.order_id,
            store_id=command.store_id,
        )
    ]

