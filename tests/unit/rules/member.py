"""A member driven through ``decide`` and ``evolve`` on an injected clock, for the rule tests.

``Member.run(command, now=..., at=...)`` does what the write path does: everything due up to ``now`` first
(``tick``), then the command decided at business time ``at`` (default ``now``), its events folded in.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.evolve import fold
from ledger.domain.state import Lot, MemberState
from policies import OrderLine, PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A wall-clock time in Asia/Shanghai."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SH)


E = TypeVar("E")

HISTORY = PolicyHistory.starting_with(POLICY, sh(2020, 1, 1))


def line(paid_fen: int, line_id: str = "1", *, category: str = "diapers", sku: str = "LS-DIAPER-M", qty: int = 1) -> OrderLine:
    return OrderLine(line_id, sku, category, qty, paid_fen)


class Member:
    def __init__(
        self,
        enrolled_at: datetime,
        *,
        history: PolicyHistory = HISTORY,
        profile: cmd.Profile | None = None,
        member_id: str = "m1",
    ) -> None:
        self.history = history
        self.profile = profile or cmd.Profile()
        self.state = MemberState(program_id="ls", member_id=member_id)
        self.now = enrolled_at
        self.events: list[ev.MemberEvent] = []
        self.run(cmd.EnrollMember(member_id=member_id, identities=()), now=enrolled_at)

    def context(self, now: datetime, at: datetime | None = None) -> Context:
        return Context(now=now, at=at or now, policies=self.history, profile=self.profile)

    def advance(self, now: datetime) -> list[ev.MemberEvent]:
        """Move the clock to ``now`` and run what fell due."""
        assert now >= self.now, "the clock only moves forward"
        self.now = now
        produced = tick(self.state, self.context(now))
        fold(self.state, produced)
        self.events += produced
        return produced

    def run(self, command: cmd.MemberCommand, *, now: datetime | None = None, at: datetime | None = None) -> list[ev.MemberEvent]:
        """Decide ``command`` recorded at ``now`` (default: the current clock) with business time ``at``."""
        if now is not None and now != self.now:
            self.advance(now)
        produced = decide(command, self.state, self.context(self.now, at))
        fold(self.state, produced)
        self.events += produced
        return produced

    # -- commands ------------------------------------------------------------------------------------------

    def buy(
        self,
        order_id: str,
        *lines: OrderLine,
        now: datetime | None = None,
        at: datetime | None = None,
        points_paid: int = 0,
    ) -> ev.PurchaseRecorded:
        total = sum(ln.paid_fen for ln in lines) + points_paid
        out = self.run(
            cmd.RecordPurchase(self.state.member_id, order_id, tuple(lines), total, points_paid), now=now, at=at
        )
        recorded = out[0]
        assert isinstance(recorded, ev.PurchaseRecorded)
        return recorded

    def award(self, behaviour: str, reference: str | None = None, *, now: datetime | None = None) -> ev.PointsAwarded:
        """Award ``behaviour``; without ``reference``, a fresh one (none for a check-in, which needs none)."""
        if reference is None:
            reference = "" if behaviour == "check_in" else f"{behaviour}-{self.state.version + 1}"
        out = self.run(cmd.AwardPoints(self.state.member_id, behaviour, reference), now=now)
        awarded = out[0]
        assert isinstance(awarded, ev.PointsAwarded)
        return awarded

    def adjust(self, points: int, *, now: datetime | None = None) -> ev.PointsAdjusted:
        out = self.run(cmd.AdjustPoints(self.state.member_id, points, "GOODWILL", "test", "op-1"), now=now)
        adjusted = out[0]
        assert isinstance(adjusted, ev.PointsAdjusted)
        return adjusted

    def hold(self, hold_id: str, order_id: str, points: int, order_total_fen: int, *, now: datetime | None = None) -> ev.PointsHeld:
        out = self.run(cmd.HoldPoints(self.state.member_id, hold_id, order_id, points, order_total_fen), now=now)
        held = out[0]
        assert isinstance(held, ev.PointsHeld)
        return held

    def commit(self, hold_id: str, points: int | None = None, *, now: datetime | None = None) -> ev.HoldCommitted:
        out = self.run(cmd.CommitHold(self.state.member_id, hold_id, points), now=now)
        committed = out[0]
        assert isinstance(committed, ev.HoldCommitted)
        return committed

    def redeem(self, order_id: str, points: int, order_total_fen: int, *, now: datetime | None = None) -> ev.HoldCommitted:
        """Pay ``points`` of order ``order_id`` with points: hold, then commit at once."""
        self.hold(f"H-{order_id}", order_id, points, order_total_fen, now=now)
        return self.commit(f"H-{order_id}")

    def refund(
        self, order_id: str, refund_id: str, *lines: cmd.RefundLine, now: datetime | None = None, at: datetime | None = None
    ) -> ev.PurchaseRefunded:
        out = self.run(cmd.RefundPurchase(self.state.member_id, order_id, refund_id, tuple(lines)), now=now, at=at)
        refunded = out[0]
        assert isinstance(refunded, ev.PurchaseRefunded)
        return refunded

    # -- reading -------------------------------------------------------------------------------------------

    def lot(self, lot_id: str) -> Lot:
        return self.state.lots[lot_id]

    def remaining(self, *lot_ids: str) -> list[int]:
        return [self.state.lots[lot_id].remaining for lot_id in lot_ids]

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]
