"""The points mall: exchange points for a reward, cancel an unused exchange.

An exchange is one decision: it spends the price in points (soonest-expiring lots first, each debit recording
its lot, like a redemption), takes one unit of stock (the writer appends the stock event that the exchange
names to the reward's stock stream in the same atomic append) and grants the reward's entitlement. Whether it
may happen is ``policies.judge_exchange``: the sale window, the tier, the per-member limit, the stock, the
points, at the business time and under the policy version in force then.

A cancellation gives the points back into the lots they came from (a part whose lot has expired comes back as
a new lot expiring ``relot_days`` later, the rule refunds of points-paid orders follow), returns the unit to
stock and revokes the entitlement; only an entitlement never used and still valid can be cancelled.
"""

from __future__ import annotations

from datetime import datetime

from ledger.domain import events as ev
from ledger.domain.commands import CancelExchange, ExchangePoints
from ledger.domain.decide.benefits import grant
from ledger.domain.decide.context import Context, check_business_time, effective_tier, next_id
from ledger.domain.decide.lots import repaid, spendable_lots, take
from ledger.domain.decide.refunds import return_to_lots
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.state import MemberState
from ledger.domain.streams import stock_stream
from policies import Policy, Reward, judge_exchange, limit_period, relot_expiry, stock_left

EXCHANGE_SOURCE = "exchange:"
"""The ``source`` prefix of an entitlement a points-mall exchange granted (``exchange:{exchange_id}``)."""


def reward_of(policy: Policy, reward_id: str) -> Reward:
    reward = policy.mall.get(reward_id)
    if reward is None:
        raise InvalidCommand(
            "reward_id", f"unknown reward {reward_id!r} in the points mall of this policy version"
        )
    return reward


def exchanged_in_period(
    state: MemberState, policy: Policy, reward_id: str, reward: Reward, at: datetime
) -> int:
    """The member's exchanges of the reward (not cancelled) in the limit's period around ``at``."""
    period = limit_period(policy, reward, at)
    if period is None:
        return 0
    return state.exchanges_between(reward_id, *period)


def exchange(command: ExchangePoints, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    check_business_time(ctx)
    if command.exchange_id in state.exchanges:
        raise Refusal(
            "EXCHANGE_EXISTS", f"exchange {command.exchange_id} already exists", {"id": command.exchange_id}
        )
    pv = ctx.version
    policy = pv.policy
    reward = reward_of(policy, command.reward_id)
    at = ctx.at
    tier = effective_tier(state, policy, at)
    stream: str | None = None
    units_left: int | None = None
    if reward.stock is not None:
        stream = stock_stream(state.program_id, command.reward_id)
        if ctx.stock is None or ctx.stock.stream_id != stream:
            raise AssertionError(f"the stock of {command.reward_id} was not loaded for the exchange")
        units_left = stock_left(reward, ctx.stock.net_taken)
    lots = spendable_lots(state)
    available = sum(lot.spendable for lot in lots)
    verdict = judge_exchange(
        policy,
        command.reward_id,
        reward,
        tier=tier,
        at=at,
        exchanged_in_period=exchanged_in_period(state, policy, command.reward_id, reward, at),
        units_left=units_left,
        available_points=available,
    )
    if verdict.reason is not None:
        raise Refusal(verdict.reason, verdict.message, verdict.details)
    debits, missing = take(lots, reward.price_points)
    assert missing == 0, "the verdict checked the points"
    granted = grant(
        state, reward.benefit, at, ctx, source=f"{EXCHANGE_SOURCE}{command.exchange_id}", n=1, tier=tier
    )
    exchanged = ev.PointsExchanged(
        at=at,
        exchange_id=command.exchange_id,
        reward_id=command.reward_id,
        reward_name=reward.name,
        points=reward.price_points,
        cash_fen=reward.price_fen,
        debits=tuple(debits),
        entitlement_id=granted.entitlement_id,
        stock_stream=stream,
        tier=tier,
        policy_version=pv.version,
    )
    return [exchanged, granted]


def cancel(command: CancelExchange, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    if not command.reason.strip():
        raise InvalidCommand("reason", "is required")
    check_business_time(ctx)
    x = state.exchanges.get(command.exchange_id)
    if x is None:
        raise NotFound("exchange", command.exchange_id)
    if x.cancelled_at is not None:
        raise Refusal(
            "EXCHANGE_ALREADY_CANCELLED",
            f"exchange {x.exchange_id} was already cancelled",
            {"exchange_id": x.exchange_id, "cancelled_at": x.cancelled_at},
        )
    ent = state.entitlements.get(x.entitlement_id)
    assert ent is not None, "an exchange's entitlement is granted with it"
    at = ctx.at
    if ent.uses:
        raise Refusal(
            "EXCHANGE_ALREADY_USED",
            f"exchange {x.exchange_id}: {ent.name} was already used or collected",
            {"exchange_id": x.exchange_id, "entitlement_id": ent.entitlement_id, "used": ent.used_total},
        )
    if ent.revoked_at is not None or at >= ent.valid_until:
        raise Refusal(
            "EXCHANGE_NOT_CANCELLABLE",
            f"exchange {x.exchange_id}: {ent.name} is no longer valid",
            {
                "exchange_id": x.exchange_id,
                "entitlement_id": ent.entitlement_id,
                "valid_until": ent.valid_until,
            },
        )
    pv = ctx.policy_at(at)
    returned, relot_sources = return_to_lots(state, x.debits, x.points, 0, ctx.now)
    relot = None
    relot_repaid = 0
    relot_points = sum(d.points for d in relot_sources)
    if relot_points:
        relot = ev.NewLot(
            lot_id=next_id(state, "X"),
            source="refund_return",
            points=relot_points,
            active_at=at,
            expires_at=relot_expiry(pv.policy, at),
        )
        relot_repaid = repaid(state.arrears, relot_points)
    if x.stock_stream is not None and (ctx.stock is None or ctx.stock.stream_id != x.stock_stream):
        raise AssertionError(f"the stock of {x.reward_id} was not loaded for the cancellation")
    return [
        ev.ExchangeCancelled(
            at=at,
            exchange_id=x.exchange_id,
            reward_id=x.reward_id,
            points_returned=x.points,
            returned=tuple(returned),
            relot=relot,
            relot_sources=tuple(relot_sources),
            arrears_repaid=relot_repaid,
            stock_stream=x.stock_stream,
            reason=command.reason,
            policy_version=pv.version,
        ),
        ev.EntitlementRevoked(at=at, entitlement_id=ent.entitlement_id, reason="exchange_cancelled"),
    ]
