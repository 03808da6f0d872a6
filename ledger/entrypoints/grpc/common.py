"""What the four ``loyalty.v1`` services share: paging, order lines, line earnings and the member services' base.

Each handler checks the request's shape (:mod:`ledger.entrypoints.grpc.validation`), maps it to a facade call or a
domain command in an :class:`~ledger.domain.commands.Envelope`, and builds the response from what came back.
Every handler is wrapped by :func:`ledger.entrypoints.grpc.errors.rpc`, so refusals become the statuses of
``docs/errors.md``."""

from __future__ import annotations

from typing import Any

from ledger.application.results import CommandResult
from ledger.application.service import LedgerApp, MemberView
from ledger.domain import events as ev
from ledger.domain import queries
from ledger.domain.errors import InvalidCommand
from ledger.entrypoints.grpc import convert as cv
from loyalty.v1 import (
    common_pb2,
)
from policies import OrderLine


def page_bounds(token: str, total: int, size: int, field: str = "page_token") -> tuple[int, int, str]:
    """Offset paging over a list in a stable order: (start, end, next token)."""
    if token:
        if not token.isdigit() or not 0 < int(token) <= total:
            raise InvalidCommand(field, "is not a token this listing returned")
        start = int(token)
    else:
        start = 0
    end = min(start + size, total)
    return start, end, (str(end) if end < total else "")


class MemberBase:
    def __init__(self, app: LedgerApp) -> None:
        self.app = app

    def _view(self, program_id: str, member_id: str) -> MemberView:
        return self.app.view(program_id, member_id)

    def _tier_after(self, result: CommandResult) -> str:
        changed = [e for e in result.events if isinstance(e, ev.TierChanged)]
        view = self.app.after(result)
        if changed and not view.state.override_at(view.now):
            return str(changed[-1].to_tier)
        return queries.current_tier(view.state, view.policy.policy, view.now)

    def _point_value(self, program_id: str, points: int) -> int:
        policy = self.app.program(program_id).policies.in_force_at(self.app.now(program_id)).policy
        return points * policy.redemption.point_value_fen


def order_lines(request: Any) -> tuple[OrderLine, ...]:
    return tuple(
        OrderLine(
            line_id=ln.line_id, sku=ln.sku, category=ln.category, quantity=ln.quantity, paid_fen=ln.paid_fen
        )
        for ln in request.lines
    )


def line_earning(line: Any, sku: str, category: str) -> common_pb2.LineEarning:
    return common_pb2.LineEarning(
        line_id=line.line_id,
        sku=sku,
        category=category,
        paid_fen=line.paid_fen,
        rate=cv.ratio(line.rate),
        base_points=line.base_points,
        bonus_points=line.bonus_points,
        points=line.points,
    )
