"""Edges of two pure rules: the refund arithmetic refuses impossible amounts saying which, and a tier is reviewed on
its anniversary by the program's local calendar."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies import little_sprout
from policies.rules.refunds import redeemed_return, refund_takeback
from policies.rules.tiers import review_due


def test_a_negative_amount_is_refused_whichever_it_is() -> None:
    for args in ((-1, 0, 100, 0), (10, 0, -1, 0), (10, 0, 100, -1)):
        with pytest.raises(ValueError, match=r"^amounts cannot be negative$"):
            refund_takeback(*args)
    with pytest.raises(ValueError, match=r"^amounts cannot be negative$"):
        redeemed_return(10, 0, 100, -1)


def test_a_refund_beyond_what_was_paid_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"^refunded so far \(101\) must be within 0\.\.100$"):
        refund_takeback(10, 101, 100, 0)


def test_a_tier_reached_on_a_local_29_february_is_reviewed_on_the_local_28_february() -> None:
    # 2028-02-28 17:00 UTC is 29 February 01:00 in Shanghai; a year on, 28 February 01:00 there.
    reached = datetime(2028, 2, 28, 17, 0, tzinfo=UTC)
    assert review_due(little_sprout(), reached) == datetime(2029, 2, 27, 17, 0, tzinfo=UTC)
