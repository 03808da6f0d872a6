"""Two ``ledger serve`` replicas on one PostgreSQL database behave as one service, even when one dies.

Eight client threads send conflicting commands for the same few members through both replicas (purchases,
checkout holds and commits, and retries of earlier requests through the other replica). Partway through,
one replica is killed with SIGKILL; requests it did not answer are retried on the survivor with the same
idempotency key, as a POS would. A replacement replica starts, and both replicas are asked at once to run the
due work (hold time-outs) by advancing the test clock. Then, straight from the database:

* every acknowledged command is recorded once and its events are in the log once;
* every member verifies (hash chain intact, projections equal to a replay of the log);
* no hold committed more than it held and no balance went below zero (the fold asserts lots never do);
* every hold timed out at most once, and none is left open after the clock passed its time-out.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.domain import events as ev
from ledger.domain.evolve import evolve
from ledger.domain.state import MemberState
from ledger.testing.postgres import fresh_schema, require_postgres
from ledger.testing.server import RunningServer, start_server, stop_server
from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    program_pb2,
    program_pb2_grpc,
)

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = "replicas"
START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
MEMBERS = [f"m{i}" for i in range(6)]
THREADS = 8
OPS_PER_THREAD = 40
KILL_AFTER = THREADS * OPS_PER_THREAD // 3
POS = common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1")
CONSOLE = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED}


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


@dataclass
class Replica:
    running: RunningServer
    channel: grpc.Channel
    ledger: ledger_pb2_grpc.LedgerServiceStub = field(init=False)
    programs: program_pb2_grpc.ProgramServiceStub = field(init=False)
    audit: audit_pb2_grpc.AuditServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self.channel)
        self.programs = program_pb2_grpc.ProgramServiceStub(self.channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channel)

    @property
    def alive(self) -> bool:
        return self.running.process.poll() is None


@pytest.fixture
def store_url() -> Iterator[str]:
    with fresh_schema(require_postgres()) as url:
        yield url


def _start(tmp: Path, name: str, store_url: str) -> Replica:
    workdir = tmp / name
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = start_server(workdir, store_url=store_url, env=env, cwd=ROOT, extra_args=["--no-reference-program"])
    return Replica(running, running.channel())


@dataclass
class Acked:
    method: str
    member_id: str
    request: Any
    response: Any


class Load:
    """Client threads sharing what was acknowledged; requests a dead replica did not answer go to the other."""

    def __init__(self, replicas: list[Replica], victim: Replica) -> None:
        self.replicas = replicas
        self.victim = victim
        self.lock = threading.Lock()
        self.acked: dict[str, Acked] = {}
        self.refused: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.errors: list[BaseException] = []

    def call(self, rng: random.Random, method: str, member_id: str, request: Any) -> Any | None:
        """Send until answered; None for a business refusal. Records what was acknowledged."""
        for _attempt in range(50):
            with self.lock:
                self.sent += 1
                if self.sent == KILL_AFTER and self.victim.alive:
                    self.victim.running.process.send_signal(signal.SIGKILL)
                live = [r for r in self.replicas if r.alive]
            replica = rng.choice(live)
            try:
                response = getattr(replica.ledger, method)(request, timeout=30)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in RETRYABLE:
                    continue  # same request, same key: applies once wherever it lands
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    with self.lock:
                        self.refused[method] += 1
                    return None
                raise AssertionError(f"{method} {request.idempotency_key}: {code} {exc.details()}") from exc
            with self.lock:
                first = self.acked.setdefault(request.idempotency_key, Acked(method, member_id, request, response))
            if first.response is not response:
                # `replayed` is the only field a retry may change: it says it is one. The first answer a client
                # got may itself be a replay (its first try reached a replica that committed and was killed
                # before it answered), so it is set aside on both sides.
                was, again = type(response)(), type(response)()
                was.CopyFrom(first.response)
                again.CopyFrom(response)
                was.replayed = again.replayed = False
                assert was == again, f"a retry of {request.idempotency_key}: {first.response} then {response}"
            return response
        raise AssertionError(f"{method} {request.idempotency_key} never got an answer")

    def worker(self, number: int) -> None:
        rng = random.Random(number)
        try:
            for i in range(OPS_PER_THREAD):
                member = rng.choice(MEMBERS)
                tag = f"t{number}-{i}"
                roll = rng.random()
                if roll < 0.35:
                    self.call(rng, "RecordPurchase", member, ledger_pb2.RecordPurchaseRequest(
                        program_id=PROGRAM, idempotency_key=f"buy-{tag}", context=POS, member_id=member,
                        order_id=f"O-{tag}",
                        lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-DIAPER-M", category="diapers", quantity=1,
                                                    paid_fen=rng.randrange(1_000, 50_000))],
                    ))  # fmt: skip
                elif roll < 0.85:
                    hold_id = f"H-{tag}"
                    held = self.call(rng, "HoldPoints", member, ledger_pb2.HoldPointsRequest(
                        program_id=PROGRAM, idempotency_key=f"hold-{tag}", context=POS, member_id=member,
                        hold_id=hold_id, points=rng.randrange(200, 3_000), order_id=f"HO-{tag}",
                        order_total_fen=1_000_000,
                    ))  # fmt: skip
                    if held is not None and rng.random() < 0.7:
                        self.call(rng, "CommitHold", member, ledger_pb2.CommitHoldRequest(
                            program_id=PROGRAM, idempotency_key=f"commit-{tag}", context=POS, member_id=member,
                            hold_id=hold_id, points=rng.randrange(1, held.held_points + 1),
                        ))  # fmt: skip
                else:
                    with self.lock:
                        earlier = rng.choice(list(self.acked.values())) if self.acked else None
                    if earlier is not None:  # a POS retrying an answered request, through any replica
                        self.call(rng, earlier.method, earlier.member_id, earlier.request)
        except BaseException as exc:
            self.errors.append(exc)


def _log(store_url: str) -> tuple[dict[str, list[ev.MemberEvent]], dict[str, int]]:
    with psycopg.connect(store_url) as conn:
        rows = conn.execute(
            "SELECT stream_id, payload FROM events WHERE stream_id LIKE %s ORDER BY stream_id, version",
            (f"member-{PROGRAM}-%",),
        ).fetchall()
        records = conn.execute(
            "SELECT idempotency_key, count(*) FROM commands WHERE program_id = %s GROUP BY idempotency_key",
            (PROGRAM,),
        ).fetchall()
    streams: dict[str, list[ev.MemberEvent]] = collections.defaultdict(list)
    for stream_id, payload in rows:
        streams[stream_id.removeprefix(f"member-{PROGRAM}-")].append(ev.decode(bytes(payload)))
    return streams, {key: count for key, count in records}


def test_two_replicas_one_killed_mid_run(tmp_path: Path, store_url: str) -> None:
    a = _start(tmp_path, "a", store_url)
    b = _start(tmp_path, "b", store_url)
    c: Replica | None = None
    try:
        a.programs.CreateProgram(program_pb2.CreateProgramRequest(
            program_id=PROGRAM, display_name="Replicas", document=(ROOT / "policies" / "little_sprout.yaml").read_text(),
            format=common_pb2.DOCUMENT_FORMAT_YAML, idempotency_key="create",
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=ts(START)),
        ))  # fmt: skip
        for m in MEMBERS:  # enrolled through one replica, credited through the other
            a.ledger.EnrollMember(ledger_pb2.EnrollMemberRequest(program_id=PROGRAM, idempotency_key=f"e-{m}", member_id=m))
            b.ledger.AdjustPoints(ledger_pb2.AdjustPointsRequest(
                program_id=PROGRAM, idempotency_key=f"credit-{m}", context=CONSOLE, member_id=m, points=20_000,
                reason_code="GOODWILL", note="opening balance",
            ))  # fmt: skip

        load = Load([a, b], victim=b)
        threads = [threading.Thread(target=load.worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not any(t.is_alive() for t in threads), "client threads hung"
        assert load.errors == []
        assert not b.alive, "the victim replica was never killed"
        assert load.refused["HoldPoints"] > 0, "the load never ran a member out of points: the test proves nothing"

        # A replacement replica; both are told at once to run what fell due (every open hold times out).
        c = _start(tmp_path, "c", store_url)
        answers: list[Any] = []

        def advance(replica: Replica, n: int) -> None:
            request = program_pb2.AdvanceClockRequest(
                program_id=PROGRAM, to=ts(START + timedelta(days=1, seconds=n)), idempotency_key=f"advance-{n}"
            )
            try:
                answers.append(replica.programs.AdvanceClock(request, timeout=120))
            except grpc.RpcError as exc:  # the other replica moved the clock past this target first
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc
                answers.append(None)

        racers = [threading.Thread(target=advance, args=(r, n)) for n, r in enumerate((a, c))]
        for t in racers:
            t.start()
        for t in racers:
            t.join(timeout=180)
        assert len(answers) == 2 and any(answers)

        streams, records = _log(store_url)

        # Every acknowledged command is recorded once, and its events are in the log once.
        for key in load.acked:
            assert records.get(key) == 1, f"acknowledged {key} is recorded {records.get(key, 0)} times"
        purchases = collections.Counter(e.order_id for es in streams.values() for e in es if isinstance(e, ev.PurchaseRecorded))
        holds = collections.Counter(e.hold_id for es in streams.values() for e in es if isinstance(e, ev.PointsHeld))
        commits = collections.Counter(e.hold_id for es in streams.values() for e in es if isinstance(e, ev.HoldCommitted))
        for key, acked in load.acked.items():
            if acked.method == "RecordPurchase":
                assert purchases[acked.request.order_id] == 1, key
            elif acked.method == "HoldPoints":
                assert holds[acked.request.hold_id] == 1, key
            elif acked.method == "CommitHold":
                assert commits[acked.request.hold_id] == 1, key
        assert all(n == 1 for n in purchases.values()) and all(n == 1 for n in holds.values())

        # No overspend: the fold asserts every invariant (no lot below zero); holds commit at most what they held.
        timed_out: collections.Counter[str] = collections.Counter()
        for member_id, events in streams.items():
            state = MemberState(program_id=PROGRAM, member_id=member_id)
            held: dict[str, int] = {}
            for event in events:
                evolve(state, event)
                if isinstance(event, ev.PointsHeld):
                    held[event.hold_id] = event.points
                elif isinstance(event, ev.HoldCommitted):
                    assert event.points <= held[event.hold_id]
                elif isinstance(event, ev.HoldReleased) and event.reason == "expired":
                    timed_out[event.hold_id] += 1
                assert state.available >= 0 and state.active >= 0
            assert state.holds == {}, f"{member_id} still has open holds after their time-out"

        # Scheduled work ran once: each hold timed out at most once, though two replicas ran the due work.
        assert timed_out and max(timed_out.values()) == 1
        assert sum(answer.holds_released for answer in answers if answer) == len(timed_out)

        # Every member verifies against its log: chain intact, projections equal to a replay.
        for member_id in MEMBERS:
            report = a.audit.VerifyMember(audit_pb2.VerifyMemberRequest(program_id=PROGRAM, member_id=member_id))
            assert report.ok, report
    finally:
        for replica in (a, b, c):
            if replica is not None:
                replica.channel.close()
                stop_server(replica.running.process, timeout=20)
