"""Tiers: immediate upgrades, the yearly review with its grace notice, operator overrides.

* An upgrade applies at the event that crosses a threshold, possibly several tiers at once, judged by the
  thresholds in force when the event is recorded (``ctx.now``) over the growth and referrals whose business
  time falls in the window ending then. Nobody is re-judged when thresholds change: a change only matters
  from the next event or review on.
* The review falls on the anniversary of the last tier change (``next_review_at``). A member who still
  qualifies keeps the tier for another year; otherwise a notice starts the grace period, and at its end the
  member either qualifies again (the notice is cleared, the next review stays a year after the one that
  issued it) or drops one tier, never more. The entry tier has no review.
* An operator may set a temporary upgrade (only above the earned tier) or an override, each with a reason
  and an end; it ends by itself. The member is treated as the override's tier (a temporary upgrade: the
  better of it and the earned tier), and perks follow that effective tier.
"""

from __future__ import annotations

from datetime import datetime

from ledger.domain import commands as cmd
from ledger.domain.decide import benefits
from ledger.domain.decide.context import Context
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.events import (
    EntitlementGranted,
    MemberEvent,
    TierChanged,
    TierOverrideEnded,
    TierOverrideSet,
    TierReviewed,
)
from ledger.domain.state import MemberState, TierOverride
from policies import (
    Policy,
    downgrade_due,
    qualifying_tier,
    review_due,
    tier_below,
    tier_codes,
    tier_rank,
    window_start,
)

OVERRIDE_KINDS = ("temporary_upgrade", "override")


def _review_after(policy: Policy, tier: str, at: datetime) -> datetime | None:
    """The next review for a member who reaches ``tier`` (or keeps it) at ``at``; the entry tier has none."""
    if tier_rank(policy, tier) == 0:
        return None
    return review_due(policy, at)


def _effective(policy: Policy, earned: str, override: TierOverride | None) -> str:
    """The tier the member is treated as, given the earned tier and the override in force (if any)."""
    if override is None:
        return earned
    if override.kind == "override":
        return override.tier
    return override.tier if tier_rank(policy, override.tier) > tier_rank(policy, earned) else earned


def _standing(state: MemberState, policy: Policy, at: datetime) -> tuple[str, int, int]:
    """The qualifying tier at ``at`` from what is recorded: (tier, growth in window, referrals in window)."""
    start = window_start(policy, at)
    growth = state.growth_between(start, at)
    referrals = state.referrals_between(start, at)
    return qualifying_tier(policy, growth, referrals, state.last_purchase_at, at), growth, referrals


# -- due work -------------------------------------------------------------------------------------------------


def next_due(state: MemberState, ctx: Context) -> datetime | None:
    moments = [state.next_review_at]
    if state.downgrade_notice is not None:
        moments.append(state.downgrade_notice.downgrade_at)
    if state.override is not None:
        moments.append(state.override.ends_at)
    due = [m for m in moments if m is not None]
    return min(due) if due else None


def run_due(state: MemberState, at: datetime, ctx: Context) -> list[MemberEvent]:
    """The tier machinery due at exactly ``at``: an override ending, a review, a downgrade notice expiring."""
    version = ctx.policy_at(at)
    policy = version.policy
    out: list[MemberEvent] = []
    override = state.override
    before = _effective(policy, state.tier, override)
    if override is not None and override.ends_at == at:
        out.append(TierOverrideEnded(at=at, tier=override.tier))
        override = None
    earned = state.tier

    if state.next_review_at == at:
        qualifying, growth, _ = _standing(state, policy, at)
        if tier_rank(policy, state.tier) == 0 or tier_rank(policy, qualifying) >= tier_rank(policy, state.tier):
            out.append(
                TierReviewed(
                    at=at,
                    outcome="kept",
                    qualifying_tier=qualifying,
                    growth_in_window=growth,
                    next_review_at=_review_after(policy, state.tier, at),
                    downgrade_at=None,
                    policy_version=version.version,
                )
            )
        else:
            out.append(
                TierReviewed(
                    at=at,
                    outcome="notice",
                    qualifying_tier=tier_below(policy, state.tier),
                    growth_in_window=growth,
                    next_review_at=None,
                    downgrade_at=downgrade_due(policy, at),
                    policy_version=version.version,
                )
            )

    notice = state.downgrade_notice
    if notice is not None and notice.downgrade_at == at:
        qualifying, growth, referrals = _standing(state, policy, at)
        if tier_rank(policy, qualifying) >= tier_rank(policy, state.tier):
            out.append(
                TierReviewed(
                    at=at,
                    outcome="notice_cleared",
                    qualifying_tier=qualifying,
                    growth_in_window=growth,
                    next_review_at=_review_after(policy, state.tier, notice.issued_at),
                    downgrade_at=None,
                    policy_version=version.version,
                )
            )
        else:
            earned = tier_below(policy, state.tier)
            out.append(
                TierChanged(
                    at=at,
                    from_tier=state.tier,
                    to_tier=earned,
                    reason="review_downgrade",
                    growth_in_window=growth,
                    referrals_in_window=referrals,
                    next_review_at=_review_after(policy, earned, at),
                    policy_version=version.version,
                )
            )

    after = _effective(policy, earned, override)
    if after != before:
        out += benefits.on_tier_change(state, before, after, at, ctx)
    if any(isinstance(e, TierReviewed) and e.outcome != "notice" for e in out):
        # Perks granted by a change in this same step are not granted twice.
        granted = {e.benefit for e in out if isinstance(e, EntitlementGranted)}
        out += [
            e
            for e in benefits.renew_tier_perks(state, after, at, ctx, n0=len(out))
            if not (isinstance(e, EntitlementGranted) and e.benefit in granted)
        ]
    return out


