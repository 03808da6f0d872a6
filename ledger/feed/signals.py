"""Lifecycle signals: points about to expire, a tier review ahead, a member gone quiet for 30 or 90 days.

A periodic scan reads a few facts per member from the read models (:func:`load_member_facts`), decides which
signals are due (:func:`due_signals`, a pure function of the facts and ``now``) and records each one as an event
of the per-program stream ``signal-{program_id}`` in the event log (:func:`raise_signals`). The feed relay then
publishes them in position order with every other event, so signals share the ledger events' delivery
guarantees (ordered, checkpointed, at least once).

Every occurrence has a deterministic id, ``signal:{program_id}:{member_id}:{KIND}:{reference time}``, used as the
event id and as the idempotency key of a command record written in the same transaction: raising a signal a
second time (another scan, another replica) writes nothing. The command records are kept under the program id
``signal:{program_id}`` (:func:`signal_command_program`), which no client can use, so they never share a key
space with client idempotency keys. The reference time is the earliest expiry
(POINTS_EXPIRING), the review time (TIER_REVIEW_AHEAD) or the last activity (INACTIVE_*), so a new occurrence (a
later expiry, the next review, a new stretch of inactivity) gets a new id.

Rules (defaults of :class:`SignalRules`):

- ``POINTS_EXPIRING``: the member has active lots with remaining points expiring in ``(now, now + 30 days]``;
  the signal carries their remaining points and the earliest expiry.
- ``TIER_REVIEW_AHEAD``: the next tier review is in ``(now, now + 14 days]``. The reference policy has no review
  notice period of its own (``tiers.grace_days`` is the grace after a downgrade notice, not a notice before the
  review), so the notice period is :attr:`SignalRules.review_notice`.
- ``INACTIVE_30_DAYS``: no member activity for at least 30 days and less than 90; ``INACTIVE_90_DAYS``: for at
  least 90. Activity is what the domain counts (``MemberState.last_activity_at``): a purchase, a behaviour award,
  a committed redemption; a member never active counts from the enrolment (as the win-back rule does). A member
  found at 95 days without having been signalled at 30 gets INACTIVE_90_DAYS only.
- Merged-away members get no signals.

Facts are read from the read models of either backend (:func:`load_member_facts` takes a SQLite or a psycopg
connection) and :func:`scan` drives the whole thing for every program, each at its own ``now`` (a test-clock
program has a time of its own).

Time is an input (``now``); nothing here reads the wall clock.

The pure part (the signals, their rules and event) is this module; reading the facts is
:mod:`ledger.feed.signal_facts`, recording the due signals and the scan :mod:`ledger.feed.signal_scan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from ledger.eventlog.chain import canonical_json, format_time
from ledger.eventlog.port import NewEvent

SIGNAL_EVENT_TYPE: Final = "LifecycleSignalRaised"
"""The event type of a recorded signal."""

SIGNAL_SCHEMA_VERSION: Final = 1
"""The payload schema version of :data:`SIGNAL_EVENT_TYPE`."""


SIGNAL_COMMAND_PREFIX: Final = "signal:"
"""Prefix of the program id under which signal command records are kept (outside the client program ids)."""

ACTIVITY_EVENT_TYPES: Final = ("PurchaseRecorded", "PointsAwarded", "HoldCommitted")
"""The member events that count as activity (those that move ``MemberState.last_activity_at``)."""

_DAY: Final = timedelta(days=1)


def signal_command_program(program_id: str) -> str:
    """The program id the signals' command records are kept under: ``signal:{program_id}``.

    Client program ids match ``[a-z][a-z0-9_]{0,63}`` and never contain ``:``, so a signal's idempotency key
    can never collide with (or answer for) a key a client chose, whatever that key looks like.
    """
    return f"{SIGNAL_COMMAND_PREFIX}{program_id}"


class SignalKind(StrEnum):
    POINTS_EXPIRING = "POINTS_EXPIRING"
    TIER_REVIEW_AHEAD = "TIER_REVIEW_AHEAD"
    INACTIVE_30_DAYS = "INACTIVE_30_DAYS"
    INACTIVE_90_DAYS = "INACTIVE_90_DAYS"


@dataclass(frozen=True, slots=True)
class ExpiringLot:
    """An active lot's remaining points and expiry (exclusive end)."""

    points: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What the signal rules need to know of one member (times timezone-aware)."""

    program_id: str
    member_id: str
    tier: str | None = None
    next_review_at: datetime | None = None
    last_activity_at: datetime | None = None
    enrolled_at: datetime | None = None
    lots: tuple[ExpiringLot, ...] = ()
    """Active lots with remaining points (those expiring later than the window may be left out)."""
    merged: bool = False


@dataclass(frozen=True, slots=True)
class SignalRules:
    expiring_within: timedelta = timedelta(days=30)
    review_notice: timedelta = timedelta(days=14)
    inactive_short: timedelta = timedelta(days=30)
    inactive_long: timedelta = timedelta(days=90)


DEFAULT_RULES: Final = SignalRules()


@dataclass(frozen=True, slots=True)
class Signal:
    """One due occurrence of a lifecycle signal."""

    kind: SignalKind
    program_id: str
    member_id: str
    reference_at: datetime
    points: int = 0
    expires_at: datetime | None = None
    next_review_at: datetime | None = None
    tier: str | None = None
    last_activity_at: datetime | None = None
    inactive_days: int = 0

    @property
    def signal_id(self) -> str:
        return f"signal:{self.program_id}:{self.member_id}:{self.kind}:{format_time(self.reference_at)}"

    def payload(self) -> dict[str, Any]:
        """The recorded payload (what the feed's ``payload_json`` carries for a signal)."""

        def t(value: datetime | None) -> str | None:
            return None if value is None else format_time(value)

        return {
            "kind": str(self.kind),
            "signal_id": self.signal_id,
            "member_id": self.member_id,
            "reference_at": t(self.reference_at),
            "points": self.points,
            "expires_at": t(self.expires_at),
            "next_review_at": t(self.next_review_at),
            "tier": self.tier,
            "last_activity_at": t(self.last_activity_at),
            "inactive_days": self.inactive_days,
        }


def aware(value: datetime) -> datetime:
    """``value``, refused when it is naive (every time here carries its offset)."""
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: times must be timezone-aware")
    return value


def due_signals(facts: MemberFacts, now: datetime, rules: SignalRules = DEFAULT_RULES) -> list[Signal]:
    """The signals due for ``facts`` at ``now`` (at most one of each kind; none for a merged member)."""
    aware(now)
    if facts.merged:
        return []
    found: list[Signal] = []
    program_id, member_id = facts.program_id, facts.member_id

    horizon = now + rules.expiring_within
    expiring = [lot for lot in facts.lots if lot.points > 0 and now < aware(lot.expires_at) <= horizon]
    if expiring:
        earliest = min(lot.expires_at for lot in expiring)
        found.append(
            Signal(
                kind=SignalKind.POINTS_EXPIRING,
                reference_at=earliest,
                points=sum(lot.points for lot in expiring),
                expires_at=earliest,
                program_id=program_id,
                member_id=member_id,
            )
        )

    review = facts.next_review_at
    if review is not None and now < aware(review) <= now + rules.review_notice:
        found.append(
            Signal(
                kind=SignalKind.TIER_REVIEW_AHEAD,
                reference_at=review,
                next_review_at=review,
                tier=facts.tier,
                program_id=program_id,
                member_id=member_id,
            )
        )

    last = facts.last_activity_at or facts.enrolled_at
    if last is not None:
        quiet = now - aware(last)
        kind: SignalKind | None = None
        if quiet >= rules.inactive_long:
            kind = SignalKind.INACTIVE_90_DAYS
        elif quiet >= rules.inactive_short:
            kind = SignalKind.INACTIVE_30_DAYS
        if kind is not None:
            found.append(
                Signal(
                    kind=kind,
                    reference_at=last,
                    last_activity_at=last,
                    inactive_days=quiet // _DAY,
                    program_id=program_id,
                    member_id=member_id,
                )
            )
    return found


def signal_event(signal: Signal, now: datetime) -> NewEvent:
    """The event recording ``signal`` (id = idempotency key = the signal id)."""
    return NewEvent(
        event_id=signal.signal_id,
        type=SIGNAL_EVENT_TYPE,
        schema_version=SIGNAL_SCHEMA_VERSION,
        occurred_at=now,
        recorded_at=now,
        policy_version=None,
        idempotency_key=signal.signal_id,
        correlation_id=None,
        causation_id=None,
        actor={"channel": "system"},
        payload=canonical_json(signal.payload()),
    )
