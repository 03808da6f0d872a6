"""The member events: the immutable record of everything that happened to a member.

Every event states its business time ``at`` and, where a rule decided a number, the policy version it was
decided under and the inputs and answers (multiplier and rule, lots debited, ...). ``evolve`` reads those
answers; it never asks a rule again, so a replay years later gives the same numbers whatever the policy
has become since.

Events carry pseudonymous ids only: no phone number, birth date or name ever enters a payload.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter

# The form every stored event writes its datetimes in (pydantic's JSON form of an aware UTC datetime).
_CANONICAL_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|\+00:00)")


def _parse_utc(value: Any) -> Any:
    """A datetime in the canonical UTC form, parsed to a ``datetime`` whose zone is ``datetime.UTC``.

    pydantic would parse it to the same instant with a zone of its own class; comparing or subtracting datetimes
    whose zones are different objects calls ``utcoffset`` on every operation, and the state mixes datetimes read
    from the log with those decided now (``UTC``). ``fromisoformat`` gives the same value for this form (and is
    faster); anything else, or anything it refuses, is left to pydantic as before.
    """
    if type(value) is str and _CANONICAL_UTC.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if parsed.tzinfo is UTC:
            return parsed
    return value


Instant = Annotated[datetime, BeforeValidator(_parse_utc)]
"""A datetime field of an event (see ``_parse_utc``)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LotDebit(_Model):
    """Points taken from (or reserved on) one lot."""

    lot_id: str
    points: int


class NewLot(_Model):
    """A lot created by the event that carries it."""

    lot_id: str
    source: Literal["purchase", "behaviour", "adjustment", "refund_return", "merge", "imported", "transfer"]
    points: int
    active_at: Instant
    expires_at: Instant
    order_id: str | None = None


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


class _Event(_Model):
    at: Instant


class MemberEnrolled(_Event):
    type: Literal["MemberEnrolled"] = "MemberEnrolled"
    member_id: str
    identities: tuple[str, ...]
    tier: str
    policy_version: int
    profile_stored: bool | None = None
    """Whether a personal-data profile was stored at enrolment (None in events written before it was recorded)."""


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


class TierChanged(_Event):
    type: Literal["TierChanged"] = "TierChanged"
    from_tier: str
    to_tier: str
    reason: Literal["upgrade", "review_downgrade", "merge"]
    growth_in_window: int
    referrals_in_window: int
    next_review_at: Instant | None = None  # None: the entry tier, which has no review
    policy_version: int


class TierReviewed(_Event):
    """A review: the member keeps the tier, or a downgrade notice starts the grace period."""

    type: Literal["TierReviewed"] = "TierReviewed"
    outcome: Literal["kept", "notice", "notice_cleared"]
    qualifying_tier: str
    growth_in_window: int
    next_review_at: Instant | None
    downgrade_at: Instant | None
    policy_version: int


class TierOverrideSet(_Event):
    type: Literal["TierOverrideSet"] = "TierOverrideSet"
    tier: str
    kind: Literal["temporary_upgrade", "override"]
    ends_at: Instant
    reason: str
    operator_id: str


class TierOverrideEnded(_Event):
    type: Literal["TierOverrideEnded"] = "TierOverrideEnded"
    tier: str


class MembershipPurchased(_Event):
    type: Literal["MembershipPurchased"] = "MembershipPurchased"
    membership_id: str
    plan: str
    price_fen: int
    term_start: Instant
    term_end: Instant
    renewal_of: str | None
    policy_version: int


class MembershipCancelled(_Event):
    type: Literal["MembershipCancelled"] = "MembershipCancelled"
    membership_id: str
    refund_fen: int
    reason: str


class MembershipLapsed(_Event):
    type: Literal["MembershipLapsed"] = "MembershipLapsed"
    membership_id: str


class EntitlementGranted(_Event):
    type: Literal["EntitlementGranted"] = "EntitlementGranted"
    entitlement_id: str
    benefit: str
    name: str
    kind: str
    value_fen: int | None
    valid_from: Instant
    valid_until: Instant
    quota_total: int | None
    quota_per_month: int | None
    source: str
    revoke_on: tuple[str, ...]
    policy_version: int


class EntitlementConsumed(_Event):
    type: Literal["EntitlementConsumed"] = "EntitlementConsumed"
    entitlement_id: str
    quantity: int
    order_id: str
    store_id: str


