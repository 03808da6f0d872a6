"""What ``decide`` knows besides the command and the member's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ledger.domain.commands import Profile
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.state import MemberState
from ledger.domain.stock import StockState
from policies import NoPolicyInForce, Policy, PolicyHistory, PolicyVersion, tier_rank


@dataclass(frozen=True, slots=True)
class Context:
    """``now`` is the program's clock when the command is recorded; ``at`` is its business time."""

    now: datetime
    at: datetime
    policies: PolicyHistory
    profile: Profile = field(default_factory=Profile)
    invitee: MemberState | None = None
    """For a referral award: the state of the member its reference names (None: no such member)."""
    stock: StockState | None = None
    """For a points-mall exchange or cancellation: the reward's stock stream as folded now (None: not loaded)."""

    def policy_at(self, t: datetime) -> PolicyVersion:
        try:
            return self.policies.in_force_at(t)
        except NoPolicyInForce as exc:
            first = self.policies.versions[0].effective_from if self.policies.versions else None
            raise Refusal(
                "POLICY_NOT_EFFECTIVE_YET",
                "no policy version of this program was in force at that time",
                {"occurred_at": t, **({"first_effective_from": first} if first is not None else {})},
            ) from exc

    @property
    def version(self) -> PolicyVersion:
        """The policy version in force at the command's business time."""
        return self.policy_at(self.at)

    def for_time(self, t: datetime) -> Context:
        """The same context for time-driven work due at ``t``."""
        return Context(now=t, at=t, policies=self.policies, profile=self.profile, invitee=self.invitee)


def effective_tier(state: MemberState, policy: Policy, at: datetime) -> str:
    """The tier the member is treated as at business time ``at``: the earned tier or an override, the higher."""
    earned = state.earned_tier_at(at) if state.tier_history else state.tier
    override = state.override_at(at)
    if override is None:
        return earned
    if override.kind == "override":
        return override.tier
    return override.tier if tier_rank(policy, override.tier) > tier_rank(policy, earned) else earned


def require_member(state: MemberState) -> None:
    if not state.enrolled:
        raise NotFound("member", state.member_id)
    if state.merged_into is not None:
        raise Refusal(
            "MEMBER_MERGED",
            f"member {state.member_id} was merged into {state.merged_into}",
            {"member_id": state.member_id, "merged_into": state.merged_into},
        )


def next_id(state: MemberState, tag: str, n: int = 0) -> str:
    """A deterministic id, unique within the member: the tag, the stream version it is created at, a counter."""
    return f"{tag}-{state.version + 1}" + (f".{n}" if n else "")


MAX_CLOCK_SKEW = timedelta(minutes=5)


def check_business_time(ctx: Context) -> None:
    """A sale may be recorded up to the offline window after its business time; later is refused."""
    if ctx.at > ctx.now + MAX_CLOCK_SKEW:
        raise InvalidCommand("context.occurred_at", "is in the future of the program's clock")
    window = ctx.policy_at(ctx.now).policy.offline_window_days
    earliest = ctx.now - timedelta(days=window)
    if ctx.at < earliest:
        raise Refusal(
            "OUTSIDE_OFFLINE_WINDOW",
            f"business time is more than {window} days before the time it is recorded",
            {"occurred_at": ctx.at, "now": ctx.now, "window_days": window, "earliest_allowed": earliest},
        )
