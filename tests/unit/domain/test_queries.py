"""The shared query functions: one name for a lot's status wherever it is shown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.domain.queries import lot_status
from ledger.domain.state import Lot, MemberState
from ledger.entrypoints.grpc import convert
from loyalty.v1 import member_pb2
from projections.rows import lot_row

T = datetime(2026, 3, 10, tzinfo=UTC)


def _lot(*, remaining: int, activated: bool, expired: bool = False) -> Lot:
    return Lot("e1:0", "purchase", 100, remaining, T, T, datetime(2027, 4, 1, tzinfo=UTC), 1,
               activated=activated, expired=expired)


@pytest.mark.parametrize(
    ("remaining", "activated", "expired", "status"),
    [
        (100, False, False, "pending"),
        (0, False, False, "spent"),  # a refund took the sale's own lot back while it was still pending
        (40, True, False, "active"),
        (0, True, False, "spent"),
        (0, True, True, "expired"),
        (30, True, True, "expired"),
    ],
)
def test_lot_status(remaining: int, activated: bool, expired: bool, status: str) -> None:
    assert lot_status(_lot(remaining=remaining, activated=activated, expired=expired)) == status


@pytest.mark.parametrize("remaining", [0, 100])
@pytest.mark.parametrize("activated", [False, True])
@pytest.mark.parametrize("expired", [False, True])
def test_the_edge_and_the_read_model_name_a_lot_alike(remaining: int, activated: bool, expired: bool) -> None:
    lot = _lot(remaining=remaining, activated=activated, expired=expired)
    edge = member_pb2.LotStatus.Name(convert.lot_status(lot)).removeprefix("LOT_STATUS_").lower()
    assert edge == lot_status(lot)
    assert lot_row(MemberState(program_id="p", member_id="m"), lot).status == lot_status(lot)
