"""Member events built by hand (no policy involved) for the projection tests, and a small fold around them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

from ledger.domain import events as ev
from ledger.domain.evolve import evolve
from ledger.domain.state import Balances, MemberState
from ledger.domain.streams import parse_member_stream
from ledger.eventlog.port import NewEvent, StoredEvent
from projections.rows import HistoryRow, history_row

PROGRAM = "little_sprout"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Shanghai wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def stream(member_id: str, program_id: str = PROGRAM) -> str:
    return f"member-{program_id}-{member_id}"


END_OF_MARCH_2027 = sh(2027, 4, 1)


def enrolled(
    at: datetime, member_id: str, identities: Sequence[str], tier: str = "bronze"
) -> ev.MemberEnrolled:
    return ev.MemberEnrolled(
        at=at, member_id=member_id, identities=tuple(identities), tier=tier, policy_version=1
    )


def purchase(
    at: datetime,
    order_id: str,
    points: int,
    *,
    active_at: datetime,
    expires_at: datetime = END_OF_MARCH_2027,
    multiplier: str = "1",
    rule: str = "base",
    points_paid: int = 0,
) -> ev.PurchaseRecorded:
    paid = points * 100
    return ev.PurchaseRecorded(
        at=at,
        order_id=order_id,
        lines=(
            ev.EarnedLine(
                line_id="L1",
                sku="SKU1",
                category="milk",
                quantity=1,
                paid_fen=paid,
                rate="1",
                base_points=points,
                bonus_points=0,
                points=points,
            ),
        ),
        order_total_fen=paid,
        points_paid=points_paid,
        tier="bronze",
        multiplier=multiplier,
        multiplier_rule=rule,
        candidates=(),
        points=points,
        growth=paid // 100,
        lot=ev.NewLot(
            lot_id=f"P-{order_id}",
            source="purchase",
            points=points,
            active_at=active_at,
            expires_at=expires_at,
            order_id=order_id,
        )
        if points
        else None,
        policy_version=1,
    )


def awarded(
    at: datetime, lot_id: str, points: int, *, behaviour: str = "review", reference: str = "R1"
) -> ev.PointsAwarded:
    return ev.PointsAwarded(
        at=at,
        behaviour=behaviour,
        reference=reference,
        cap_group=behaviour,
        points=points,
        growth=0,
        counts_as_referral=False,
        lot=ev.NewLot(
            lot_id=lot_id, source="behaviour", points=points, active_at=at, expires_at=END_OF_MARCH_2027
        ),
        arrears_repaid=0,
        policy_version=1,
    )


def activated(at: datetime, lot_id: str, points: int) -> ev.LotActivated:
    return ev.LotActivated(at=at, lot_id=lot_id, points=points, arrears_repaid=0)


def held(at: datetime, hold_id: str, order_id: str, allocations: dict[str, int]) -> ev.PointsHeld:
    points = sum(allocations.values())
    return ev.PointsHeld(
        at=at,
        hold_id=hold_id,
        order_id=order_id,
        points=points,
        order_total_fen=10_000,
        cap_points=1_000,
        value_fen=points,
        expires_at=at + timedelta(minutes=30),
        allocations=tuple(ev.LotDebit(lot_id=k, points=v) for k, v in allocations.items()),
        policy_version=1,
    )


def committed(
    at: datetime, hold_id: str, order_id: str, debits: dict[str, int], released: int
) -> ev.HoldCommitted:
    return ev.HoldCommitted(
        at=at,
        hold_id=hold_id,
        order_id=order_id,
        points=sum(debits.values()),
        debits=tuple(ev.LotDebit(lot_id=k, points=v) for k, v in debits.items()),
        released=released,
    )


def expired(at: datetime, lot_id: str, points: int) -> ev.LotExpired:
    return ev.LotExpired(at=at, lot_id=lot_id, points=points)


def membership(at: datetime, membership_id: str, plan: str, price_fen: int) -> ev.MembershipPurchased:
    return ev.MembershipPurchased(
        at=at,
        membership_id=membership_id,
        plan=plan,
        price_fen=price_fen,
        term_start=at,
        term_end=at.replace(year=at.year + 1),
        renewal_of=None,
        policy_version=1,
    )


def granted(at: datetime, entitlement_id: str, source: str) -> ev.EntitlementGranted:
    return ev.EntitlementGranted(
        at=at,
        entitlement_id=entitlement_id,
        benefit="coupon_10",
        name="10 yuan coupon",
        kind="coupon",
        value_fen=1_000,
        valid_from=at,
        valid_until=at + timedelta(days=30),
        quota_total=2,
        quota_per_month=None,
        source=source,
        revoke_on=(),
        policy_version=1,
    )


def consumed(at: datetime, entitlement_id: str, order_id: str) -> ev.EntitlementConsumed:
    return ev.EntitlementConsumed(
        at=at, entitlement_id=entitlement_id, quantity=1, order_id=order_id, store_id="S1"
    )


def tier_changed(at: datetime, from_tier: str, to_tier: str, next_review_at: datetime) -> ev.TierChanged:
    return ev.TierChanged(
        at=at,
        from_tier=from_tier,
        to_tier=to_tier,
        reason="upgrade",
        growth_in_window=500,
        referrals_in_window=0,
        next_review_at=next_review_at,
        policy_version=1,
    )


def downgrade_notice(at: datetime, target: str, downgrade_at: datetime) -> ev.TierReviewed:
    return ev.TierReviewed(
        at=at,
        outcome="notice",
        qualifying_tier=target,
        growth_in_window=10,
        next_review_at=None,
        downgrade_at=downgrade_at,
        policy_version=1,
    )


def override(at: datetime, tier: str, ends_at: datetime) -> ev.TierOverrideSet:
    return ev.TierOverrideSet(
        at=at,
        tier=tier,
        kind="temporary_upgrade",
        ends_at=ends_at,
        reason="spring campaign",
        operator_id="op1",
    )


def merged(at: datetime, into: str, points: int) -> ev.MemberMerged:
    return ev.MemberMerged(at=at, into_member_id=into, points_moved=points, arrears_moved=0)


def absorbed(
    at: datetime, from_member: str, lots: Sequence[tuple[str, int, datetime]], identities: Sequence[str]
) -> ev.MemberAbsorbed:
    return ev.MemberAbsorbed(
        at=at,
        from_member_id=from_member,
        lots=tuple(
            ev.LotTransfer(
                lot_id=f"M-{from_member}-{lot_id}",
                source_lot_id=lot_id,
                points=points,
                active=True,
                occurred_at=occurred,
                active_at=occurred,
                expires_at=END_OF_MARCH_2027,
            )
            for lot_id, points, occurred in lots
        ),
        arrears=0,
        growth=(),
        referrals=(),
        identities=tuple(identities),
        entitlement_ids=(),
    )


# -- envelopes ----------------------------------------------------------------------------------------------------


def new_event(event: ev.MemberEvent, event_id: str, *, key: str | None = None) -> NewEvent:
    return NewEvent(
        event_id=event_id,
        type=event.type,
        schema_version=1,
        occurred_at=event.at,
        recorded_at=max(event.at, sh(2026, 3, 1)).astimezone(UTC) + timedelta(seconds=1),
        policy_version=getattr(event, "policy_version", None),
        idempotency_key=key,
        correlation_id=None,
        causation_id=None,
        actor={"channel": "pos", "store_id": "S1"},
        payload=ev.encode(event),
    )


def stored(event: ev.MemberEvent, member_id: str, version: int, position: int) -> StoredEvent:
    n = new_event(event, f"e-{member_id}-{version}", key=f"k-{position}")
    return StoredEvent(
        event_id=n.event_id,
        type=n.type,
        schema_version=n.schema_version,
        occurred_at=n.occurred_at.astimezone(UTC),
        recorded_at=n.recorded_at,
        policy_version=n.policy_version,
        idempotency_key=n.idempotency_key,
        correlation_id=None,
        causation_id=None,
        actor=MappingProxyType(dict(n.actor)),
        payload=n.payload,
        stream_id=stream(member_id),
        version=version,
        position=position,
        prev_hash=bytes(32),
        hash=bytes(32),
    )


def fold_stored(
    state: MemberState | None, events: Sequence[StoredEvent], *, tz: ZoneInfo = SHANGHAI
) -> tuple[MemberState, list[HistoryRow]]:
    """The fold a rebuild needs: decode, evolve, one history row per event."""
    if state is None:
        program_id, member_id = parse_member_stream(events[0].stream_id)
        state = MemberState(program_id=program_id, member_id=member_id)
    rows: list[HistoryRow] = []
    before = Balances.of(state)
    for s in events:
        event = ev.decode(s.payload)
        evolve(state, event)
        after = Balances.of(state)
        rows.append(history_row(s, event, before, after, tz=tz))
        before = after
    return state, rows


def simple_due_at(state: MemberState) -> datetime | None:
    """A stand-in for the domain's due computation: the next activation or expiry of a lot."""
    if state.merged_into is not None:
        return None
    moments = [lot.active_at for lot in state.lots.values() if not lot.activated and not lot.expired]
    moments += [lot.expires_at for lot in state.lots.values() if not lot.expired and lot.remaining > 0]
    return min(moments) if moments else None


