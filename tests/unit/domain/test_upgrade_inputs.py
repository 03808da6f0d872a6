"""What an upgrade counts: the growth and referrals of the event by its business time in the window ending
when it is recorded, the member's last purchase for Diamond, and the override in force for the perks."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))


def sh(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SH)


def run(
    state: MemberState,
    command: cmd.MemberCommand,
    now: datetime,
    at: datetime | None = None,
    history: PolicyHistory = HISTORY,
    invitee: MemberState | None = None,
) -> list[ev.MemberEvent]:
    ctx = Context(now=now, at=at or now, policies=history, invitee=invitee)
    fold(state, tick(state, ctx))
    events = decide(command, state, ctx)
    fold(state, events)
    return events


ENROLLED = sh(2026, 3, 1, 9)


def member(member_id: str = "m1") -> MemberState:
    state = MemberState(program_id="ls", member_id=member_id)
    run(state, cmd.EnrollMember(member_id, ()), ENROLLED)
    return state


def buy(
    state: MemberState,
    order_id: str,
    yuan: int,
    now: datetime,
    at: datetime | None = None,
    history: PolicyHistory = HISTORY,
) -> list[ev.MemberEvent]:
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=yuan * 100)
    return run(state, cmd.RecordPurchase(state.member_id, order_id, (line,), yuan * 100), now, at, history)


def changes(events: list[ev.MemberEvent]) -> list[tuple[str, str]]:
    return [(e.from_tier, e.to_tier) for e in events if isinstance(e, ev.TierChanged)]


def granted(events: list[ev.MemberEvent]) -> list[str]:
    return [e.benefit for e in events if isinstance(e, ev.EntitlementGranted)]


def test_a_purchase_is_not_a_referral_two_referrals_and_a_sale_stay_regular() -> None:
    state = member()
    for n in (1, 2):
        invitee = member(f"friend-{n}")
        buy(invitee, "first", 50, sh(2026, 3, 2, 10 + n))
        run(state, cmd.AwardPoints("m1", "referral", f"friend-{n}"), sh(2026, 3, 3, 10 + n), invitee=invitee)
    assert len(state.referrals) == 2
    assert changes(buy(state, "O1", 50, sh(2026, 3, 4, 10))) == []
    assert state.tier == "regular"


def test_a_behaviour_crossing_10000_within_90_days_of_the_last_purchase_reaches_diamond() -> None:
    state = member()
    assert changes(buy(state, "O1", 9_999, sh(2026, 3, 2, 10))) == [("regular", "gold")]
    events = run(state, cmd.AwardPoints("m1", "check_in", ""), sh(2026, 4, 1, 10))  # 1 growth, no purchase
    assert changes(events) == [("gold", "diamond")]


def test_a_late_sale_at_the_very_start_of_the_window_adds_nothing_to_the_upgrade() -> None:
    document = POLICY.model_dump(mode="json")
    document["tiers"]["window_months"] = 1
    history = PolicyHistory.starting_with(policy_from_data(document), datetime(2020, 1, 1, tzinfo=SH))
    state = member()
    buy(state, "O1", 1_999, sh(2026, 3, 1, 12), history=history)
    # Recorded 29 March 10:00 (within the 30-day offline window): the one-month window is (28 February 10:00,
    # 29 March 10:00], so a sale of 28 February 10:00 falls just outside it and its growth does not count.
    events = buy(state, "O2", 1, sh(2026, 3, 29, 10), at=sh(2026, 2, 28, 10), history=history)
    assert changes(events) == []
    assert state.tier == "regular"


def test_an_upgrade_earned_under_an_override_grants_no_perks_of_the_earned_tier() -> None:
    state = member()
    override = cmd.OverrideTier("m1", "silver", "override", sh(2028, 3, 1), "service recovery", "op-1")
    assert granted(run(state, override, sh(2026, 3, 2, 10))) == ["parenting_consultant"]
    events = buy(state, "O1", 5_000, sh(2026, 3, 3, 10))
    # The earned tier changes, the member is still treated as Silver: no Gold perk.
    assert changes(events) == [("regular", "gold")]
    assert granted(events) == []


def test_an_override_perk_that_ran_out_is_not_granted_again_by_an_upgrade_the_override_masks() -> None:
    state = member()
    override = cmd.OverrideTier("m1", "silver", "override", sh(2028, 3, 1), "service recovery", "op-1")
    run(state, override, sh(2026, 3, 2, 10))
    later = sh(2026, 3, 2, 10) + timedelta(days=400)  # the consultant perk was valid 365 days
    events = buy(state, "O1", 5_000, later)
    assert changes(events) == [("regular", "gold")]
    assert granted(events) == []
