"""The stock of a points-mall reward: its own stream (``stock-{program}-{reward}``), folded to what is left.

Every exchange that takes a unit appends ``StockTaken`` to the reward's stock stream in the same atomic append
as the member's events, naming the stream version it was decided on: two exchanges of the last unit (on one
writer, or on two replicas sharing a store) cannot both commit, as the second finds the stream moved
(``WrongExpectedVersion``) and is decided again against the new count. A cancelled exchange appends
``StockReturned``; an operator's correction ``StockAdjusted``. The units left are the policy's ``stock`` less
the net taken (``policies.stock_left``): the fold never goes below zero because no decision lets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from ledger.domain import events as ev
from ledger.domain.commands import AdjustStock
from ledger.domain.errors import InvalidCommand, Refusal
from policies import PolicyVersion, stock_left


class StockTaken(ev._Event):
    type: Literal["StockTaken"] = "StockTaken"
    reward_id: str
    member_id: str
    exchange_id: str
    units: int = 1


class StockReturned(ev._Event):
    type: Literal["StockReturned"] = "StockReturned"
    reward_id: str
    member_id: str
    exchange_id: str
    units: int = 1


class StockAdjusted(ev._Event):
    """An operator added (positive) or removed (negative) units, with a reason."""

    type: Literal["StockAdjusted"] = "StockAdjusted"
    reward_id: str
    units: int
    reason: str
    operator_id: str
    stock_left_after: int


StockEvent = Annotated[StockTaken | StockReturned | StockAdjusted, Field(discriminator="type")]

STOCK_EVENT: TypeAdapter[StockEvent] = TypeAdapter(StockEvent)


def encode(event: StockEvent) -> bytes:
    return event.model_dump_json(exclude_defaults=False).encode()


def decode(payload: bytes) -> StockEvent:
    return STOCK_EVENT.validate_json(payload)


@dataclass(slots=True)
class StockState:
    """One reward's stock stream folded: its version and the units taken net of returns and adjustments."""

    stream_id: str
    version: int = 0
    taken: int = 0
    returned: int = 0
    adjusted: int = 0

    @property
    def net_taken(self) -> int:
        """Units gone from the policy's stock: taken - returned - adjusted (what ``policies.stock_left`` needs)."""
        return self.taken - self.returned - self.adjusted

    def copy(self) -> StockState:
        return StockState(self.stream_id, self.version, self.taken, self.returned, self.adjusted)


def evolve_stock(state: StockState, event: StockEvent) -> StockState:
    if isinstance(event, StockTaken):
        state.taken += event.units
    elif isinstance(event, StockReturned):
        state.returned += event.units
    else:
        state.adjusted += event.units
    state.version += 1
    return state


def movement(member_id: str, event: ev.MemberEvent, at: datetime) -> tuple[str, StockEvent] | None:
    """The stock stream a member event moves, and the stock event it appends there (None: it moves no stock)."""
    if isinstance(event, ev.PointsExchanged) and event.stock_stream is not None:
        return event.stock_stream, StockTaken(
            at=at, reward_id=event.reward_id, member_id=member_id, exchange_id=event.exchange_id
        )
    if isinstance(event, ev.ExchangeCancelled) and event.stock_stream is not None:
        return event.stock_stream, StockReturned(
            at=at, reward_id=event.reward_id, member_id=member_id, exchange_id=event.exchange_id
        )
    return None


MAX_STOCK_ADJUSTMENT = 1_000_000


def adjust(command: AdjustStock, stock: StockState, version: PolicyVersion, at: datetime) -> StockAdjusted:
    """An operator's stock correction under the policy version in force at ``at``: never below zero units left."""
    if command.units == 0 or abs(command.units) > MAX_STOCK_ADJUSTMENT:
        raise InvalidCommand("units", f"must be non-zero and at most {MAX_STOCK_ADJUSTMENT} either way")
    if not command.reason.strip():
        raise InvalidCommand("reason", "is required")
    if not command.operator_id:
        raise InvalidCommand("context.operator_id", "is required for a stock adjustment")
    reward = version.policy.mall.get(command.reward_id)
    if reward is None:
        raise InvalidCommand(
            "reward_id", f"unknown reward {command.reward_id!r} in the points mall of this policy version"
        )
    if reward.stock is None:
        raise InvalidCommand(
            "reward_id", f"reward {command.reward_id!r} has unlimited stock: there is none to adjust"
        )
    left = stock_left(reward, stock.net_taken)
    assert left is not None
    after = left + command.units
    if after < 0:
        raise Refusal(
            "STOCK_BELOW_ZERO",
            f"{reward.name}: {left} units left, cannot remove {-command.units}",
            {"reward_id": command.reward_id, "stock_left": left, "units": command.units},
        )
    return StockAdjusted(
        at=at,
        reward_id=command.reward_id,
        units=command.units,
        reason=command.reason,
        operator_id=command.operator_id,
        stock_left_after=after,
    )
