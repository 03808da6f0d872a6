"""Enrolment, merging and erasure of members."""

from __future__ import annotations

from ledger.domain import events as ev
from ledger.domain.commands import EnrollMember, EraseMember, MergeMembers
from ledger.domain.decide import tiers
from ledger.domain.decide.context import Context, require_member
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.state import MemberState
from policies import window_start


def enroll(command: EnrollMember, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    if state.enrolled:
        raise Refusal("MEMBER_EXISTS", f"member {state.member_id} is already enrolled", {"id": state.member_id})
    pv = ctx.policy_at(ctx.now)
    return [
        ev.MemberEnrolled(
            at=ctx.now,
            member_id=command.member_id,
            identities=command.identities,
            tier=pv.policy.tiers.levels[0].code,
            policy_version=pv.version,
            profile_stored=command.profile_stored,
        )
    ]


def merge(
    command: MergeMembers, target: MemberState, source: MemberState, ctx: Context
) -> tuple[list[ev.MemberEvent], list[ev.MemberEvent]]:
    """Merge ``source`` into ``target``: returns (events for the target, events for the source)."""
    if command.member_id == command.source_member_id:
        raise InvalidCommand("source_member_id", "a member cannot be merged into itself")
    require_member(target)
    require_member(source)
    if source.household_of is not None:
        raise Refusal(
            "SOURCE_IN_HOUSEHOLD",
            f"member {source.member_id} is in the household of {source.household_of}; it leaves it first",
            {"member_id": source.member_id, "owner_member_id": source.household_of},
        )
    if source.holds:
        raise Refusal(
            "HOLDS_OPEN",
            f"member {source.member_id} has open holds; commit or release them first",
            {"member_id": source.member_id, "open_holds": len(source.holds)},
        )
    transfers = tuple(
        ev.LotTransfer(
            lot_id=f"M-{source.member_id}-{lot.lot_id}",
            source_lot_id=lot.lot_id,
            points=lot.remaining,
            active=lot.activated,
            occurred_at=lot.occurred_at,
            active_at=lot.active_at,
            expires_at=lot.expires_at,
        )
        for lot in sorted(source.lots.values(), key=lambda lot: lot.seq)
        if lot.remaining > 0 and not lot.expired
    )
    moved = sum(t.points for t in transfers)
    absorbed = ev.MemberAbsorbed(
        at=ctx.now,
        from_member_id=source.member_id,
        lots=transfers,
        arrears=source.arrears,
        growth=tuple(ev.GrowthTransfer(at=g.at, amount=g.amount) for g in source.growth),
        referrals=tuple(source.referrals),
        identities=tuple(source.identities),
        entitlement_ids=(),
        reason=command.reason or None,
    )
    policy = ctx.policy_at(ctx.now).policy
    start = window_start(policy, ctx.now)
    extra_growth = source.growth_between(start, ctx.now)
    target_events: list[ev.MemberEvent] = [absorbed]
    target_events += tiers.upgrade(target, ctx, growth=extra_growth)
    source_events: list[ev.MemberEvent] = [
        ev.MemberMerged(
            at=ctx.now, into_member_id=target.member_id, points_moved=moved, arrears_moved=source.arrears,
            reason=command.reason or None,
        )
    ]
    return target_events, source_events


def erase(command: EraseMember, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    """Record the erasure of the member's personal data (the vault entry is destroyed beside the log).

    A member merged into another may be erased too: its own profile is kept under its own id. A member erased
    once is refused with MEMBER_ERASED (the same request again gets its stored answer instead).
    """
    if not state.enrolled:
        raise NotFound("member", state.member_id)
    if state.erased_at is not None:
        raise Refusal(
            "MEMBER_ERASED",
            f"the personal data of member {state.member_id} was already erased",
            {"member_id": state.member_id, "erased_at": state.erased_at},
        )
    return [
        ev.MemberErased(
            at=ctx.now,
            reason=command.reason,
            request_reference=command.request_reference,
            # a member merged away has none that resolve to it: its identities moved to the survivor
            identities_removed=0 if state.merged_into is not None else len(set(state.identities)),
        )
    ]
