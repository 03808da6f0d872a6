"""A member as of a business time, as known at a recording time: which events count, folded in stream order (pure).

``as known at K`` is the log as it stood at K: the stream's events up to the last one recorded at or before K.
``as of T`` keeps, of those, the events whose *counted time* is at or before T, and folds them in stream order
with the same ``evolve`` as every other reader; then the time-driven work due at or before T that this log has not
recorded (activations and expiries at the lots' own times, hold time-outs, reviews, grants) is applied by the same
``tick`` the writer runs, at its own due times, without writing anything.

The counted time of an event is its business time (``occurred_at``), except that an event never counts before
an earlier event of the stream that touched the same thing: the same lot, hold (and the lots it holds), order,
entitlement, membership, or the arrears; a merge touches everything. A refund recorded late for a business time
before the lot its take-back debited was credited therefore counts from that lot's time, and every lot's events
count in the order they were recorded, so the fold never meets a debit of a lot it has not credited. Nothing
counts before the member's enrolment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ledger.domain import events as ev
from ledger.domain.commands import Profile
from ledger.domain.decide import Context, tick
from ledger.domain.evolve import evolve
from ledger.domain.state import MemberState
from policies import PolicyHistory

_EVERYTHING = "*"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One stored event as the as-of fold needs it."""

    event_id: str
    occurred_at: datetime
    recorded_at: datetime
    event: ev.MemberEvent


@dataclass(frozen=True, slots=True)
class Counted:
    """An event of the as-of fold: a stored one (with its id) or time-driven work the log had not recorded by then
    (``event_id`` empty)."""

    event_id: str
    counted_at: datetime
    event: ev.MemberEvent


@dataclass(frozen=True, slots=True)
class AsOf:
    state: MemberState
    events: list[Counted]
    """What was folded, in order: the stored events that count, then the due work applied."""
    as_of: datetime
    as_known_at: datetime


def known_at(recorded: Iterable[Recorded], as_known_at: datetime) -> list[Recorded]:
    """The stream's events up to the last one recorded at or before ``as_known_at`` (the log as it stood then)."""
    out: list[Recorded] = []
    for r in recorded:
        if r.recorded_at > as_known_at:
            break
        out.append(r)
    return out


def _lots(debits: Iterable[ev.LotDebit]) -> list[str]:
    return [f"lot:{d.lot_id}" for d in debits]


def _new(lot: ev.NewLot | None) -> list[str]:
    return [f"lot:{lot.lot_id}"] if lot is not None else []


