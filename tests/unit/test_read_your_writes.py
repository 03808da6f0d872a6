"""Read-your-writes on every member query: a write returns the member's version, and a query given it as
``min_version`` is answered with that write even while the read models lag behind it.

The read models are made to lag by projecting nothing for a while (the projector's ``apply`` does nothing; the
log still commits). Without ``min_version`` a query then shows the read models' older answer (so it is the read
model that answers); with the version the write returned, the writer answers and the write is there. A stopped
writer shows which path answered: a current read model answers without it, a lagging one cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import grpc
import pytest

from ledger.application.clock import ManualClock
from ledger.application.writer import StoreUnavailable
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain.errors import Refusal
from ledger.entrypoints.grpc.query_service import MemberQueryService
from loyalty.v1 import query_pb2

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "sandbox"
NO_CONTEXT = cast(grpc.ServicerContext, None)  # the handlers below only read their request


@pytest.fixture
def wired() -> Iterator[Wired]:
    """m1 with 5,000 points and a paid plan (entitlements), owner of a household m2 has joined."""
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
    w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    for m in ("m1", "m2", "m3"):
        w.app.enroll(P, m, [("card_number", f"C-{m}")], None, f"enroll-{m}")
    run(w, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op1"), "a1")
    run(w, cmd.CreateHousehold("m1"), "h1")
    run(w, cmd.JoinHousehold("m2", "m1"), "j2")
    yield w
    w.app.close()


def run(w: Wired, command: cmd.MemberCommand, key: str) -> int:
    """Execute ``command``; the version of its member after it (what a write answers as ``member_version``)."""
    result: Any = w.app.execute(cmd.Envelope(P, command, key))
    return int(result.version)


@contextmanager
def lagging(w: Wired) -> Iterator[None]:
    """While inside, commits are not projected: the read models stay where they were."""
    projector: Any = w.backend.projector
    apply = projector.apply
    projector.apply = lambda conn, updates: None
    try:
        yield
    finally:
        projector.apply = apply


def service(w: Wired) -> MemberQueryService:
    return MemberQueryService(w.app)


def exchanges(w: Wired, min_version: int = 0) -> list[str]:
    req = query_pb2.ListExchangesRequest(program_id=P, member_id="m1", min_version=min_version)
    return [x.exchange_id for x in service(w).ListExchanges(req, NO_CONTEXT).exchanges]


def household_members(w: Wired, member: str, min_version: int = 0) -> list[str]:
    """GetHousehold's ``member_ids``; refusals raised as they are (not turned into a status)."""
    req = query_pb2.GetHouseholdRequest(program_id=P, member_id=member, min_version=min_version)
    handler = MemberQueryService.GetHousehold.__wrapped__  # type: ignore[attr-defined]
    return list(handler(service(w), req, NO_CONTEXT).member_ids)


def test_list_exchanges_with_the_write_s_version_sees_the_write(wired: Wired) -> None:
    with lagging(wired):
        version = run(wired, cmd.ExchangePoints("m1", "X1", "coupon_20"), "x1")
        assert exchanges(wired) == []  # the read model answers, from before the write
        assert exchanges(wired, min_version=version) == ["X1"]


def test_list_exchanges_is_served_by_the_read_models(wired: Wired) -> None:
    version = run(wired, cmd.ExchangePoints("m1", "X1", "coupon_20"), "x1")
    wired.app.writer.stop()
    assert exchanges(wired, min_version=version) == ["X1"]
    with pytest.raises(StoreUnavailable):
        wired.app.exchanges_view(P, "m1", min_version=version + 1)


def test_get_household_with_the_write_s_version_sees_the_write(wired: Wired) -> None:
    with lagging(wired):
        version = run(wired, cmd.JoinHousehold("m3", "m1"), "j3")
        with pytest.raises(Refusal, match="NOT_IN_HOUSEHOLD"):  # m3's row predates its joining
            household_members(wired, "m3")
        # m3 from the writer; the owner's row (which does not list m3 yet) is bypassed too
        assert household_members(wired, "m3", min_version=version) == ["m2", "m3"]
        assert household_members(wired, "m2") == ["m2"]  # the owner's lagging row, read for m2