# -- upgrades -------------------------------------------------------------------------------------------------


def upgrade(
    state: MemberState,
    ctx: Context,
    *,
    growth: int = 0,
    referral: bool = False,
    purchase_at: datetime | None = None,
) -> list[MemberEvent]:
    """The upgrade (if any) caused by an event about to be recorded.

    ``growth``, ``referral`` and ``purchase_at`` are what that event adds at its business time ``ctx.at``;
    they count if ``ctx.at`` falls in the window ending at ``ctx.now``. The upgrade takes effect at
    ``ctx.now`` under the thresholds in force then.
    """
    now = ctx.now
    version = ctx.policy_at(now)
    policy = version.policy
    start = window_start(policy, now)
    in_window = start < ctx.at <= now
    growth_in_window = state.growth_between(start, now) + (growth if in_window else 0)
    referrals = state.referrals_between(start, now) + (1 if referral and in_window else 0)
    last_purchase = state.last_purchase_at
    if purchase_at is not None and (last_purchase is None or purchase_at > last_purchase):
        last_purchase = purchase_at
    qualifying = qualifying_tier(policy, growth_in_window, referrals, last_purchase, now)
    if tier_rank(policy, qualifying) <= tier_rank(policy, state.tier):
        return []
    out: list[MemberEvent] = [
        TierChanged(
            at=now,
            from_tier=state.tier,
            to_tier=qualifying,
            reason="upgrade",
            growth_in_window=growth_in_window,
            referrals_in_window=referrals,
            next_review_at=_review_after(policy, qualifying, now),
            policy_version=version.version,
        )
    ]
    override = state.override if state.override is not None and state.override.ends_at > now else None
    before = _effective(policy, state.tier, override)
    after = _effective(policy, qualifying, override)
    if after != before:
        out += benefits.on_tier_change(state, before, after, now, ctx)
    return out


# -- operator overrides ---------------------------------------------------------------------------------------


def override(command: cmd.OverrideTier, state: MemberState, ctx: Context) -> list[MemberEvent]:
    """Set a temporary upgrade or an override of the member's tier until ``ends_at``."""
    now = ctx.now
    policy = ctx.policy_at(now).policy
    codes = tier_codes(policy)
    if command.tier not in codes:
        raise InvalidCommand("tier", f"unknown tier {command.tier!r}; known: {', '.join(codes)}")
    if command.kind not in OVERRIDE_KINDS:
        raise InvalidCommand("kind", f"must be one of {', '.join(OVERRIDE_KINDS)}")
    if command.ends_at.tzinfo is None:
        raise InvalidCommand("ends_at", "must carry a time zone")
    if command.ends_at <= now:
        raise InvalidCommand("ends_at", f"must be after {now.isoformat()}")
    if not command.reason.strip():
        raise InvalidCommand("reason", "an override needs a reason")
    if not command.operator_id.strip():
        raise InvalidCommand("operator_id", "an override needs the operator who sets it")
    if command.kind == "temporary_upgrade" and tier_rank(policy, command.tier) <= tier_rank(policy, state.tier):
        raise Refusal(
            "NOT_AN_UPGRADE",
            f"a temporary upgrade must be above the earned tier {state.tier}",
            {"tier": command.tier, "earned_tier": state.tier},
        )
    current = state.override if state.override is not None and state.override.ends_at > now else None
    before = _effective(policy, state.tier, current)
    new = TierOverride(command.tier, command.kind, now, command.ends_at, command.reason, command.operator_id)
    after = _effective(policy, state.tier, new)
    out: list[MemberEvent] = [
        TierOverrideSet(
            at=now,
            tier=command.tier,
            kind="temporary_upgrade" if command.kind == "temporary_upgrade" else "override",
            ends_at=command.ends_at,
            reason=command.reason,
            operator_id=command.operator_id,
        )
    ]
    if after != before:
        out += benefits.on_tier_change(state, before, after, now, ctx)
    return out
