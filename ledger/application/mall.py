"""The points-mall catalog as a member sees it: every reward with the stock left and, for a member, whether they
may exchange it now and, when not, the rule that stops them (the same rule an exchange is judged by)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ledger.domain.decide import effective_tier
from ledger.domain.decide.mall import exchanged_in_period
from ledger.domain.state import MemberState
from ledger.domain.stock import StockState, decode, evolve_stock
from ledger.domain.streams import stock_stream
from policies import Reward, judge_exchange, stock_left

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