class EntitlementRevoked(_Event):
    type: Literal["EntitlementRevoked"] = "EntitlementRevoked"
    entitlement_id: str
    reason: str


class GrantsChecked(_Event):
    """The periodic grants due at ``at`` were considered and none applied to this member."""

    type: Literal["GrantsChecked"] = "GrantsChecked"


class MemberMerged(_Event):
    """This member was merged into another; everything it held moved there."""

    type: Literal["MemberMerged"] = "MemberMerged"
    into_member_id: str
    points_moved: int
    arrears_moved: int
    reason: str | None = None
    """Why the operator merged them (None in events written before it was required)."""


class LotTransfer(_Model):
    lot_id: str
    source_lot_id: str
    points: int
    active: bool
    occurred_at: Instant
    active_at: Instant
    expires_at: Instant


class GrowthTransfer(_Model):
    at: Instant
    amount: int


class MemberAbsorbed(_Event):
    """Another member was merged into this one."""

    type: Literal["MemberAbsorbed"] = "MemberAbsorbed"
    from_member_id: str
    lots: tuple[LotTransfer, ...]
    arrears: int
    growth: tuple[GrowthTransfer, ...]
    referrals: tuple[Instant, ...]
    identities: tuple[str, ...]
    entitlement_ids: tuple[str, ...]
    reason: str | None = None
    """Why the operator merged them (None in events written before it was required)."""


class MemberErased(_Event):
    """The member's personal data was erased on a data-subject request: its profile and the channel identities
    that found it are gone; its points, history and pseudonymous id stay (the books stay whole)."""

    type: Literal["MemberErased"] = "MemberErased"
    reason: str
    """Why, as the operator typed it: must not contain personal data (the feed leaves it out)."""
    request_reference: str
    """The ticket id of the data-subject request."""
    identities_removed: int
    """How many channel identities stopped resolving to the member."""


class PointsExchanged(_Event):
    """Points spent in the points mall for one unit of a reward; the entitlement it grants follows in the same
    decision (an ``EntitlementGranted`` with source ``exchange:{exchange_id}``)."""

    type: Literal["PointsExchanged"] = "PointsExchanged"
    exchange_id: str
    reward_id: str
    reward_name: str
    points: int
    cash_fen: int
    """The cash part of the price, collected by the checkout (the ledger records it, never takes it)."""
    debits: tuple[LotDebit, ...]
    entitlement_id: str
    stock_stream: str | None
    """The reward's stock stream the unit was taken from (None: unlimited stock, no unit taken)."""
    tier: str
    policy_version: int


class ExchangeCancelled(_Event):
    """An unused exchange cancelled: its points back into the lots they came from (a part whose lot expired
    meanwhile as ``relot``), its unit back to stock; the entitlement is revoked in the same decision."""

    type: Literal["ExchangeCancelled"] = "ExchangeCancelled"
    exchange_id: str
    reward_id: str
    points_returned: int
    returned: tuple[LotDebit, ...]
    relot: NewLot | None
    relot_sources: tuple[LotDebit, ...] = ()
    arrears_repaid: int = 0
    stock_stream: str | None
    reason: str
    policy_version: int


class ImportedTerm(_Model):
    """A paid membership term brought over with an imported member."""

    membership_id: str
    plan: str
    price_fen: int
    term_start: Instant
    term_end: Instant


class MemberImported(_Event):
    """A member brought over from the previous system, with its opening state taken as given (not re-decided):
    identities, tier, growth value with its window, opening lots with their original dates, a paid term.

    ``source`` and ``row`` name the import file and its row, so an auditor sees where an opening balance came
    from. Its lots are credited as the liability's ``imported`` movement.
    """

    type: Literal["MemberImported"] = "MemberImported"
    member_id: str
    identities: tuple[str, ...]
    source: str
    row: int
    tier: str
    tier_since: Instant
    next_review_at: Instant | None
    lots: tuple[NewLot, ...]
    growth: int
    growth_window_start: Instant | None
    growth_window_end: Instant | None
    """The growth counts in the tier window at this instant (the end of the window the old system counted it over)."""
    membership: ImportedTerm | None
    profile_stored: bool
    policy_version: int


class HouseholdCreated(_Event):
    """This member opened a family account and owns it (the household's id is the owner's member id)."""

    type: Literal["HouseholdCreated"] = "HouseholdCreated"
    max_members: int
    """The seats besides the owner under the policy version it was opened under."""
    policy_version: int