def touched(event: ev.MemberEvent, hold_lots: dict[str, list[str]]) -> list[str]:
    """What ``event`` reads or changes that an earlier event may have made: lots, holds, orders, entitlements,
    memberships, the arrears (``*``: everything). ``hold_lots`` maps open holds to their lots (kept up to date)."""
    if isinstance(event, ev.PurchaseRecorded):
        return [f"order:{event.order_id}", *_new(event.lot)]
    if isinstance(event, ev.PointsAwarded):
        return [*_new(event.lot), *(["arrears"] if event.arrears_repaid else [])]
    if isinstance(event, ev.PointsHeld):
        lots = _lots(event.allocations)
        hold_lots[event.hold_id] = lots
        return [f"hold:{event.hold_id}", *lots]
    if isinstance(event, ev.HoldCommitted | ev.HoldReleased):
        return [f"hold:{event.hold_id}", *hold_lots.pop(event.hold_id, [])]
    if isinstance(event, ev.PurchaseRefunded):
        arrears = event.arrears_added or event.arrears_repaid
        return [
            f"order:{event.order_id}", *_lots(event.debits), *_lots(event.returned), *_new(event.relot),
            *(["arrears"] if arrears else []),
        ]  # fmt: skip
    if isinstance(event, ev.PointsAdjusted):
        arrears = event.arrears_added or event.arrears_repaid
        return [*_new(event.lot), *_lots(event.debits), *(["arrears"] if arrears else [])]
    if isinstance(event, ev.LotActivated):
        return [f"lot:{event.lot_id}", *(["arrears"] if event.arrears_repaid else [])]
    if isinstance(event, ev.LotExpired):
        return [f"lot:{event.lot_id}"]
    if isinstance(event, ev.MembershipPurchased | ev.MembershipCancelled | ev.MembershipLapsed):
        return [f"membership:{event.membership_id}"]
    if isinstance(event, ev.EntitlementGranted | ev.EntitlementConsumed | ev.EntitlementRevoked):
        return [f"entitlement:{event.entitlement_id}"]
    if isinstance(event, ev.PointsExchanged):
        return [f"exchange:{event.exchange_id}", *_lots(event.debits)]
    if isinstance(event, ev.ExchangeCancelled):
        return [
            f"exchange:{event.exchange_id}", *_lots(event.returned), *_lots(event.relot_sources), *_new(event.relot),
            *(["arrears"] if event.arrears_repaid else []),
        ]  # fmt: skip
    if isinstance(event, ev.MemberMerged):
        return [_EVERYTHING]
    if isinstance(event, ev.MemberAbsorbed):
        return [*(f"lot:{t.lot_id}" for t in event.lots), *(["arrears"] if event.arrears else [])]
    if isinstance(event, ev.MemberImported):
        return [*(f"lot:{lot.lot_id}" for lot in event.lots)]
    if isinstance(event, ev.PointsTransferredOut):
        return [f"transfer:{event.transfer_id}", *_lots(event.debits)]
    if isinstance(event, ev.PointsTransferredIn):
        return [*(f"lot:{t.lot_id}" for t in event.lots), *(["arrears"] if event.arrears_repaid else [])]
    return []


def counted_times(recorded: Sequence[Recorded]) -> list[datetime]:
    """The counted time of each event (see the module's docstring), in stream order."""
    last: dict[str, datetime] = {}
    hold_lots: dict[str, list[str]] = {}
    floor: datetime | None = None
    latest: datetime | None = None
    out: list[datetime] = []
    for r in recorded:
        at = r.occurred_at if floor is None or r.occurred_at >= floor else floor
        keys = touched(r.event, hold_lots)
        if _EVERYTHING in keys and latest is not None and latest > at:
            at = latest
        for key in keys:
            seen = last.get(key)
            if seen is not None and seen > at:
                at = seen
        for key in keys:
            last[key] = at
        if isinstance(r.event, ev.MemberEnrolled | ev.MemberImported) and floor is None:
            floor = at
        latest = at if latest is None or at > latest else latest
        out.append(at)
    return out


def fold_as_of(
    program_id: str,
    member_id: str,
    recorded: Sequence[Recorded],
    as_of: datetime,
    as_known_at: datetime,
    policies: PolicyHistory,
    profile: Profile | None = None,
    observe: Callable[[MemberState, ev.MemberEvent], None] | None = None,
) -> AsOf:
    """The member as of ``as_of``, as known at ``as_known_at``, from its stored events (in stream order).
    ``observe`` is told of each event folded, with the state it is about to be applied to."""
    known = known_at(recorded, as_known_at)
    state = MemberState(program_id=program_id, member_id=member_id)
    folded: list[Counted] = []
    for r, at in zip(known, counted_times(known), strict=True):
        if at <= as_of:
            if observe is not None:
                observe(state, r.event)
            evolve(state, r.event)
            folded.append(Counted(r.event_id, at, r.event))
    if state.enrolled:
        ctx = Context(now=as_of, at=as_of, policies=policies, profile=profile or Profile())
        for event in tick(state, ctx):
            if observe is not None:
                observe(state, event)
            evolve(state, event)
            folded.append(Counted("", event.at, event))
    # The state's version is the stream version of the log it was folded from (as known at ``as_known_at``), as
    # the answers' ``version`` fields say, not the number of events applied.
    state.version = len(known)
    return AsOf(state, folded, as_of, as_known_at)
