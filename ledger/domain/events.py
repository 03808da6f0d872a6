"""The member events: the immutable record of everything that happened to a member.

Every event states its business time ``at`` and, where a rule decided a number, the policy version it was
decided under and the inputs and answers (multiplier and rule, lots debited, ...). ``evolve`` reads those
answers; it never asks a rule again, so a replay years later gives the same numbers whatever the policy
has become since.

The classes live in :mod:`ledger.domain.member_events`, one module per business area; this module gathers
them into the one union :data:`MemberEvent` with its codec, and every name stays importable from here.

Events carry pseudonymous ids only: no phone number, birth date or name ever enters a payload.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from ledger.domain.member_events.base import (
    Instant,
    LotDebit,
    NewLot,
    _Event,
    _Model,
)
from ledger.domain.member_events.earning import (
    Candidate,
    EarnedLine,
    HoldCommitted,
    HoldReleased,
    LotActivated,
    LotExpired,
    PointsAdjusted,
    PointsAwarded,
    PointsHeld,
    PurchaseRecorded,
    PurchaseRefunded,
    RefundedLine,
)
from ledger.domain.member_events.mall_household import (
    ExchangeCancelled,
    HouseholdClosed,
    HouseholdCreated,
    HouseholdGrowthCounted,
    HouseholdMemberJoined,
    HouseholdMemberLeft,
    JoinedHousehold,
    LeftHousehold,
    PointsExchanged,
    PointsTransferredIn,
    PointsTransferredOut,
    TransferredLot,
)
from ledger.domain.member_events.members import (
    GrowthTransfer,
    ImportedTerm,
    LotTransfer,
    MemberAbsorbed,
    MemberEnrolled,
    MemberErased,
    MemberImported,
    MemberMerged,
)
from ledger.domain.member_events.tiers import (
    EntitlementConsumed,
    EntitlementGranted,
    EntitlementRevoked,
    GrantsChecked,
    MembershipCancelled,
    MembershipLapsed,
    MembershipPurchased,
    TierChanged,
    TierOverrideEnded,
    TierOverrideSet,
    TierReviewed,
)

__all__ = [
    "MEMBER_EVENT",
    "Candidate",
    "EarnedLine",
    "EntitlementConsumed",
    "EntitlementGranted",
    "EntitlementRevoked",
    "ExchangeCancelled",
    "GrantsChecked",
    "GrowthTransfer",
    "HoldCommitted",
    "HoldReleased",
    "HouseholdClosed",
    "HouseholdCreated",
    "HouseholdGrowthCounted",
    "HouseholdMemberJoined",
    "HouseholdMemberLeft",
    "ImportedTerm",
    "Instant",
    "JoinedHousehold",
    "LeftHousehold",
    "LotActivated",
    "LotDebit",
    "LotExpired",
    "LotTransfer",
    "MemberAbsorbed",
    "MemberEnrolled",
    "MemberErased",
    "MemberEvent",
    "MemberImported",
    "MemberMerged",
    "MembershipCancelled",
    "MembershipLapsed",
    "MembershipPurchased",
    "NewLot",
    "PointsAdjusted",
    "PointsAwarded",
    "PointsExchanged",
    "PointsHeld",
    "PointsTransferredIn",
    "PointsTransferredOut",
    "PurchaseRecorded",
    "PurchaseRefunded",
    "RefundedLine",
    "TierChanged",
    "TierOverrideEnded",
    "TierOverrideSet",
    "TierReviewed",
    "TransferredLot",
    "_Event",
    "_Model",
    "decode",
    "encode",
]

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