def member_one() -> list[ev.MemberEvent]:
    """A member with every kind of row: lots in all four states, a hold, a membership, a coupon, a tier."""
    return [
        enrolled(sh(2026, 3, 1, 10), "m1", ["idh-m1-phone", "idh-m1-wechat"]),
        purchase(
            sh(2026, 3, 2, 12), "O1", 120, active_at=sh(2026, 3, 17), multiplier="3/2", rule="tier:gold"
        ),
        awarded(sh(2026, 3, 3, 9), "B-1", 10),
        activated(sh(2026, 3, 17), "P-O1", 120),
        held(sh(2026, 3, 18, 15), "H1", "O2", {"B-1": 10, "P-O1": 40}),
        committed(sh(2026, 3, 18, 15, 5), "H1", "O2", {"B-1": 10, "P-O1": 30}, released=10),
        purchase(sh(2026, 3, 20, 11), "O3", 30, active_at=sh(2026, 4, 4), expires_at=sh(2026, 5, 1)),
        activated(sh(2026, 4, 4), "P-O3", 30),
        expired(sh(2026, 5, 1), "P-O3", 30),
        purchase(sh(2026, 5, 2, 11), "O4", 7, active_at=sh(2026, 5, 17)),
        tier_changed(sh(2026, 5, 2, 11), "bronze", "silver", sh(2027, 1, 1)),
        membership(sh(2026, 5, 2, 12), "MS1", "plus", 9_900),
        granted(sh(2026, 5, 2, 12), "E1", "membership:MS1:coupon_10"),
        consumed(sh(2026, 5, 3, 12), "E1", "O5"),
        override(sh(2026, 5, 4, 9), "gold", sh(2026, 6, 1)),
    ]
