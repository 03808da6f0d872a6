"""Commands: what a caller asks the ledger to do to one member.

Commands are validated at the edge for shape (types, lengths, limits); ``decide`` validates them against the
member's state and the policy. Ids (lot ids, entitlement ids) are derived from the command, never random.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from policies import OrderLine


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: the channel and, at a till, the store, terminal and cashier; for manual actions the operator."""

    channel: str = "system"
    store_id: str = ""
    terminal_id: str = ""
    operator_id: str = ""
    """A label the client sent (the cashier, the operator): never proof of who acted; ``key_id`` is."""
    key_id: str = ""
    """The API key that authenticated the request (empty: the ledger itself, or a server without authentication)."""
    role: str = ""
    """That key's role."""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("channel", self.channel), ("store_id", self.store_id),
                                  ("terminal_id", self.terminal_id), ("operator_id", self.operator_id),
                                  ("key_id", self.key_id), ("role", self.role)) if v}


@dataclass(frozen=True, slots=True)
class EnrollMember:
    member_id: str
    identities: tuple[str, ...]
    profile_stored: bool = False
    """Whether personal data (kept outside the log) is stored for the member: the rules look it up only then."""


@dataclass(frozen=True, slots=True)
class RecordPurchase:
    member_id: str
    order_id: str
    lines: tuple[OrderLine, ...]
    order_total_fen: int
    points_paid: int = 0
    hold_id: str = ""
    """The committed hold that paid part of the order ("" = none): its committed points are the points paid."""


@dataclass(frozen=True, slots=True)
class AwardPoints:
    member_id: str
    behaviour: str
    reference: str


@dataclass(frozen=True, slots=True)
class HoldPoints:
    member_id: str
    hold_id: str
    order_id: str
    points: int
    order_total_fen: int
    ttl_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class CommitHold:
    member_id: str
    hold_id: str
    points: int | None = None


@dataclass(frozen=True, slots=True)
class ReleaseHold:
    member_id: str
    hold_id: str


@dataclass(frozen=True, slots=True)
class RefundLine:
    line_id: str
    refunded_fen: int


@dataclass(frozen=True, slots=True)
class RefundPurchase:
    """Refund a whole order (``lines`` empty) or the given fen of chosen lines."""

    member_id: str
    order_id: str
    refund_id: str
    lines: tuple[RefundLine, ...] = ()


@dataclass(frozen=True, slots=True)
class AdjustPoints:
    member_id: str
    points: int
    reason_code: str
    note: str
    operator_id: str
    allow_arrears: bool = False
    """A removal beyond the available points takes them all and adds the rest to arrears, if the program's
    clawback policy lets balances go negative (``refunds.clawback: arrears``)."""


@dataclass(frozen=True, slots=True)
class PurchaseMembership:
    member_id: str
    membership_id: str
    plan: str
    paid_fen: int


@dataclass(frozen=True, slots=True)
class CancelMembership:
    member_id: str
    membership_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class OverrideTier:
    member_id: str
    tier: str
    kind: str  # "temporary_upgrade" | "override"
    ends_at: datetime
    reason: str
    operator_id: str


@dataclass(frozen=True, slots=True)
class ConsumeEntitlement:
    member_id: str
    entitlement_id: str
    order_id: str
    store_id: str
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class MergeMembers:
    """Merge ``source_member_id`` into ``member_id`` (the survivor)."""

    member_id: str
    source_member_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EraseMember:
    """Erase the member's personal data on a data-subject request; points, history and pseudonymous ids stay.

    ``reason`` is free text typed by an operator and must not contain personal data; ``request_reference`` is
    the ticket id of the data-subject request.
    """

    member_id: str
    reason: str
    request_reference: str


@dataclass(frozen=True, slots=True)
class ExchangePoints:
    """Exchange points for one unit of a reward of the points mall (``exchange_id``: the caller's id for it)."""

    member_id: str
    exchange_id: str
    reward_id: str


@dataclass(frozen=True, slots=True)
class CancelExchange:
    """Cancel an exchange whose coupon or gift is unused and still valid: points back to their lots, unit to stock."""

    member_id: str
    exchange_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AdjustStock:
    """An operator adds (positive ``units``) or removes (negative) units of a points-mall reward's stock, with a
    reason. It names no member: the writer keys it by the reward's stock stream (``member_id`` stays empty)."""

    reward_id: str
    units: int
    reason: str
    operator_id: str
    member_id: str = ""


@dataclass(frozen=True, slots=True)
class ImportedLot:
    """An opening lot brought over from the previous system: its points and its original dates, taken as given."""

    points: int
    earned_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ImportedMembership:
    """A paid membership term bought in the previous system, taken as given."""

    membership_id: str
    plan: str
    term_start: datetime
    term_end: datetime
    price_fen: int = 0


@dataclass(frozen=True, slots=True)
class ImportMember:
    """Bring a member over from the previous system (one row of an import file): nothing of it is re-decided.

    ``source`` and ``row`` say where it came from (the file's name and the row's number) and are recorded on the
    event. ``growth`` is the growth value the old system counted over ``(growth_window_start,
    growth_window_end]``; ``tier`` is the earned tier, held since ``tier_since``.
    """

    member_id: str
    identities: tuple[str, ...]
    source: str
    row: int
    tier: str = ""
    """"" = the program's entry tier."""
    tier_since: datetime | None = None
    lots: tuple[ImportedLot, ...] = ()
    growth: int = 0
    growth_window_start: datetime | None = None
    growth_window_end: datetime | None = None
    membership: ImportedMembership | None = None
    profile_stored: bool = False


@dataclass(frozen=True, slots=True)
class CreateHousehold:
    """Open a family account owned by ``member_id`` (the household's id is its owner's member id)."""

    member_id: str


@dataclass(frozen=True, slots=True)
class JoinHousehold:
    """Put ``member_id`` into the household owned by ``owner_member_id``: one till or operator command naming
    both, recorded on both members' streams in one atomic append."""

    member_id: str
    owner_member_id: str


@dataclass(frozen=True, slots=True)
class LeaveHousehold:
    """``member_id`` leaves its household with the points it holds; an owner leaving an empty household closes it."""

    member_id: str


@dataclass(frozen=True, slots=True)
class TransferPoints:
    """``member_id`` gives ``points`` of its active points to ``to_member_id`` of the same household
    (``transfer_id``: the caller's id for it, unique per giver)."""

    member_id: str
    to_member_id: str
    transfer_id: str
    points: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Run everything due for the member up to the program's current time."""

    member_id: str


MemberCommand = (
    EnrollMember
    | RecordPurchase
    | AwardPoints
    | HoldPoints
    | CommitHold
    | ReleaseHold
    | RefundPurchase
    | AdjustPoints
    | PurchaseMembership
    | CancelMembership
    | OverrideTier
    | ConsumeEntitlement
    | MergeMembers
    | EraseMember
    | Tick
    | ExchangePoints
    | CancelExchange
    | AdjustStock
    | ImportMember
    | CreateHousehold
    | JoinHousehold
    | LeaveHousehold
    | TransferPoints
)


@dataclass(frozen=True, slots=True)
class Profile:
    """Consented personal attributes the rules need, read from the personal-data store (never logged)."""

    birth_month: int | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A command with what every write carries."""

    program_id: str
    command: MemberCommand
    idempotency_key: str
    occurred_at: datetime | None = None
    actor: Actor = field(default_factory=Actor)
    correlation_id: str | None = None
