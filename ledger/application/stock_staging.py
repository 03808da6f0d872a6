"""Stock staging: the points mall's reward stock streams one group moves, before its atomic append.

An exchange takes units of its reward's stock, a cancellation puts them back, an operator's ``AdjustStock``
adds or removes units: each is a stock event on the reward's own stream (``stock-{program}-{reward}``). The
writer keeps the streams' folds as last committed; a group loads each stream it touches once (the cached fold
plus whatever was appended since, by another replica on a shared store), so exchanges in one group see each
other's units, and its commit appends the stock events with the members' at the version they were decided on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.application.new_events import caused_by, new_event
from ledger.application.ports import ProgramDirectory
from ledger.application.results import CommandResult
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.state import Balances, MemberState
from ledger.domain.stock import StockEvent, StockState, adjust, evolve_stock, movement
from ledger.domain.stock import decode as decode_stock
from ledger.domain.stock import encode as encode_stock
from ledger.domain.streams import stock_stream
from ledger.eventlog.port import EventStore, NewEvent, StreamAppend


@dataclass(slots=True)
class StagedStock:
    """A reward's stock stream as this group found it, and the stock events the group's exchanges add to it."""

    state: StockState
    expected_version: int
    events: list[NewEvent] = field(default_factory=list)


class StockStaging:
    """The stock streams one group has touched; ``cache`` (kept across groups) holds the folds last committed."""

    def __init__(self, store: EventStore[Any], cache: dict[str, StockState]) -> None:
        self._store = store
        self._cache = cache
        self.streams: dict[str, StagedStock] = {}

    def of(
        self, program_id: str, command: cmd.ExchangePoints | cmd.CancelExchange, state: MemberState
    ) -> StagedStock | None:
        """The stock stream an exchange (of its reward) or a cancellation (of the exchange's) moves, brought up to
        date with the log; None for an exchange that took no stock."""
        if isinstance(command, cmd.ExchangePoints):
            sid = stock_stream(program_id, command.reward_id)
        else:
            x = state.exchanges.get(command.exchange_id)
            if x is None or x.stock_stream is None:
                return None
            sid = x.stock_stream
        return self.stream(sid)

    def stream(self, sid: str) -> StagedStock:
        found = self.streams.get(sid)
        if found is not None:
            return found
        cached = self._cache.get(sid)
        stock = cached.copy() if cached is not None else StockState(sid)
        for stored in self._store.read_stream(sid, after_version=stock.version):
            evolve_stock(stock, decode_stock(stored.payload))
        found = self.streams[sid] = StagedStock(stock, stock.version)
        return found

    def follow(
        self, req: cmd.Envelope, member_id: str, events: Sequence[ev.MemberEvent], now: datetime
    ) -> None:
        """Move the stock the member's exchange events take or give back (its stream was loaded by :meth:`of`)."""
        for event in events:
            moved = movement(member_id, event, event.at)
            if moved is None:
                continue
            sid, stock_event = moved
            self._append(req, self.streams[sid], stock_event, now)

    def adjust(
        self, req: cmd.Envelope, command: cmd.AdjustStock, programs: ProgramDirectory
    ) -> CommandResult:
        """An operator's stock adjustment: decided on the reward's stock stream alone (no member is touched)."""
        ctx = programs.context(req.program_id, req.occurred_at, "", look_up_profile=False)
        k = self.stream(stock_stream(req.program_id, command.reward_id))
        event = adjust(command, k.state, ctx.version, ctx.at)
        self._append(req, k, event, ctx.now)
        return CommandResult(
            program_id=req.program_id,
            member_id="",
            events=(),
            version=k.state.version,
            balance=Balances(0, 0, 0, 0),
            recorded_at=ctx.now,
            extra={
                "reward_id": command.reward_id,
                "units": command.units,
                "stock_left": event.stock_left_after,
            },
        )

    def _append(self, req: cmd.Envelope, k: StagedStock, stock_event: StockEvent, now: datetime) -> None:
        evolve_stock(k.state, stock_event)
        k.events.append(
            new_event(stock_event.type, encode_stock(stock_event), stock_event.at, now, **caused_by(req))
        )

    def appends(self) -> list[StreamAppend]:
        """The group's stock events, one append per stream at the version it was decided on: a unit taken
        meanwhile (another replica) refuses the group, which is decided again."""
        return [
            StreamAppend(stream_id=sid, expected_version=k.expected_version, events=list(k.events))
            for sid, k in self.streams.items()
            if k.events
        ]

    def drop_cached(self) -> None:
        """Forget every cached fold (what was staged may have changed one in place; they are read again)."""
        self._cache.clear()

    def remember(self) -> None:
        """Keep the folds this group committed."""
        for sid, k in self.streams.items():
            self._cache[sid] = k.state
