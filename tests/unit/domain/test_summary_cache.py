"""Summaries of events, whose date and multiplier texts are cached: the cache never mixes zones or values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from ledger.domain import events as ev
from ledger.domain.queries import summary

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)  # 2026-04-01 00:00 in Shanghai


def held(expires_at: datetime) -> ev.PointsHeld:
    return ev.PointsHeld(
        at=AT, hold_id="H1", order_id="O1", points=10, order_total_fen=100, cap_points=10, value_fen=10,
        expires_at=expires_at, allocations=(), policy_version=1,
    )  # fmt: skip


def purchase(multiplier: str) -> ev.PurchaseRecorded:
    lot = ev.NewLot(lot_id="e:1", source="purchase", points=3, active_at=AT, expires_at=AT, order_id="O1")
    return ev.PurchaseRecorded(
        at=AT, order_id="O1", lines=(), order_total_fen=100, points_paid=0, tier="regular",
        multiplier=multiplier, multiplier_rule="member_day", candidates=(), points=3, growth=1, lot=lot,
        policy_version=1,
    )  # fmt: skip


def test_the_same_instant_is_written_in_each_zone_asked_for() -> None:
    event = held(AT)
    for _ in range(2):  # the second round answers from the cache
        assert summary(event, UTC).endswith("reserved until 2026-03-31 16:00")
        assert summary(event, SHANGHAI).endswith("reserved until 2026-04-01")
        assert summary(event, timezone(timedelta(hours=-5))).endswith("reserved until 2026-03-31 11:00")
    assert summary(held(AT + timedelta(seconds=1)), SHANGHAI).endswith("reserved until 2026-04-01 00:00:01")


def test_each_multiplier_text_keeps_its_own_short_form() -> None:
    for _ in range(2):
        assert "(x1.5 member_day)" in summary(purchase("3/2"), UTC)
        assert "(x1/3 member_day)" in summary(purchase("1/3"), UTC)
        assert "(x" not in summary(purchase("1"), UTC)