def test_get_household_is_served_by_the_read_models(wired: Wired) -> None:
    version = wired.app.view(P, "m2").state.version
    wired.app.writer.stop()
    assert household_members(wired, "m2", min_version=version) == ["m2"]
    with pytest.raises(StoreUnavailable):
        wired.app.household_views(P, "m2", min_version=version + 1)


def test_list_lots_with_the_write_s_version_sees_the_write(wired: Wired) -> None:
    with lagging(wired):
        version = run(wired, cmd.AdjustPoints("m1", 700, "GOODWILL", "more", "op1"), "a2")
        assert wired.app.lots(P, "m1", (), 0, 50)[1] == 1
        lots, total, seen = wired.app.lots(P, "m1", (), 0, 50, min_version=version)
        assert (total, seen) == (2, version) and sorted(lot.amount for lot in lots) == [700, 5_000]
    wired.app.writer.stop()
    with pytest.raises(StoreUnavailable):
        wired.app.lots(P, "m1", (), 0, 50, min_version=version)


def test_tier_state_and_entitlements_with_the_write_s_version_see_the_write(wired: Wired) -> None:
    with lagging(wired):
        version = run(wired, cmd.PurchaseMembership("m1", "MS1", "black_gold", 199_00), "ms1")
        assert wired.app.standing_view(P, "m1").state.memberships == {}
        view = wired.app.standing_view(P, "m1", min_version=version)
        assert list(view.state.memberships) == ["MS1"] and view.state.entitlements


def test_list_history_with_the_write_s_version_sees_the_write_on_its_first_page(wired: Wired) -> None:
    with lagging(wired):
        version = run(wired, cmd.AdjustPoints("m1", 700, "GOODWILL", "more", "op1"), "a2")
        assert wired.app.history(P, "m1", None, 10).entries[0].version == version - 1
        page = wired.app.history(P, "m1", None, 10, min_version=version)
        assert [e.version for e in page.entries][:2] == [version, version - 1]


def test_every_query_refuses_a_negative_min_version(wired: Wired) -> None:
    from ledger.entrypoints.grpc.errors import InvalidFields

    s = service(wired)
    for method, request in (
        (s.ListLots, query_pb2.ListLotsRequest),
        (s.GetTierState, query_pb2.GetTierStateRequest),
        (s.ListEntitlements, query_pb2.ListEntitlementsRequest),
        (s.ListHistory, query_pb2.ListHistoryRequest),
        (s.ListExchanges, query_pb2.ListExchangesRequest),
        (s.GetHousehold, query_pb2.GetHouseholdRequest),
    ):
        handler = getattr(type(s), method.__name__).__wrapped__  # the check, not the status it becomes
        with pytest.raises(InvalidFields) as caught:
            handler(s, request(program_id=P, member_id="m1", min_version=-1), NO_CONTEXT)
        assert "min_version" in str(caught.value), method.__name__


def test_the_handlers_pass_min_version_on(wired: Wired) -> None:
    s = service(wired)
    before = wired.app.view(P, "m1").state.version
    with lagging(wired):
        version = run(wired, cmd.PurchaseMembership("m1", "MS1", "black_gold", 199_00), "ms1")

        def answers(min_version: int) -> tuple[int, int, int, int]:
            m: Any = {"program_id": P, "member_id": "m1", "min_version": min_version}
            lots = s.ListLots(query_pb2.ListLotsRequest(**m), NO_CONTEXT)
            tier = s.GetTierState(query_pb2.GetTierStateRequest(**m), NO_CONTEXT).tier_state
            ents = s.ListEntitlements(query_pb2.ListEntitlementsRequest(**m), NO_CONTEXT).entitlements
            history = s.ListHistory(query_pb2.ListHistoryRequest(**m), NO_CONTEXT).entries
            return lots.version, len(tier.paid_memberships), len(ents), history[0].version

        assert answers(0) == (before, 0, 0, before)  # the read models, from before the write
        after = answers(version)
        assert after[0] == after[3] == version and after[1] == 1 and after[2] > 0
