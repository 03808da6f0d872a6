"""A member's state: the fold of ``evolve`` over the member's stream.

The state is a plain mutable object so that folding long histories stays cheap; ``decide`` only reads it,
and ``evolve`` (in :mod:`ledger.domain.evolve`) is the only code that changes it, one event at a time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class Lot:
    """Points credited by one event."""

    lot_id: str
    source: str
    amount: int
    remaining: int
    occurred_at: datetime
    active_at: datetime
    expires_at: datetime
    seq: int
    order_id: str | None = None
    held: int = 0
    activated: bool = False
    expired: bool = False

    @property
    def spendable(self) -> int:
        """Points of this lot that a new hold or debit may take."""
        if not self.activated or self.expired:
            return 0
        return self.remaining - self.held

    def order_key(self) -> tuple[datetime, datetime, int]:
        """Soonest expiry first; equal expiry, earliest business time first; then the order recorded."""
        return (self.expires_at, self.occurred_at, self.seq)


@dataclass(slots=True)
class Hold:
    hold_id: str
    order_id: str
    points: int
    order_total_fen: int
    expires_at: datetime
    allocations: dict[str, int]


@dataclass(slots=True)
class LineRecord:
    paid_fen: int
    earned: int
    refunded_fen: int = 0
    taken_back: int = 0


@dataclass(slots=True)
class OrderRecord:
    order_id: str
    occurred_at: datetime
    lot_id: str | None
    lines: dict[str, LineRecord]
    paid_fen: int
    growth: int
    points_paid: int
    growth_taken: int = 0
    refunded_fen: int = 0
    refund_ids: set[str] = field(default_factory=set)
    points_returned: int = 0


@dataclass(slots=True)
class Redemption:
    """Points that paid for an order, and the lots they came from (for returns on refund)."""

    debits: list[tuple[str, int]] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(p for _, p in self.debits)


@dataclass(slots=True)
class GrowthEntry:
    at: datetime
    amount: int


@dataclass(slots=True)
class DowngradeNotice:
    issued_at: datetime
    downgrade_at: datetime
    target_tier: str


@dataclass(slots=True)
class TierOverride:
    tier: str
    kind: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    operator_id: str


@dataclass(slots=True)
class Membership:
    membership_id: str
    plan: str
    price_fen: int
    purchased_at: datetime
    term_start: datetime
    term_end: datetime
    status: str = "active"  # active | cancelled | lapsed
    benefits_granted: bool = False

    def covers(self, at: datetime) -> bool:
        return self.status == "active" and self.term_start <= at < self.term_end


@dataclass(slots=True)
class Use:
    at: datetime
    quantity: int
    order_id: str
    store_id: str


@dataclass(slots=True)
class Entitlement:
    entitlement_id: str
    benefit: str
    name: str
    kind: str
    value_fen: int | None
    valid_from: datetime
    valid_until: datetime
    quota_total: int | None
    quota_per_month: int | None
    source: str
    revoke_on: tuple[str, ...]
    granted_at: datetime
    uses: list[Use] = field(default_factory=list)
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    @property
    def used_total(self) -> int:
        return sum(u.quantity for u in self.uses)


@dataclass(slots=True)
class Exchange:
    """One exchange in the points mall: the points it spent and the lots they came from, what it granted."""

    exchange_id: str
    reward_id: str
    reward_name: str
    at: datetime
    points: int
    cash_fen: int
    debits: list[tuple[str, int]]
    entitlement_id: str
    stock_stream: str | None
    policy_version: int
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Balances:
    """A member's point balances at one moment (the response to a write, the history around an event)."""

    active: int
    pending: int
    held: int
    arrears: int

    @property
    def available(self) -> int:
        return self.active - self.held

    @classmethod
    def of(cls, state: MemberState) -> Balances:
        return cls(state.active, state.pending, state.held, state.arrears)


