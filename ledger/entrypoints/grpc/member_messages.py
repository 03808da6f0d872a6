"""The ledger's member state as ``loyalty.v1`` messages: balances, lots, entitlements, paid memberships, tier
overrides and the tier state with what the next tier still needs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from fractions import Fraction

from ledger.domain import events as ev
from ledger.domain import queries, standing
from ledger.domain.state import Balances, MemberState
from ledger.domain.state import Entitlement as EntitlementState
from ledger.domain.state import Lot as LotState
from ledger.domain.state import Membership as MembershipState
from ledger.domain.state import TierOverride as OverrideState
from ledger.entrypoints.grpc.enum_codes import (
    CHANNEL_CODES,
    ENTITLEMENT_STATUSES,
    LOT_SOURCES,
    MEMBERSHIP_STATUSES,
    OVERRIDE_KINDS,
)
from ledger.entrypoints.grpc.timestamps import (
    stamp,
)
from loyalty.v1 import common_pb2, member_pb2
from policies.model import Policy
from policies.ratio import format_ratio
from projections.rows import LotRow


def ratio(value: Fraction | str) -> str:
    if isinstance(value, Fraction):
        return format_ratio(value)
    return str(value)


def snapshot(balance: Balances) -> common_pb2.BalanceSnapshot:
    return common_pb2.BalanceSnapshot(
        active=balance.active,
        pending=balance.pending,
        held=balance.held,
        available=max(balance.available, 0),
        arrears=balance.arrears,
    )


def net_points(balance: Balances) -> int:
    return balance.active + balance.pending - balance.arrears


def actor_message(actor: Mapping[str, str]) -> common_pb2.Actor:
    return common_pb2.Actor(
        channel=common_pb2.Channel.ValueType(CHANNEL_CODES.get(actor.get("channel", ""), 0)),
        store_id=actor.get("store_id", ""),
        terminal_id=actor.get("terminal_id", ""),
        operator_id=actor.get("operator_id", ""),
        key_id=actor.get("key_id", ""),
        role=actor.get("role", ""),
    )


def portions(
    debits: Iterable[ev.LotDebit], lots: Mapping[str, LotState] | None = None
) -> list[common_pb2.LotPortion]:
    out = []
    for d in debits:
        portion = common_pb2.LotPortion(lot_id=d.lot_id, points=d.points)
        lot = (lots or {}).get(d.lot_id)
        if lot is not None:
            stamp(portion.expires_at, lot.expires_at)
        out.append(portion)
    return out


def new_lot_portion(lot: ev.NewLot) -> common_pb2.LotPortion:
    portion = common_pb2.LotPortion(lot_id=lot.lot_id, points=lot.points)
    stamp(portion.expires_at, lot.expires_at)
    return portion


def balance(state: MemberState, now: datetime) -> member_pb2.Balance:
    return balance_message(queries.balance_figures(state, now))


def balance_message(f: queries.BalanceFigures) -> member_pb2.Balance:
    msg = member_pb2.Balance(
        member_id=f.member_id,
        active=f.active,
        pending=f.pending,
        held=f.held,
        available=f.available,
        arrears=f.arrears,
        expiring_within_30_days=f.expiring_soon,
        next_expiry_points=f.next_expiry_points,
        lifetime_earned=f.lifetime_earned,
        lifetime_redeemed=f.lifetime_redeemed,
        lifetime_expired=f.lifetime_expired,
        version=f.version,
    )
    stamp(msg.next_expiry_at, f.next_expiry_at)
    stamp(msg.as_of, f.as_of)
    return msg


_LOT_STATUS: dict[queries.LotStatus, member_pb2.LotStatus.ValueType] = {
    "pending": member_pb2.LOT_STATUS_PENDING,
    "active": member_pb2.LOT_STATUS_ACTIVE,
    "spent": member_pb2.LOT_STATUS_SPENT,
    "expired": member_pb2.LOT_STATUS_EXPIRED,
}


def lot_status(lot: LotState) -> member_pb2.LotStatus.ValueType:
    return _LOT_STATUS[queries.lot_status(lot)]


def lot(lot: LotState, policy_version: int = 0) -> member_pb2.Lot:
    msg = member_pb2.Lot(
        lot_id=lot.lot_id,
        source=LOT_SOURCES.get(lot.source, member_pb2.LOT_SOURCE_UNSPECIFIED),
        amount=lot.amount,
        remaining=lot.remaining,
        held=lot.held,
        status=lot_status(lot),
        order_id=lot.order_id or "",
        policy_version=policy_version,
    )
    stamp(msg.occurred_at, lot.occurred_at)
    stamp(msg.active_at, lot.active_at)
    stamp(msg.expires_at, lot.expires_at)
    return msg


def lot_of_row(row: LotRow) -> member_pb2.Lot:
    """A lot as the read models hold it (the same message :func:`lot` makes from the state)."""
    msg = member_pb2.Lot(
        lot_id=row.lot_id,
        source=LOT_SOURCES.get(row.source, member_pb2.LOT_SOURCE_UNSPECIFIED),
        amount=row.amount,
        remaining=row.remaining,
        held=row.held,
        status=_LOT_STATUS[row.status],
        order_id=row.order_id or "",
    )
    stamp(msg.occurred_at, row.occurred_at)
    stamp(msg.active_at, row.active_at)
    stamp(msg.expires_at, row.expires_at)
    return msg


#: ``LotStatus`` values by the read models' names.
LOT_STATUS_NAMES: dict[member_pb2.LotStatus.ValueType, str] = {v: k for k, v in _LOT_STATUS.items()}


def granting_membership(source: str, benefit: str) -> str:
    """The id of the paid membership that granted an entitlement ("" if none).

    A membership's own grants have the source ``membership:{membership_id}:{benefit}``; the membership id may
    itself contain ``:``, so it is what lies between the prefix and the benefit code.
    """
    prefix, suffix = "membership:", f":{benefit}"
    if source.startswith(prefix) and source.endswith(suffix) and len(source) > len(prefix) + len(suffix):
        return source[len(prefix) : -len(suffix)]
    return ""


def entitlement(
    ent: EntitlementState, policy: Policy | None, at: datetime, policy_version: int = 0
) -> member_pb2.Entitlement:
    use = standing.entitlement_use(ent, policy, at)
    msg = member_pb2.Entitlement(
        entitlement_id=ent.entitlement_id,
        benefit_code=ent.benefit,
        name=ent.name,
        kind=ent.kind,
        value_fen=ent.value_fen or 0,
        quota_total=ent.quota_total or 0,
        used_total=ent.used_total,
        quota_per_month=ent.quota_per_month or 0,
        used_this_month=use.used_this_month,
        status=ENTITLEMENT_STATUSES[use.status],
        source=ent.source,
        membership_id=granting_membership(ent.source, ent.benefit),
        policy_version=policy_version,
    )
    stamp(msg.valid_from, ent.valid_from)
    stamp(msg.valid_until, ent.valid_until)
    stamp(msg.granted_at, ent.granted_at)
    stamp(msg.revoked_at, ent.revoked_at)
    return msg


def granted_entitlement(event: ev.EntitlementGranted) -> member_pb2.Entitlement:
    msg = member_pb2.Entitlement(
        entitlement_id=event.entitlement_id,
        benefit_code=event.benefit,
        name=event.name,
        kind=event.kind,
        value_fen=event.value_fen or 0,
        quota_total=event.quota_total or 0,
        quota_per_month=event.quota_per_month or 0,
        status=member_pb2.ENTITLEMENT_STATUS_AVAILABLE,
        source=event.source,
        membership_id=granting_membership(event.source, event.benefit),
        policy_version=event.policy_version,
    )
    stamp(msg.valid_from, event.valid_from)
    stamp(msg.valid_until, event.valid_until)
    stamp(msg.granted_at, event.at)
    return msg


def membership(m: MembershipState, policy: Policy | None) -> member_pb2.PaidMembership:
    msg = member_pb2.PaidMembership(
        membership_id=m.membership_id,
        plan_code=m.plan,
        status=MEMBERSHIP_STATUSES.get(m.status, member_pb2.PAID_MEMBERSHIP_STATUS_UNSPECIFIED),
        paid_fen=m.price_fen,
    )
    stamp(msg.term_start, m.term_start)
    stamp(msg.term_end, m.term_end)
    stamp(msg.cooling_off_ends_at, standing.cooling_off_ends(policy, m))
    return msg


def tier_override(o: OverrideState) -> member_pb2.TierOverride:
    msg = member_pb2.TierOverride(
        kind=OVERRIDE_KINDS.get(o.kind, member_pb2.TIER_OVERRIDE_KIND_UNSPECIFIED),
        tier=o.tier,
        reason=o.reason,
        operator_id=o.operator_id,
    )
    stamp(msg.starts_at, o.starts_at)
    stamp(msg.ends_at, o.ends_at)
    return msg


def _describe_gap(growth: int, referrals: int | None, purchase: bool) -> str:
    parts = []
    if growth:
        parts.append(f"{growth:,} more growth value")
    if referrals:
        parts.append(f"{referrals} more referral{'s' if referrals != 1 else ''}")
    text = ", or ".join(parts)
    if purchase:
        text = (text + ", and " if text else "") + "a recent purchase"
    return text


def tier_state(state: MemberState, policy: Policy, now: datetime) -> member_pb2.TierState:
    t = standing.tier_standing(state, policy, now)
    msg = member_pb2.TierState(
        member_id=state.member_id,
        tier=t.tier,
        earned_tier=t.earned_tier,
        growth_in_window=t.growth_in_window,
        referrals_in_window=t.referrals_in_window,
        next=member_pb2.TierGap(
            next_tier=t.next_tier or "",
            growth_needed=t.growth_needed,
            referrals_needed=t.referrals_needed or 0,
            purchase_needed=t.purchase_needed,
            description=_describe_gap(t.growth_needed, t.referrals_needed, t.purchase_needed) if t.next_tier else "",
        ),
        paid_memberships=[membership(m, policy) for m in t.memberships],
        version=t.version,
    )
    stamp(msg.since, t.since)
    stamp(msg.window_start, t.window_start)
    stamp(msg.next_review_at, t.next_review_at)
    if t.downgrade_notice is not None:
        msg.downgrade_notice.to_tier = t.downgrade_notice.target_tier
        stamp(msg.downgrade_notice.issued_at, t.downgrade_notice.issued_at)
        stamp(msg.downgrade_notice.downgrade_at, t.downgrade_notice.downgrade_at)
    if t.override is not None:
        msg.override.CopyFrom(tier_override(t.override))
    return msg
