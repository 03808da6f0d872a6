"""Household staging: a family account's commands, which change two members' streams in one atomic append.

Joining, leaving and transferring points are decided on the member's state and the other member's it names
(the owner for a join or a leave, the receiver for a transfer), both brought up to now; growth a member earns
is counted on its owner's stream too when the policy says so (``household.growth_to_owner``). The events of
both streams are staged in the group and go out in its one append, at the versions they were decided on.
"""

from __future__ import annotations

from typing import Any

from ledger.application.member_staging import GroupStaging, StagedMember
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, household
from ledger.domain.errors import NotFound

HouseholdCommand = cmd.JoinHousehold | cmd.LeaveHousehold | cmd.TransferPoints


def _other_member(command: HouseholdCommand, s: StagedMember) -> str | None:
    """The other member the command names (None: none, or the member itself)."""
    if isinstance(command, cmd.LeaveHousehold):
        owner_id = s.state.household_of if s.state.enrolled and s.state.merged_into is None else None
        other_id = owner_id if owner_id is not None and owner_id != s.member_id else None
    elif isinstance(command, cmd.JoinHousehold):
        other_id = command.owner_member_id
    else:
        other_id = command.to_member_id
    return None if other_id == s.member_id else other_id


def stage_household(
    group: GroupStaging, req: cmd.Envelope, command: HouseholdCommand, s: StagedMember, ctx: Context
) -> tuple[list[ev.MemberEvent], dict[str, Any]]:
    """Decide a household command and apply the events of both streams.

    Returns the member's events, and for a transfer the receiver's lots (``extra["received"]``, kept with the
    answer so a retry gives them too)."""
    other_id = _other_member(command, s)
    if other_id is None:
        if not s.state.enrolled:
            raise NotFound("member", command.member_id)
        if isinstance(command, cmd.LeaveHousehold):
            mine, _ = household.leave(command, s.state, None, ctx)
        elif isinstance(command, cmd.JoinHousehold):
            mine, _ = household.join(command, s.state, s.state, ctx)
        else:
            mine, _ = household.transfer(command, s.state, s.state, ctx)
        group.apply(s, mine, req, ctx)
        return mine, {}
    other = group.load(req.program_id, other_id)
    if other.state.enrolled:
        group.catch_up(other, group.context(other, req.occurred_at))
    if not s.state.enrolled:
        raise NotFound("member", command.member_id)
    if isinstance(command, cmd.LeaveHousehold):
        mine, theirs = household.leave(command, s.state, other.state, ctx)
    elif isinstance(command, cmd.JoinHousehold):
        mine, theirs = household.join(command, s.state, other.state, ctx)
    else:
        mine, theirs = household.transfer(command, s.state, other.state, ctx)
    group.apply(s, mine, req, ctx)
    group.apply(other, theirs, req, ctx)
    received = [
        {"lot_id": t.lot_id, "source_lot_id": t.source_lot_id, "points": t.points,
         "arrears_repaid": t.arrears_repaid, "expires_at": t.expires_at.isoformat()}
        for e in theirs if isinstance(e, ev.PointsTransferredIn) for t in e.lots
    ]  # fmt: skip
    return mine, ({"received": received} if received else {})


def count_household_growth(
    group: GroupStaging, req: cmd.Envelope, s: StagedMember, entries: list[Any]
) -> None:
    """Growth a household member just earned or had taken back, counted on its owner's stream too (the
    policy's ``household.growth_to_owner``), in the same atomic append, with the upgrade it causes."""
    owner_id = s.state.household_of
    assert owner_id is not None
    owner = group.load(req.program_id, owner_id)
    octx = group.context(owner, req.occurred_at)
    group.catch_up(owner, octx)
    events = household.count_growth(owner.state, s.member_id, list(entries), octx)
    if events:
        group.apply(owner, events, req, octx)
