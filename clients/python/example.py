"""Walk one member of the reference program through enrol, buy, redeem at a till, refund and replay.

Run against a live server: ``python -m clients.python.example --target 127.0.0.1:50051``; over TLS add
``--tls-ca ca.pem`` (and ``--tls-cert till.pem --tls-key till.key`` for mutual TLS).
"""

from __future__ import annotations

import argparse
import uuid

import grpc

from clients.python.loyalty_client import LedgerRefusal, LoyaltyClient, tls_credentials
from loyalty.v1 import ledger_pb2


def run(target: str, program_id: str, tls: grpc.ChannelCredentials | None = None) -> int:
    suffix = uuid.uuid4().hex[:8]
    member_id = f"example-{suffix}"
    card = f"CARD-{suffix}"
    with LoyaltyClient(target, program_id, tls=tls) as client:
        enrolled = client.enroll(member_id, card_number=card)
        print(f"enrolled {enrolled.member_id} tier={enrolled.tier} policy_version={enrolled.policy_version}")
        found = client.lookup(card)
        print(f"lookup {card} -> {found.member_id}")

        order_id = f"A-{suffix}"
        lines = [
            ledger_pb2.OrderLine(
                line_id="1", sku="LS-FORMULA-900G", category="infant_formula", quantity=1, paid_fen=10_000
            ),
            ledger_pb2.OrderLine(
                line_id="2", sku="LS-WIPES-80", category="wipes", quantity=2, paid_fen=5_000
            ),
        ]
        bought = client.record_purchase(member_id, order_id, lines, order_total_fen=15_000)
        print(
            f"purchase {order_id}: +{bought.points_earned} points (pending until {bought.active_at.ToJsonString()})"
        )

        checked_in = client.award(member_id, "check_in", reference=f"checkin-{suffix}")
        print(f"check_in: +{checked_in.points} points")
        bal = client.get_balance(member_id)
        print(f"balance active={bal.active} pending={bal.pending} held={bal.held} available={bal.available}")

        till_order = f"T-{suffix}"
        try:
            client.hold_points(
                member_id, f"H-{suffix}-0", 500, till_order, 20_000, store_id="S-1", terminal_id="T-1"
            )
        except LedgerRefusal as refusal:
            print(
                f"hold 500 refused: {refusal.code.name} {refusal.reason} {sorted(refusal.metadata.items())}"
            )

        adjusted = client.adjust_points(
            member_id, 1_000, "GOODWILL", operator_id="op-example", note="example credit"
        )
        print(f"operator credit: +{adjusted.points} available={adjusted.balance_after.available}")

        held = client.hold_points(
            member_id, f"H-{suffix}-1", 500, till_order, 20_000, store_id="S-1", terminal_id="T-1"
        )
        print(
            f"hold {held.hold_id}: {held.held_points} points = {held.cash_value_fen} fen, available {held.available_after}"
        )
        committed = client.commit_hold(member_id, held.hold_id)
        print(
            f"commit {committed.hold_id}: {committed.committed_points} points, available {committed.available_after}"
        )

        released_hold = client.hold_points(member_id, f"H-{suffix}-2", 100, f"U-{suffix}", 20_000)
        released = client.release_hold(member_id, released_hold.hold_id)
        print(
            f"release {released.hold_id}: {released.released_points} points back, available {released.available_after}"
        )

        refunded = client.refund_purchase(member_id, order_id, f"R-{suffix}")
        print(
            f"refund {order_id}: {refunded.refunded_fen} fen, {refunded.points_taken_back} points taken back"
        )

        bal = client.get_balance(member_id)
        print(f"balance active={bal.active} pending={bal.pending} held={bal.held} available={bal.available}")

        events = client.replay_member(member_id)
        print(f"replay {member_id}: {len(events)} events")
        for event in events:
            after = event.balance_after
            print(
                f"replay v{event.version} {event.event_type} delta={event.points_delta:+d} "
                f"active={after.active} pending={after.pending} held={after.held} :: {event.summary}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--program", default="little_sprout")
    parser.add_argument("--tls-ca", help="connect with TLS, trusting this CA (PEM file)")
    parser.add_argument("--tls-cert", help="with --tls-ca: a client certificate for mutual TLS (PEM file)")
    parser.add_argument("--tls-key", help="the private key of --tls-cert (PEM file)")
    args = parser.parse_args(argv)
    tls = tls_credentials(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    return run(args.target, args.program, tls)


if __name__ == "__main__":
    raise SystemExit(main())