@dataclass(slots=True)
class MemberState:
    program_id: str
    member_id: str
    version: int = 0
    enrolled_at: datetime | None = None
    no_profile: bool = False
    """True when enrolment recorded that no personal-data profile was stored (so there is none to look up)."""
    identities: list[str] = field(default_factory=list)
    merged_into: str | None = None
    erased_at: datetime | None = None
    """When the member's personal data was erased (None: never); its identities are gone since."""
    lots: dict[str, Lot] = field(default_factory=dict)
    arrears: int = 0
    holds: dict[str, Hold] = field(default_factory=dict)
    closed_holds: dict[str, str] = field(default_factory=dict)
    committed_holds: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Each committed hold's order id and the points it committed (what a sale naming the hold was paid with)."""
    hold_expired_at: dict[str, datetime] = field(default_factory=dict)
    orders: dict[str, OrderRecord] = field(default_factory=dict)
    redemptions: dict[str, Redemption] = field(default_factory=dict)
    growth: list[GrowthEntry] = field(default_factory=list)
    referrals: list[datetime] = field(default_factory=list)
    behaviour_log: list[tuple[datetime, str]] = field(default_factory=list)
    awarded_references: set[tuple[str, str]] = field(default_factory=set)
    last_purchase_at: datetime | None = None
    last_activity_at: datetime | None = None
    tier: str = ""
    tier_since: datetime | None = None
    tier_history: list[tuple[datetime, str]] = field(default_factory=list)
    override_history: list[TierOverride] = field(default_factory=list)
    next_review_at: datetime | None = None
    downgrade_notice: DowngradeNotice | None = None
    override: TierOverride | None = None
    memberships: dict[str, Membership] = field(default_factory=dict)
    entitlements: dict[str, Entitlement] = field(default_factory=dict)
    grants_through: datetime | None = None
    exchanges: dict[str, Exchange] = field(default_factory=dict)
    """The member's points-mall exchanges by exchange id (cancelled ones included)."""
    household_of: str | None = None
    """The owner of the household the member is in (itself for an owner); None: in no household."""
    household_members: list[str] = field(default_factory=list)
    """For an owner: the members of its household besides itself, in the order they joined."""
    household_max: int = 0
    """For an owner: the seats besides itself its household was opened with."""
    transfers_out: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    """Points this member gave to household members: transfer id -> (business time, points)."""
    lot_seq: int = 0
    active_total: int = 0
    pending_total: int = 0
    lifetime_earned: int = 0
    """All points ever credited: purchases, behaviours, positive adjustments and lots moved in by a merge."""
    lifetime_redeemed: int = 0
    lifetime_expired: int = 0
    lifetime_clawed_back: int = 0
    lifetime_returned: int = 0
    lifetime_adjusted: int = 0
    due_memo: tuple[int, object, datetime | None] | None = field(default=None, init=False, repr=False, compare=False)
    """``(version, policies, due)``: the last ``next_due`` answer (see :func:`ledger.domain.decide.next_due`).

    Not part of the member's state: it is left out of comparisons and ``repr``, and a clone shares it."""

    @property
    def enrolled(self) -> bool:
        return self.enrolled_at is not None

    def clone(self) -> MemberState:
        memo = self.due_memo
        if memo is None:
            return copy.deepcopy(self)
        # The memo is an immutable tuple holding the program's policies: share it, never deep-copy the policies.
        return copy.deepcopy(self, {id(memo): memo})

    # -- balances ------------------------------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Spendable and held points (kept as a running total by ``evolve``; see ``recount``)."""
        return self.active_total

    @property
    def pending(self) -> int:
        return self.pending_total

    def recount(self) -> tuple[int, int]:
        """Active and pending points summed from the lots (what the running totals must always equal)."""
        active = sum(lot.remaining for lot in self.lots.values() if lot.activated and not lot.expired)
        pending = sum(lot.remaining for lot in self.lots.values() if not lot.activated and not lot.expired)
        return active, pending

    @property
    def held(self) -> int:
        return sum(h.points for h in self.holds.values())

    @property
    def available(self) -> int:
        return self.active - self.held

    def spendable_lots(self) -> list[Lot]:
        """Active lots with unreserved points, in the order debits consume them."""
        return sorted((lot for lot in self.lots.values() if lot.spendable > 0), key=Lot.order_key)

    def expiring_between(self, start: datetime, end: datetime) -> int:
        return sum(
            lot.remaining
            for lot in self.lots.values()
            if not lot.expired and lot.remaining > 0 and start <= lot.expires_at < end
        )

    # -- growth and tiers ----------------------------------------------------------------------------------

    def growth_between(self, start: datetime, end: datetime) -> int:
        """Growth value with business time in ``(start, end]``."""
        return sum(g.amount for g in self.growth if start < g.at <= end)

    def referrals_between(self, start: datetime, end: datetime) -> int:
        return sum(1 for r in self.referrals if start < r <= end)

    def earned_tier_at(self, at: datetime) -> str:
        """The earned tier in force at business time ``at`` (before enrolment: the entry tier)."""
        tier = self.tier_history[0][1] if self.tier_history else self.tier
        for since, code in self.tier_history:
            if since <= at:
                tier = code
            else:
                break
        return tier

    def override_at(self, at: datetime) -> TierOverride | None:
        """The operator override or temporary upgrade in force at ``at``, if any."""
        for o in reversed(self.override_history):
            if o.starts_at <= at < o.ends_at:
                return o
        return None

    def active_plans(self, at: datetime) -> tuple[str, ...]:
        return tuple(sorted({m.plan for m in self.memberships.values() if m.covers(at)}))

    def behaviour_count(self, cap_group: str, start: datetime, end: datetime) -> int:
        return sum(1 for at, group in self.behaviour_log if group == cap_group and start <= at < end)

    # -- the points mall -----------------------------------------------------------------------------------

    def exchanges_between(self, reward_id: str, start: datetime, end: datetime) -> int:
        """Exchanges of ``reward_id`` with business time in ``[start, end)``, cancelled ones not counted."""
        return sum(
            1
            for x in self.exchanges.values()
            if x.reward_id == reward_id and x.cancelled_at is None and start <= x.at < end
        )

    # -- households ----------------------------------------------------------------------------------------

    @property
    def owns_household(self) -> bool:
        return self.household_of is not None and self.household_of == self.member_id

    def given_between(self, start: datetime, end: datetime) -> int:
        """Points given to household members with business time in ``[start, end)``."""
        return sum(points for at, points in self.transfers_out.values() if start <= at < end)
