"""The fold steps of the points mall (exchanges and their cancellation) and of households: seats, joining and
leaving, transfers of points, and household growth counted for the owner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.domain import events as ev
from ledger.domain.fold_steps.lots import InvariantBroken, add_lot, debit, return_points
from ledger.domain.state import Exchange, GrowthEntry, MemberState


def _exchanged(s: MemberState, e: ev.PointsExchanged) -> None:
    if e.exchange_id in s.exchanges:
        raise InvariantBroken(f"exchange {e.exchange_id} recorded twice")
    if not (debit(s, e.debits) == e.points):
        raise InvariantBroken("exchange debits do not add up")
    s.exchanges[e.exchange_id] = Exchange(
        e.exchange_id, e.reward_id, e.reward_name, e.at, e.points, e.cash_fen,
        [(d.lot_id, d.points) for d in e.debits], e.entitlement_id, e.stock_stream, e.policy_version,
    )  # fmt: skip
    s.lifetime_redeemed += e.points
    s.last_activity_at = e.at if s.last_activity_at is None else max(s.last_activity_at, e.at)


def _exchange_cancelled(s: MemberState, e: ev.ExchangeCancelled) -> None:
    x = s.exchanges.get(e.exchange_id)
    if x is None or x.cancelled_at is not None:
        raise InvariantBroken(f"exchange {e.exchange_id} cancelled while not open")
    if e.points_returned != x.points:
        raise InvariantBroken(f"exchange {e.exchange_id} returns {e.points_returned} of {x.points} points")
    return_points(s, e, "a cancelled exchange")
    x.cancelled_at = e.at
    x.cancel_reason = e.reason


def _household_created(s: MemberState, e: ev.HouseholdCreated) -> None:
    if s.household_of is not None:
        raise InvariantBroken("household opened by a member already in one")
    s.household_of = s.member_id
    s.household_members = []
    s.household_max = e.max_members


def _household_member_joined(s: MemberState, e: ev.HouseholdMemberJoined) -> None:
    if not s.owns_household or e.member_id in s.household_members:
        raise InvariantBroken(f"member {e.member_id} joined a household that cannot take it")
    s.household_members.append(e.member_id)
    if len(s.household_members) != e.members_after:
        raise InvariantBroken("household member count does not add up")


def _joined_household(s: MemberState, e: ev.JoinedHousehold) -> None:
    if s.household_of is not None:
        raise InvariantBroken("joined a household while in one")
    s.household_of = e.owner_member_id


def _household_member_left(s: MemberState, e: ev.HouseholdMemberLeft) -> None:
    if not s.owns_household or e.member_id not in s.household_members:
        raise InvariantBroken(f"member {e.member_id} left a household it was not in")
    s.household_members.remove(e.member_id)
    if len(s.household_members) != e.members_after:
        raise InvariantBroken("household member count does not add up")


def _left_household(s: MemberState, e: ev.LeftHousehold) -> None:
    if s.household_of != e.owner_member_id or s.owns_household:
        raise InvariantBroken(f"left household {e.owner_member_id} while not a member of it")
    s.household_of = None


def _household_closed(s: MemberState, e: ev.HouseholdClosed) -> None:
    if not s.owns_household or s.household_members:
        raise InvariantBroken("closed a household that is not its own or not empty")
    s.household_of = None
    s.household_max = 0


def _transferred_out(s: MemberState, e: ev.PointsTransferredOut) -> None:
    if e.transfer_id in s.transfers_out:
        raise InvariantBroken(f"transfer {e.transfer_id} recorded twice")
    if debit(s, e.debits) != e.points:
        raise InvariantBroken("transfer debits do not add up")
    s.transfers_out[e.transfer_id] = (e.at, e.points)


def _transferred_in(s: MemberState, e: ev.PointsTransferredIn) -> None:
    total = 0
    for t in e.lots:
        new = ev.NewLot(lot_id=t.lot_id, source="transfer", points=t.points, active_at=t.active_at,
                        expires_at=t.expires_at)  # fmt: skip
        # the giver's points were active: so is the lot, whatever the transfer's business time
        add_lot(s, new, max(e.at, t.active_at), t.occurred_at, t.arrears_repaid)
        total += t.points
    if total != e.points or sum(t.arrears_repaid for t in e.lots) != e.arrears_repaid:
        raise InvariantBroken("transferred lots do not add up")


def _household_growth_counted(s: MemberState, e: ev.HouseholdGrowthCounted) -> None:
    if not s.owns_household:
        raise InvariantBroken("household growth counted for a member that owns no household")
    s.growth.append(GrowthEntry(e.at, e.amount))


STEPS: dict[str, Callable[[MemberState, Any], None]] = {
    "PointsExchanged": _exchanged,
    "ExchangeCancelled": _exchange_cancelled,
    "HouseholdCreated": _household_created,
    "HouseholdMemberJoined": _household_member_joined,
    "JoinedHousehold": _joined_household,
    "HouseholdMemberLeft": _household_member_left,
    "LeftHousehold": _left_household,
    "HouseholdClosed": _household_closed,
    "PointsTransferredOut": _transferred_out,
    "PointsTransferredIn": _transferred_in,
    "HouseholdGrowthCounted": _household_growth_counted,
}
"""Event type -> the step that applies it."""
