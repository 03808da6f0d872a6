"""The points-mall catalog as a member sees it: every reward with the stock left and, for a member, whether they
may exchange it now and, when not, the rule that stops them (the same rule an exchange is judged by); and the
verification of the rewards' stock streams (``VerifyProgram``, ``ledger verify``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ledger.domain import events as ev
from ledger.domain.decide import effective_tier
from ledger.domain.decide.mall import exchanged_in_period
from ledger.domain.evolve import evolve
from ledger.domain.state import MemberState
from ledger.domain.stock import StockAdjusted, StockReturned, StockState, StockTaken, decode, evolve_stock
from ledger.domain.streams import member_stream, stock_stream, stock_streams_of
from ledger.eventlog.chain import stream_head, verify_stream
from policies import NoPolicyInForce, Reward, judge_exchange, stock_left

if TYPE_CHECKING:
    from ledger.application.service import LedgerApp


@dataclass(frozen=True, slots=True)
class Offer:
    reward_id: str
    reward: Reward
    stock_left: int | None
    """None: unlimited."""
    reason: str | None = None
    """For a member: None if they may exchange it now, else the reason code an exchange would be refused with."""
    message: str = ""


def units_left(app: LedgerApp, program_id: str, reward_id: str, reward: Reward) -> int | None:
    """The reward's units left as committed in its stock stream (None: unlimited)."""
    if reward.stock is None:
        return None
    stock = StockState(stock_stream(program_id, reward_id))
    for stored in app.store.read_stream(stock.stream_id):
        evolve_stock(stock, decode(stored.payload))
    return stock_left(reward, stock.net_taken)


def catalog(app: LedgerApp, program_id: str, at: datetime, member: MemberState | None = None) -> list[Offer]:
    """Every reward of the policy in force at ``at``, by reward id; judged for ``member`` when given."""
    policy = app.program(program_id).policies.in_force_at(at).policy
    out: list[Offer] = []
    for reward_id, reward in sorted(policy.mall.items()):
        left = units_left(app, program_id, reward_id, reward)
        if member is None:
            out.append(Offer(reward_id, reward, left))
            continue
        verdict = judge_exchange(
            policy,
            reward_id,
            reward,
            tier=effective_tier(member, policy, at),
            at=at,
            exchanged_in_period=exchanged_in_period(member, policy, reward_id, reward, at),
            units_left=left,
            available_points=member.available,
        )
        out.append(Offer(reward_id, reward, left, verdict.reason, verdict.message))
    return out


@dataclass(slots=True)
class StockReport:
    """One reward's stock stream verified: its hash chain, its fold, and the members' exchanges it names."""

    stream_id: str
    ok: bool = True
    events: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def verify_stock(app: LedgerApp, program_id: str) -> list[StockReport]:
    """Every stock stream of the program: the hash chain is intact; folded in order, the units left under the
    policy version in force at each event never go below zero; every unit taken or returned names an exchange of
    that member, of that stream, taken once (and, when returned, cancelled); each named member's exchanges of the
    stream took as many units as the stream says they did, net of returns."""
    policies = app.program(program_id).policies
    prefix = stock_streams_of(program_id)
    reports: list[StockReport] = []
    for sid in app.store.list_streams(prefix):
        reward_id = sid[len(prefix) :]
        head_version, head_hash = stream_head(app.store, sid)
        stored = app.store.read_stream(sid, limit=head_version or None)
        report = StockReport(sid, events=len(stored))
        reports.append(report)
        broken = verify_stream(stored, head_version=head_version, head_hash=head_hash)
        if broken is not None:
            report.fail(f"hash chain broken at version {broken.version}: {broken.reason}")
            continue
        stock = StockState(sid)
        members: dict[str, MemberState] = {}
        net_by_member: dict[str, int] = {}
        for s in stored:
            event = decode(s.payload)
            evolve_stock(stock, event)
            try:
                reward = policies.in_force_at(event.at).policy.mall.get(reward_id)
            except NoPolicyInForce:
                reward = None
            left = stock_left(reward, stock.net_taken) if reward is not None else None
            if left is None:
                # A return may follow a policy version that made the stock unlimited; a unit taken or adjusted
                # never does (no decision takes a unit of a reward without stock).
                if not isinstance(event, StockReturned):
                    report.fail(f"version {s.version}: {reward_id} has no finite stock in the policy in force")
            elif left < 0:
                report.fail(f"version {s.version}: stock below zero ({left})")
            if isinstance(event, StockAdjusted):
                continue
            member = members.get(event.member_id)
            if member is None:
                member = members[event.member_id] = MemberState(
                    program_id=program_id, member_id=event.member_id
                )
                for m in app.store.read_stream(member_stream(program_id, event.member_id)):
                    evolve(member, ev.decode(m.payload))
            x = member.exchanges.get(event.exchange_id)
            if x is None or x.stock_stream != sid:
                report.fail(
                    f"version {s.version}: no exchange {event.exchange_id} of {event.member_id} on this stock"
                )
                continue
            if isinstance(event, StockReturned) and x.cancelled_at is None:
                report.fail(f"version {s.version}: exchange {event.exchange_id} returned but not cancelled")
            step = 1 if isinstance(event, StockTaken) else -1
            net_by_member[event.member_id] = net_by_member.get(event.member_id, 0) + step * event.units
        for member_id, member in members.items():
            held = sum(
                1 for x in member.exchanges.values() if x.stock_stream == sid and x.cancelled_at is None
            )
            if held != net_by_member.get(member_id, 0):
                report.fail(
                    f"member {member_id} holds {held} units of {reward_id}, the stock says {net_by_member.get(member_id, 0)}"
                )
    return reports
