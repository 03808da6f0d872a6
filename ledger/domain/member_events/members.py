"""The events of a member's life as an account: enrolment, import from the previous system, merges of two
members, and erasure of personal data."""

from __future__ import annotations

from typing import Literal

from ledger.domain.member_events.base import Instant, NewLot, _Event, _Model


class MemberEnrolled(_Event):
    type: Literal["MemberEnrolled"] = "MemberEnrolled"
    member_id: str
    identities: tuple[str, ...]
    tier: str
    policy_version: int
    profile_stored: bool | None = None
    """Whether a personal-data profile was stored at enrolment (None in events written before it was recorded)."""


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
