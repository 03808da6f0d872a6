"""``ledger serve --feed-nats`` publishes what the API writes to NATS JetStream, in order, once per event.

A real server on SQLite with the feed on, a real NATS server: a member enrolled and a purchase recorded over
gRPC arrive on ``loyalty.v1.<program>.member.*`` in the order of the log, each with its event id as the
JetStream message id. The program id is the test's own, so other publishers on the shared stream do not
disturb it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.testing.server import start_server, stop_server
from loyalty.v1 import common_pb2, feed_pb2, ledger_pb2, ledger_pb2_grpc, program_pb2, program_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
NATS_URL = "nats://127.0.0.1:4222"
STREAM = "LOYALTY_FEED"


def _require_nats() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=2):
            return
    except OSError as error:
        if os.environ.get("CI"):
            pytest.fail(f"NATS is not reachable at {NATS_URL} (CI is set, so this fails): {error}")
        pytest.skip(f"NATS is not reachable at {NATS_URL}: {error}")


async def _collect(subject: str, wanted: int) -> list[tuple[str, str, feed_pb2.IntegrationEvent]]:
    import nats
    import nats.js.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        sub = None
        out: list[tuple[str, str, feed_pb2.IntegrationEvent]] = []
        for _ in range(60):  # the relay publishes within a second of the commit; give up after a minute
            if len(out) >= wanted:
                break
            if sub is None:  # the relay creates the stream when it first connects
                try:
                    sub = await js.pull_subscribe(
                        subject, stream=STREAM,
                        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
                    )  # fmt: skip
                except nats.js.errors.NotFoundError:
                    await asyncio.sleep(1)
                    continue
            try:
                batch = await sub.fetch(wanted - len(out), timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in batch:
                await msg.ack()
                headers = msg.headers or {}
                out.append((msg.subject, headers["Nats-Msg-Id"], feed_pb2.IntegrationEvent.FromString(msg.data)))
        if sub is not None:
            await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def test_served_writes_reach_the_feed_in_order(tmp_path: Path) -> None:
    _require_nats()
    program_id = f"feed_{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = start_server(tmp_path, env=env, cwd=ROOT, extra_args=["--no-reference-program", "--feed-nats", NATS_URL])
    try:

        with running.channel() as channel:
            start = Timestamp()
            start.FromDatetime(datetime(2026, 3, 10, 2, 0, tzinfo=UTC))
            program_pb2_grpc.ProgramServiceStub(channel).CreateProgram(program_pb2.CreateProgramRequest(
                program_id=program_id, display_name="Feed", document=(ROOT / "policies" / "little_sprout.yaml").read_text(),
                format=common_pb2.DOCUMENT_FORMAT_YAML, idempotency_key="create",
                clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=start),
            ))  # fmt: skip
            ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
            ledger.EnrollMember(ledger_pb2.EnrollMemberRequest(program_id=program_id, idempotency_key="e", member_id="m1"))
            ledger.RecordPurchase(ledger_pb2.RecordPurchaseRequest(
                program_id=program_id, idempotency_key="b", member_id="m1", order_id="O-1",
                context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1"),
                lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-DIAPER-M", category="diapers", quantity=1, paid_fen=10_000)],
            ))  # fmt: skip
        received = asyncio.run(_collect(f"loyalty.v1.{program_id}.member.>", wanted=2))
    finally:
        stop_server(running.process)

    assert [(s, e.event_type) for s, _, e in received] == [
        (f"loyalty.v1.{program_id}.member.MemberEnrolled", "MemberEnrolled"),
        (f"loyalty.v1.{program_id}.member.PurchaseRecorded", "PurchaseRecorded"),
    ]
    assert all(msg_id == e.event_id for _, msg_id, e in received)
    assert [e.member_id for _, _, e in received] == ["m1", "m1"]
    assert received[0][2].position < received[1][2].position
