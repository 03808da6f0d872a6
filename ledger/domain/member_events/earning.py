"""The events of earning and spending points: purchases, awards, holds and their commits, refunds,
adjustments, and lots activating or expiring."""

from __future__ import annotations

from typing import Literal

from ledger.domain.member_events.base import Instant, LotDebit, NewLot, _Event, _Model


class EarnedLine(_Model):
    line_id: str
    sku: str
    category: str
    quantity: int
    paid_fen: int
    rate: str
    base_points: int
    bonus_points: int
    points: int


class Candidate(_Model):
    rule: str
    factor: str


class PurchaseRecorded(_Event):
    type: Literal["PurchaseRecorded"] = "PurchaseRecorded"
    order_id: str
    lines: tuple[EarnedLine, ...]
    order_total_fen: int
    points_paid: int
    tier: str
    multiplier: str
    multiplier_rule: str
    candidates: tuple[Candidate, ...]
    points: int
    growth: int
    lot: NewLot | None
    policy_version: int


class PointsAwarded(_Event):
    type: Literal["PointsAwarded"] = "PointsAwarded"
    behaviour: str
    reference: str
    cap_group: str
    points: int
    growth: int
    counts_as_referral: bool
    lot: NewLot | None
    arrears_repaid: int
    policy_version: int


class PointsHeld(_Event):
    type: Literal["PointsHeld"] = "PointsHeld"
    hold_id: str
    order_id: str
    points: int
    order_total_fen: int
    cap_points: int
    value_fen: int
    expires_at: Instant
    allocations: tuple[LotDebit, ...]
    policy_version: int


class HoldCommitted(_Event):
    type: Literal["HoldCommitted"] = "HoldCommitted"
    hold_id: str
    order_id: str
    points: int
    debits: tuple[LotDebit, ...]
    released: int


class HoldReleased(_Event):
    type: Literal["HoldReleased"] = "HoldReleased"
    hold_id: str
    points: int
    reason: Literal["released", "expired"]


class RefundedLine(_Model):
    """One line of a refund: fen refunded now and the points it took back."""

    line_id: str
    refunded_fen: int
    points_taken: int


class PurchaseRefunded(_Event):
    type: Literal["PurchaseRefunded"] = "PurchaseRefunded"
    order_id: str
    refund_id: str
    lines: tuple[RefundedLine, ...]
    refunded_fen: int
    points_taken: int
    debits: tuple[LotDebit, ...]
    arrears_added: int
    forgiven: int
    growth_taken: int
    points_returned: int
    returned: tuple[LotDebit, ...]
    relot: NewLot | None
    relot_sources: tuple[LotDebit, ...] = ()
    arrears_repaid: int = 0
    """Arrears the new lot of returned points (``relot``) repaid first, before this refund's take-back."""
    clawback: str
    policy_version: int


class PointsAdjusted(_Event):
    type: Literal["PointsAdjusted"] = "PointsAdjusted"
    points: int
    reason_code: str
    note: str
    operator_id: str
    lot: NewLot | None
    debits: tuple[LotDebit, ...]
    arrears_added: int
    arrears_repaid: int
    policy_version: int


class LotActivated(_Event):
    type: Literal["LotActivated"] = "LotActivated"
    lot_id: str
    points: int
    arrears_repaid: int


class LotExpired(_Event):
    type: Literal["LotExpired"] = "LotExpired"
    lot_id: str
    points: int
