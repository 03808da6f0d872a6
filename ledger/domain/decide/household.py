"""Family accounts (households): opening one, joining, leaving, and transfers of points between its members.

A household lives on its owner's stream: ``HouseholdCreated`` opens it, and the seat count is kept there
(``HouseholdMemberJoined`` / ``HouseholdMemberLeft``). Each member's own stream records its membership
(``JoinedHousehold`` / ``LeftHousehold``). A join or a leave is one decision written on both streams in one
atomic append, so two members taking the last seat at once on two replicas meet on the owner's stream: one
append names a version the other moved, is refused (``WrongExpectedVersion``), decided again and refused
``HOUSEHOLD_FULL``.

A transfer is one decision too: the giver's active, unreserved points are taken soonest-expiring first
(never pending or held points); the receiver gets one lot per giver's lot, with that lot's business time,
active time and expiry, named by ``source_lot_id`` under the transfer's id (the giver's
``PointsTransferredOut`` has the same ``transfer_id``). A receiver in arrears repays them first from what it
receives (the brief's arrears rule). The per-transfer and per-month limits are the policy version's in force
at the transfer's business time; the month is the local calendar month of that time.

With ``household.growth_to_owner`` on, growth a member earns (or has taken back) while in the household is
also counted on its owner's stream (``HouseholdGrowthCounted``) toward the owner's tier, in the same append.

Every function here is pure and returns the events for each stream it names; the writer appends them together.
"""

from __future__ import annotations

from ledger.domain import events as ev
from ledger.domain.commands import CreateHousehold, JoinHousehold, LeaveHousehold, TransferPoints
from ledger.domain.decide import tiers
from ledger.domain.decide.context import Context, check_business_time, require_member
from ledger.domain.decide.lots import spendable_lots, take
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.state import GrowthEntry, MemberState
from policies import Policy, judge_seat, judge_transfer, transfer_month

HOUSEHOLDS_DISABLED = "HOUSEHOLDS_DISABLED"


def _enabled(policy: Policy) -> None:
    if not policy.household.enabled:
        raise Refusal(HOUSEHOLDS_DISABLED, "this program has no family accounts")


def already_in(state: MemberState) -> Refusal:
    return Refusal(
        "ALREADY_IN_HOUSEHOLD",
        f"member {state.member_id} is already in the household of {state.household_of}",
        {"member_id": state.member_id, "owner_member_id": state.household_of or ""},
    )


def not_in(state: MemberState) -> Refusal:
    return Refusal(
        "NOT_IN_HOUSEHOLD", f"member {state.member_id} is in no household", {"member_id": state.member_id}
    )


