"""The household seat rule's answers in full: switched off, full, and a seat free."""

from __future__ import annotations

from typing import Any

from policies import little_sprout, policy_from_data
from policies.rules.household import judge_seat
from policies.rules.verdict import Verdict

POLICY = little_sprout()


def test_a_program_without_family_accounts_refuses_every_seat_saying_so() -> None:
    document: dict[str, Any] = POLICY.model_dump(mode="json")
    document["household"]["enabled"] = False
    off = policy_from_data(document)
    assert judge_seat(off, 0) == Verdict("HOUSEHOLDS_DISABLED", "this program has no family accounts")


def test_a_full_household_names_its_members_and_its_limit() -> None:
    most = POLICY.household.max_members
    assert judge_seat(POLICY, most) == Verdict(
        "HOUSEHOLD_FULL",
        f"the household already has its owner and {most} members (at most {most})",
        {"max_members": most, "members": most},
    )
    assert judge_seat(POLICY, most - 1) == Verdict(None)
