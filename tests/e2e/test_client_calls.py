"""The Python client's calls for auditors and data-subject requests, against the real server."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from clients.python.loyalty_client import LedgerRefusal, LoyaltyClient
from tests.e2e.conftest import START, Program

pytestmark = pytest.mark.e2e


def test_as_of_balances_liability_export_and_erasure(program: Program) -> None:
    member, card = program.key("m"), program.key("C")
    with LoyaltyClient(program.server.target, program.program_id, api_key=program.server.api_key) as client:
        client.enroll(member, card_number=card)
        client.adjust_points(member, 500, "GOODWILL", "op-1", "welcome")
        program.advance(START + timedelta(days=1))
        later = client.adjust_points(member, 200, "GOODWILL", "op-1", "apology")

        assert client.get_balance(member, min_version=later.member_version).active == 700
        assert client.get_balance(member, as_of=START + timedelta(hours=1)).active == 500
        assert client.get_balance(member, as_known_at=START + timedelta(hours=1)).active == 500

        liability = client.get_liability()
        assert liability.total.points == 700
        assert liability.total.value_fen == 700 * liability.point_value_fen
        assert client.get_liability(START + timedelta(hours=1)).total.points == 500

        exported = client.export_member_data(member)
        assert (exported["member_id"], exported["erasure"], exported["profile_status"]) == (member, None, "none")

        erased = client.erase_member(member, "data subject request", "DSR-1", "op-1")
        assert erased.identities_removed == 1 and not erased.replayed
        after = client.export_member_data(member)
        assert after["erasure"]["request_reference"] == "DSR-1"
        assert (after["profile_status"], after["profile"], after["identities"]) == ("erased", None, [])
        with pytest.raises(LedgerRefusal) as missing:
            client.lookup(card)
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert client.get_balance(member).active == 700  # the books stay whole
