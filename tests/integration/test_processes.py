"""``ledger serve --processes 2`` on one SQLite file behaves as one service.

Both processes listen on one port (SO_REUSEPORT): the kernel spreads connections, not calls, so the clients
open many separate channels (each with its own connection: a local subchannel pool) and pick one at random
for every call. Eight client threads send conflicting commands for the same few members (purchases, checkout
holds and commits, and retries of earlier requests through another channel, so often another process). Then:

* every retry was answered with the first answer, and every acknowledged command is recorded once;
* no hold committed more than it held and no balance went below zero (the fold asserts lots never do);
* every member verifies (hash chain intact, projections equal to a replay of the log), asked of every channel;
* both processes served calls (each logs its pid and count of ``loyalty.v1`` calls when it stops), and
  SIGTERM to the first process stopped the other too.
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.adapters.sqlite.store import SqliteEventStore
from ledger.domain import events as ev
from ledger.domain.evolve import evolve
from ledger.domain.state import MemberState
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
PROGRAM = "processes"
START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
MEMBERS = [f"m{i}" for i in range(5)]
CHANNELS = 16
THREADS = 8
OPS_PER_THREAD = 40
POS = common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1")
CONSOLE = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED}

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


@dataclass
class Acked:
    method: str
    member_id: str
    request: Any
    response: Any


class Clients:
    """Separate connections to the one address, and client threads sharing what was acknowledged."""

    def __init__(self, running: RunningServer) -> None:
        # A local subchannel pool: channels to one target would otherwise share one connection (one process).
        self.channels = [running.channel(options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(CHANNELS)]
        self.ledgers = [ledger_pb2_grpc.LedgerServiceStub(c) for c in self.channels]
        self.lock = threading.Lock()
        self.acked: dict[str, Acked] = {}
        self.refused: collections.Counter[str] = collections.Counter()
        self.retries = 0
        self.errors: list[BaseException] = []

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def call(self, rng: random.Random, method: str, member_id: str, request: Any) -> Any | None:
        """Send until answered, each attempt on a random channel; None for a business refusal."""
        for _attempt in range(50):
            stub = rng.choice(self.ledgers)
            try:
                response = getattr(stub, method)(request, timeout=30)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in RETRYABLE:
                    time.sleep(0.01)
                    continue  # same request, same key: applies once wherever it lands
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    with self.lock:
                        self.refused[method] += 1
                    return None
                raise AssertionError(f"{method} {request.idempotency_key}: {code} {exc.details()}") from exc
            with self.lock:
                first = self.acked.setdefault(request.idempotency_key, Acked(method, member_id, request, response))
            if first.response is not response:
                with self.lock:
                    self.retries += 1
                again = type(response)()
                again.CopyFrom(response)
                again.replayed = False  # the only field a retry may change: it says it is one
                assert first.response == again, f"a retry of {request.idempotency_key}: {first.response} then {response}"
            return response
        raise AssertionError(f"{method} {request.idempotency_key} never got an answer")

    def worker(self, number: int) -> None:
        rng = random.Random(number)
        try:
            for i in range(OPS_PER_THREAD):
                member = rng.choice(MEMBERS)
                tag = f"t{number}-{i}"
                roll = rng.random()
                if roll < 0.3:
                    self.call(rng, "RecordPurchase", member, ledger_pb2.RecordPurchaseRequest(
                        program_id=PROGRAM, idempotency_key=f"buy-{tag}", context=POS, member_id=member,
                        order_id=f"O-{tag}",
                        lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-DIAPER-M", category="diapers", quantity=1,
                                                    paid_fen=rng.randrange(1_000, 50_000))],
                    ))  # fmt: skip
                elif roll < 0.8:
                    hold_id = f"H-{tag}"
                    held = self.call(rng, "HoldPoints", member, ledger_pb2.HoldPointsRequest(
                        program_id=PROGRAM, idempotency_key=f"hold-{tag}", context=POS, member_id=member,
                        hold_id=hold_id, points=rng.randrange(500, 4_000), order_id=f"HO-{tag}",
                        order_total_fen=1_000_000,
                    ))  # fmt: skip
                    if held is not None and rng.random() < 0.8:
                        self.call(rng, "CommitHold", member, ledger_pb2.CommitHoldRequest(
                            program_id=PROGRAM, idempotency_key=f"commit-{tag}", context=POS, member_id=member,
                            hold_id=hold_id, points=rng.randrange(1, held.held_points + 1),
                        ))  # fmt: skip
                else:
                    with self.lock:
                        earlier = rng.choice(list(self.acked.values())) if self.acked else None
                    if earlier is not None:  # a POS retrying an answered request, through another connection
                        self.call(rng, earlier.method, earlier.member_id, earlier.request)
        except BaseException as exc:
            self.errors.append(exc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = start_server(
        tmp_path, env=env, cwd=ROOT, extra_args=["--processes", "2", "--no-reference-program"]
    )
    clients = Clients(running)
    stopped = False
    try:
        programs = program_pb2_grpc.ProgramServiceStub(clients.channels[0])
        programs.CreateProgram(program_pb2.CreateProgramRequest(
            program_id=PROGRAM, display_name="Processes", document=(ROOT / "policies" / "little_sprout.yaml").read_text(),
            format=common_pb2.DOCUMENT_FORMAT_YAML, idempotency_key="create",
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=ts(START)),
        ))  # fmt: skip
        setup = random.Random(99)
        for m in MEMBERS:  # enrolled through one connection, credited through another
            clients.call(setup, "EnrollMember", m, ledger_pb2.EnrollMemberRequest(
                program_id=PROGRAM, idempotency_key=f"e-{m}", member_id=m,
            ))  # fmt: skip
            clients.call(setup, "AdjustPoints", m, ledger_pb2.AdjustPointsRequest(
                program_id=PROGRAM, idempotency_key=f"credit-{m}", context=CONSOLE, member_id=m, points=15_000,
                reason_code="GOODWILL", note="opening balance",
            ))  # fmt: skip

        threads = [threading.Thread(target=clients.worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "client threads hung"
        assert clients.errors == []
        assert clients.refused["HoldPoints"] > 0, "the load never ran a member out of points: the test proves nothing"
        assert clients.retries > 0

        # Every member verifies, whichever process is asked.
        for channel in clients.channels:
            audit = audit_pb2_grpc.AuditServiceStub(channel)
            for member_id in MEMBERS:
                report = audit.VerifyMember(audit_pb2.VerifyMemberRequest(program_id=PROGRAM, member_id=member_id))
                assert report.ok, report

        clients.close()
        stop_server(running.process, timeout=60)
        stopped = True
        assert running.process.returncode == 0
        log = running.log_path.read_text()
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        served = {r["pid"] for r in records if r["event"] == "serving"}
        calls = {r["pid"]: r["calls"] for r in records if r["event"] == "stopped"}
        assert len(served) == 2 and set(calls) == served, log
        assert all(n > 0 for n in calls.values()), f"a process served no calls: {calls}"
        assert "worker_exited" not in log
        assert not any(_pid_alive(pid) for pid in served), "SIGTERM to the first process left a worker running"

        # Straight from the file: acknowledged commands recorded once, events once, no overspend.
        with SqliteEventStore(str(tmp_path / "ledger.db")) as store:
            found = store.find_commands([(PROGRAM, key) for key in clients.acked])
            assert set(found) == {(PROGRAM, key) for key in clients.acked}
            streams = {
                sid.removeprefix(f"member-{PROGRAM}-"): [ev.decode(s.payload) for s in store.read_stream(sid)]
                for sid in store.list_streams(f"member-{PROGRAM}-")
            }
        purchases = collections.Counter(e.order_id for es in streams.values() for e in es if isinstance(e, ev.PurchaseRecorded))
        holds = collections.Counter(e.hold_id for es in streams.values() for e in es if isinstance(e, ev.PointsHeld))
        commits = collections.Counter(e.hold_id for es in streams.values() for e in es if isinstance(e, ev.HoldCommitted))
        for key, acked in clients.acked.items():
            if acked.method == "RecordPurchase":
                assert purchases[acked.request.order_id] == 1, key
            elif acked.method == "HoldPoints":
                assert holds[acked.request.hold_id] == 1, key
            elif acked.method == "CommitHold":
                assert commits[acked.request.hold_id] == 1, key
        for member_id, events in streams.items():
            state = MemberState(program_id=PROGRAM, member_id=member_id)
            held: dict[str, int] = {}
            for event in events:
                evolve(state, event)
                if isinstance(event, ev.PointsHeld):
                    held[event.hold_id] = event.points
                elif isinstance(event, ev.HoldCommitted):
                    assert event.points <= held[event.hold_id]
                assert state.available >= 0 and state.active >= 0, member_id
    finally:
        if not stopped:
            clients.close()
            stop_server(running.process, timeout=60)


def test_the_processes_it_starts_get_the_store_url_in_their_environment_not_their_command_line(
    tmp_path: Path,
) -> None:
    """Any user of the host can read a process's command line (``ps``, ``/proc/<pid>/cmdline``); only its own user
    its environment. A store URL with a password must not show in the workers' command lines."""
    from urllib.parse import urlsplit, urlunsplit

    from ledger.testing.postgres import fresh_schema, require_postgres

    base = urlsplit(require_postgres())
    password = "url-password-7731"
    netloc = f"{base.username or 'postgres'}:{password}@{base.hostname}:{base.port or 5432}"
    with fresh_schema(urlunsplit(base._replace(netloc=netloc))) as store_url:
        env = {k: v for k, v in os.environ.items() if k not in ("LEDGER_STORE", "LEDGER_FEED_NATS")}
        running = start_server(
            tmp_path, store_url=store_url, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
            extra_args=["--processes", "2", "--no-reference-program"],
        )  # fmt: skip
        try:
            records = [json.loads(line) for line in running.log_path.read_text().splitlines() if line.startswith("{")]
            workers = [pid for r in records if r["event"] == "workers_serving" for pid in r["workers"]]
            assert len(workers) == 1
            for pid in workers:
                command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
                assert "ledger.entrypoints.cli" in command_line and "--worker-of" in command_line
                assert password not in command_line
                environment = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
                assert f"LEDGER_STORE={store_url}" in environment
        finally:
            stop_server(running.process, timeout=60)
        assert running.process.returncode == 0