def create(command: CreateHousehold, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    pv = ctx.policy_at(ctx.now)
    _enabled(pv.policy)
    if state.household_of is not None:
        raise already_in(state)
    return [
        ev.HouseholdCreated(
            at=ctx.now, max_members=pv.policy.household.max_members, policy_version=pv.version
        )
    ]


def join(
    command: JoinHousehold, member: MemberState, owner: MemberState, ctx: Context
) -> tuple[list[ev.MemberEvent], list[ev.MemberEvent]]:
    """The joining member's events and the owner's."""
    if command.member_id == command.owner_member_id:
        raise InvalidCommand("owner_member_id", "a member cannot join its own household")
    require_member(member)
    require_member(owner)
    pv = ctx.policy_at(ctx.now)
    _enabled(pv.policy)
    if member.household_of is not None:
        raise already_in(member)
    if not owner.owns_household:
        raise Refusal(
            "NOT_IN_HOUSEHOLD",
            f"member {owner.member_id} owns no household",
            {"member_id": owner.member_id},
        )
    verdict = judge_seat(pv.policy, len(owner.household_members))
    if verdict.reason is not None:
        raise Refusal(
            verdict.reason, verdict.message, {**verdict.details, "owner_member_id": owner.member_id}
        )
    limit = pv.policy.household.max_members
    return (
        [ev.JoinedHousehold(at=ctx.now, owner_member_id=owner.member_id, policy_version=pv.version)],
        [
            ev.HouseholdMemberJoined(
                at=ctx.now,
                member_id=member.member_id,
                members_after=len(owner.household_members) + 1,
                max_members=limit,
                policy_version=pv.version,
            )
        ],
    )


def leave(command: LeaveHousehold, state: MemberState, owner: MemberState | None, ctx: Context) -> tuple[
    list[ev.MemberEvent], list[ev.MemberEvent]
]:  # fmt: skip
    """The leaving member's events and its owner's (none when the owner closes its own empty household).

    ``owner`` is the owner's state (None when the member is the owner). An owner cannot leave while members
    remain: it is refused ``HOUSEHOLD_NOT_EMPTY`` naming them; each member leaves first (the owner's till may
    ask for that on its behalf), then the owner's leave closes the household. Points never move on a leave.
    """
    require_member(state)
    if state.household_of is None:
        raise not_in(state)
    if state.owns_household:
        if state.household_members:
            raise Refusal(
                "HOUSEHOLD_NOT_EMPTY",
                f"the household of {state.member_id} still has {len(state.household_members)} members",
                {"member_id": state.member_id, "members": ",".join(state.household_members)},
            )
        return [ev.HouseholdClosed(at=ctx.now)], []
    assert owner is not None and owner.member_id == state.household_of, "the owner's stream was loaded"
    return (
        [ev.LeftHousehold(at=ctx.now, owner_member_id=owner.member_id)],
        [
            ev.HouseholdMemberLeft(
                at=ctx.now, member_id=state.member_id, members_after=len(owner.household_members) - 1
            )
        ],
    )


def transfer_lot_id(giver: str, transfer_id: str, n: int) -> str:
    """The receiver's lot made from the giver's ``n``-th debited lot (unique: a giver's transfer ids are)."""
    return f"T-{giver}-{transfer_id}.{n}"


def transfer(
    command: TransferPoints, giver: MemberState, receiver: MemberState, ctx: Context
) -> tuple[list[ev.MemberEvent], list[ev.MemberEvent]]:
    """The giver's events and the receiver's."""
    if command.member_id == command.to_member_id:
        raise InvalidCommand("to_member_id", "a member cannot transfer points to itself")
    if command.points <= 0:
        raise InvalidCommand("points", "must be positive")
    require_member(giver)
    require_member(receiver)
    check_business_time(ctx)
    if command.transfer_id in giver.transfers_out:
        raise Refusal(
            "TRANSFER_EXISTS", f"transfer {command.transfer_id} already exists", {"id": command.transfer_id}
        )
    pv = ctx.version
    policy = pv.policy
    _enabled(policy)
    if giver.household_of is None:
        raise not_in(giver)
    if receiver.household_of != giver.household_of:
        raise Refusal(
            "NOT_SAME_HOUSEHOLD",
            f"members {giver.member_id} and {receiver.member_id} are not in the same household",
            {"member_id": giver.member_id, "to_member_id": receiver.member_id},
        )
    at = ctx.at
    lots = spendable_lots(giver)
    start, end = transfer_month(policy, at)
    given = giver.given_between(start, end)
    verdict = judge_transfer(
        policy,
        command.points,
        given_this_month=given,
        available_points=sum(lot.spendable for lot in lots),
        at=at,
    )
    if verdict.reason is not None:
        raise Refusal(verdict.reason, verdict.message, verdict.details)
    debits, missing = take(lots, command.points)
    assert missing == 0, "the verdict checked the points"
    by_id = {lot.lot_id: lot for lot in lots}
    arrears = receiver.arrears
    moved: list[ev.TransferredLot] = []
    for n, d in enumerate(debits, start=1):
        lot = by_id[d.lot_id]
        repaid = min(arrears, d.points)
        arrears -= repaid
        moved.append(
            ev.TransferredLot(
                lot_id=transfer_lot_id(giver.member_id, command.transfer_id, n),
                source_lot_id=lot.lot_id,
                points=d.points,
                arrears_repaid=repaid,
                occurred_at=lot.occurred_at,
                active_at=lot.active_at,
                expires_at=lot.expires_at,
            )
        )
    owner = giver.household_of
    out = ev.PointsTransferredOut(
        at=at,
        transfer_id=command.transfer_id,
        to_member_id=receiver.member_id,
        owner_member_id=owner,
        points=command.points,
        debits=tuple(debits),
        given_in_month=given + command.points,
        policy_version=pv.version,
    )
    into = ev.PointsTransferredIn(
        at=at,
        transfer_id=command.transfer_id,
        from_member_id=giver.member_id,
        owner_member_id=owner,
        points=command.points,
        lots=tuple(moved),
        arrears_repaid=receiver.arrears - arrears,
        policy_version=pv.version,
    )
    return [out], [into]


def counts_growth_to_owner(member: MemberState, ctx: Context) -> bool:
    """Whether growth the member earns now also counts toward its household owner's tier (the policy version in
    force at the command's business time says so, and the member is in a household it does not own)."""
    if member.household_of is None or member.household_of == member.member_id:
        return False
    rule = ctx.version.policy.household
    return rule.enabled and rule.growth_to_owner


def count_growth(
    owner: MemberState, member_id: str, entries: list[GrowthEntry], ctx: Context
) -> list[ev.MemberEvent]:
    """The owner's events for growth a member of its household just earned or had taken back: each entry at its
    own business time, then the upgrade (if any) that the owner's growth in the window now reaches."""
    if not owner.owns_household or member_id not in owner.household_members:
        return []  # the household changed under the member (decided again by the writer): nothing counts
    pv = ctx.policy_at(ctx.now)
    counted = [
        ev.HouseholdGrowthCounted(
            at=g.at, from_member_id=member_id, amount=g.amount, policy_version=pv.version
        )
        for g in entries
        if g.amount
    ]
    if not counted:
        return []
    scratch = owner.clone()
    for event in counted:
        scratch.growth.append(GrowthEntry(event.at, event.amount))
    out: list[ev.MemberEvent] = [*counted]
    # the upgrade is judged now, with the counted growth already in the state
    return out + tiers.upgrade(scratch, ctx.for_time(ctx.now))
