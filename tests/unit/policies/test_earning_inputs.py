"""What a sale's inputs must be before anything is earned (order lines, the member's birth month), said exactly,
and a campaign for everyone reaching a late offline sale whatever the member did after it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policies import EarningContext, OrderLine, Policy, applicable_multipliers


@pytest.mark.parametrize("month", [1, 12])
def test_january_and_december_are_birth_months(policy: Policy, sh, month: int) -> None:
    at = sh(2026, month, 20, 10)
    earning = EarningContext(occurred_at=at, tier="regular", birth_month=month, last_activity_at=at)
    assert [name for name, _ in applicable_multipliers(policy, earning)] == ["tier:regular", "birthday_month"]


@pytest.mark.parametrize("month", [0, 13])
def test_a_birth_month_outside_1_to_12_is_refused_saying_so(sh, month: int) -> None:
    with pytest.raises(ValueError) as caught:
        EarningContext(occurred_at=sh(2026, 3, 20), tier="regular", birth_month=month)
    assert str(caught.value) == f"birth month must be 1..12, got {month}"


def test_a_malformed_order_line_is_refused_saying_what_is_wrong() -> None:
    with pytest.raises(ValueError) as no_id:
        OrderLine(line_id="", sku="X", category="toys", quantity=1, paid_fen=100)
    assert str(no_id.value) == "an order line needs a line id"
    with pytest.raises(ValueError) as no_quantity:
        OrderLine(line_id="L1", sku="X", category="toys", quantity=0, paid_fen=100)
    assert str(no_quantity.value) == "line L1: quantity must be at least 1, got 0"
    with pytest.raises(ValueError) as negative:
        OrderLine(line_id="L2", sku="X", category="toys", quantity=1, paid_fen=-1)
    assert str(negative.value) == "line L2: paid_fen cannot be negative, got -1"


def test_a_campaign_for_everyone_applies_to_a_late_sale_made_before_the_members_last_activity(
    policy: Policy, sh
) -> None:
    # An offline sale on 10 June recorded after the member was active again on 20 June: 618 still applies.
    sale = sh(2026, 6, 10, 10)
    earning = EarningContext(occurred_at=sale, tier="regular", last_activity_at=sale + timedelta(days=10))
    assert [name for name, _ in applicable_multipliers(policy, earning)] == ["tier:regular", "campaign:618"]