class HouseholdMemberJoined(_Event):
    """On the owner's stream: a member joined its household (the seat count lives here)."""

    type: Literal["HouseholdMemberJoined"] = "HouseholdMemberJoined"
    member_id: str
    members_after: int
    max_members: int
    policy_version: int


class JoinedHousehold(_Event):
    """On the joining member's stream: it joined the household of ``owner_member_id``."""

    type: Literal["JoinedHousehold"] = "JoinedHousehold"
    owner_member_id: str
    policy_version: int


class HouseholdMemberLeft(_Event):
    """On the owner's stream: a member left its household (or was merged away)."""

    type: Literal["HouseholdMemberLeft"] = "HouseholdMemberLeft"
    member_id: str
    members_after: int


class LeftHousehold(_Event):
    """On the leaving member's stream: it left the household of ``owner_member_id``, keeping what it holds."""

    type: Literal["LeftHousehold"] = "LeftHousehold"
    owner_member_id: str


class HouseholdClosed(_Event):
    """The owner closed its household (it had no other member left)."""

    type: Literal["HouseholdClosed"] = "HouseholdClosed"


class TransferredLot(_Model):
    """Points a transfer moved from one of the giver's lots into a new lot of the receiver, with the giver's lot's
    dates (its expiry is kept). ``arrears_repaid``: the part that repaid the receiver's arrears at once."""

    lot_id: str
    source_lot_id: str
    points: int
    arrears_repaid: int
    occurred_at: Instant
    active_at: Instant
    expires_at: Instant


class PointsTransferredOut(_Event):
    """On the giver's stream: points given to another member of its household, soonest-expiring lots first."""

    type: Literal["PointsTransferredOut"] = "PointsTransferredOut"
    transfer_id: str
    to_member_id: str
    owner_member_id: str
    points: int
    debits: tuple[LotDebit, ...]
    given_in_month: int
    """What the giver has given in the transfer's local month, this transfer included."""
    policy_version: int


class PointsTransferredIn(_Event):
    """On the receiver's stream, in the same append: the points received, one lot per giver's lot, each naming the
    giver's lot; the giver's ``PointsTransferredOut`` has the same ``transfer_id``."""

    type: Literal["PointsTransferredIn"] = "PointsTransferredIn"
    transfer_id: str
    from_member_id: str
    owner_member_id: str
    points: int
    lots: tuple[TransferredLot, ...]
    arrears_repaid: int
    policy_version: int


class HouseholdGrowthCounted(_Event):
    """On the owner's stream, when the policy counts household growth toward the owner's tier
    (``household.growth_to_owner``): growth value a member of its household earned (or had taken back, negative)
    at business time ``at``, in the same append as the member's own event."""

    type: Literal["HouseholdGrowthCounted"] = "HouseholdGrowthCounted"
    from_member_id: str
    amount: int
    policy_version: int


MemberEvent = Annotated[
    MemberEnrolled
    | PurchaseRecorded
    | PointsAwarded
    | PointsHeld
    | HoldCommitted
    | HoldReleased
    | PurchaseRefunded
    | PointsAdjusted
    | LotActivated
    | LotExpired
    | TierChanged
    | TierReviewed
    | TierOverrideSet
    | TierOverrideEnded
    | MembershipPurchased
    | MembershipCancelled
    | MembershipLapsed
    | EntitlementGranted
    | EntitlementConsumed
    | EntitlementRevoked
    | GrantsChecked
    | MemberMerged
    | MemberAbsorbed
    | MemberErased
    | PointsExchanged
    | ExchangeCancelled
    | MemberImported
    | HouseholdCreated
    | HouseholdMemberJoined
    | JoinedHousehold
    | HouseholdMemberLeft
    | LeftHousehold
    | HouseholdClosed
    | PointsTransferredOut
    | PointsTransferredIn
    | HouseholdGrowthCounted,
    Field(discriminator="type"),
]

MEMBER_EVENT: TypeAdapter[MemberEvent] = TypeAdapter(MemberEvent)


def encode(event: MemberEvent) -> bytes:
    """The canonical payload bytes of an event (what the store hashes and keeps)."""
    return event.model_dump_json(exclude_defaults=False).encode()


def decode(payload: bytes) -> MemberEvent:
    return MEMBER_EVENT.validate_json(payload)
