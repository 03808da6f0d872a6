"""Conversions between the wire (``loyalty.v1`` messages) and the ledger (domain commands, state, events).

The conversions live by what they convert, and every one is importable from here (handlers write ``cv.name``):
times in :mod:`~ledger.entrypoints.grpc.timestamps`, enums in :mod:`~ledger.entrypoints.grpc.enum_codes`, member
state in :mod:`~ledger.entrypoints.grpc.member_messages`; the request context and a write's events here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ledger.application.principal import CURRENT
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain import queries
from ledger.entrypoints.grpc.enum_codes import (
    CHANNEL_CODES,
    CHANNELS,
    ENTITLEMENT_STATUSES,
    IDENTITY_KINDS,
    LOT_SOURCES,
    MEMBERSHIP_STATUSES,
    OVERRIDE_KIND_NAMES,
    OVERRIDE_KINDS,
    PROBLEM_KINDS,
)
from ledger.entrypoints.grpc.member_messages import (
    LOT_STATUS_NAMES,
    actor_message,
    balance,
    balance_message,
    entitlement,
    granted_entitlement,
    granting_membership,
    lot,
    lot_of_row,
    lot_status,
    membership,
    net_points,
    new_lot_portion,
    portions,
    ratio,
    snapshot,
    tier_override,
    tier_state,
)
from ledger.entrypoints.grpc.timestamps import (
    optional_datetime,
    rfc3339,
    stamp,
    to_datetime,
    to_timestamp,
)
from loyalty.v1 import common_pb2

__all__ = [
    "CHANNELS",
    "CHANNEL_CODES",
    "ENTITLEMENT_STATUSES",
    "IDENTITY_KINDS",
    "LOT_SOURCES",
    "LOT_STATUS_NAMES",
    "MEMBERSHIP_STATUSES",
    "OVERRIDE_KINDS",
    "OVERRIDE_KIND_NAMES",
    "PROBLEM_KINDS",
    "actor_message",
    "actor_of",
    "balance",
    "balance_message",
    "entitlement",
    "envelope",
    "first",
    "granted_entitlement",
    "granting_membership",
    "lot",
    "lot_of_row",
    "lot_status",
    "lots_credited",
    "lots_debited",
    "membership",
    "net_points",
    "new_lot_portion",
    "of_type",
    "optional_datetime",
    "order_of",
    "portions",
    "ratio",
    "rfc3339",
    "snapshot",
    "stamp",
    "tier_override",
    "tier_state",
    "to_datetime",
    "to_timestamp",
]

# -- requests -> domain ---------------------------------------------------------------------------------------


def actor_of(context: common_pb2.RequestContext) -> cmd.Actor:
    """Who acts: the labels the request carries and the authenticated key (:mod:`ledger.application.principal`)."""
    principal = CURRENT.get()
    return cmd.Actor(
        channel=CHANNELS.get(context.channel, ""),
        store_id=context.store_id,
        terminal_id=context.terminal_id,
        operator_id=context.operator_id,
        key_id=principal.key_id if principal is not None else "",
        role=principal.role if principal is not None else "",
    )


def envelope(
    program_id: str,
    command: cmd.MemberCommand,
    idempotency_key: str,
    context: common_pb2.RequestContext,
    *,
    business_time: bool = True,
) -> cmd.Envelope:
    """A command with what every write carries. Holds act at now: ``business_time=False`` drops occurred_at."""
    return cmd.Envelope(
        program_id=program_id,
        command=command,
        idempotency_key=idempotency_key,
        occurred_at=optional_datetime(context, "occurred_at") if business_time else None,
        actor=actor_of(context),
        correlation_id=context.correlation_id or None,
    )


# -- events ---------------------------------------------------------------------------------------------------


order_of = queries.order_of


def lots_credited(event: ev.MemberEvent) -> list[common_pb2.LotPortion]:
    out: list[common_pb2.LotPortion] = []
    new_lot = getattr(event, "lot", None)
    if isinstance(new_lot, ev.NewLot):
        out.append(new_lot_portion(new_lot))
    match event:
        case ev.PurchaseRefunded():
            out += portions(event.returned)
            if event.relot is not None:
                out.append(new_lot_portion(event.relot))
        case ev.LotActivated():
            out.append(common_pb2.LotPortion(lot_id=event.lot_id, points=event.points))
        case ev.MemberAbsorbed():
            for t in event.lots:
                portion = common_pb2.LotPortion(lot_id=t.lot_id, points=t.points)
                stamp(portion.expires_at, t.expires_at)
                out.append(portion)
        case ev.PointsTransferredIn():
            for lot in event.lots:
                portion = common_pb2.LotPortion(lot_id=lot.lot_id, points=lot.points)
                stamp(portion.expires_at, lot.expires_at)
                out.append(portion)
        case _:
            pass
    return out


def lots_debited(event: ev.MemberEvent) -> list[common_pb2.LotPortion]:
    match event:
        case ev.PointsHeld():
            return portions(event.allocations)
        case ev.HoldCommitted() | ev.PointsAdjusted() | ev.PointsTransferredOut():
            return portions(event.debits)
        case ev.PurchaseRefunded():
            return portions(event.debits)
        case ev.LotExpired():
            return [common_pb2.LotPortion(lot_id=event.lot_id, points=event.points)]
        case _:
            return []


def first(events: Iterable[ev.MemberEvent], kind: type[Any]) -> Any:
    """The first event of a type in a command's result, or None."""
    return next((e for e in events if isinstance(e, kind)), None)


def of_type(events: Iterable[ev.MemberEvent], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]
