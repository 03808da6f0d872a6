"""The events of the points mall (exchanges and their cancellation) and of households: seats, joining and
leaving, transfers of points between members, and household growth counted for the owner."""

from __future__ import annotations

from typing import Literal

from ledger.domain.member_events.base import Instant, LotDebit, NewLot, _Event, _Model


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
