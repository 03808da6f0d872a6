"""Benchmark the ledger on SQLite and on PostgreSQL (several replicas) against a trivial gRPC echo server.

Run as ``python -m bench.run [--quick] [--stores sqlite,postgresql] [--replicas N] [--members N] [--seconds S]
[--rebuild-events M]``. One run measures every store in ``--stores`` side by side on the same machine:

* SQLite: one real ``ledger serve`` process on a temporary SQLite file (durable: the server's default
  ``synchronous=FULL``).
* PostgreSQL: ``--replicas`` ``ledger serve`` processes sharing one fresh schema of ``--postgres-url``; setup
  and every client thread pick their replica round-robin, so the load is spread over all of them.

For each store it enrols and credits the members through the server(s), drives the command mix from client
processes (several threads each, sync stubs) for a fixed duration (repeated, median quoted), then at a paced
500 commands/s for latency, replays one member's stream and reads every server's RSS. A generic-handler echo
server with the same thread-pool size gives the baseline once. Last comes the projection rebuild phase (see
:func:`generate_template` and :func:`load_and_rebuild`): real domain events are written straight into a fresh
store of each kind and ``rebuild_projections`` is timed on it. Prints the figures and writes BENCHMARKS.md at
the repository root (``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg

from clients.python.loyalty_client import keyed_channel
from ledger.adapters.postgres.projector import PgProjector
from ledger.adapters.postgres.store import PostgresEventStore
from ledger.adapters.sqlite.projector import SqliteProjector
from ledger.adapters.sqlite.store import SqliteEventStore
from ledger.bootstrap import Settings, build
from ledger.domain import commands as cmd
from ledger.domain.streams import member_streams_of
from ledger.entrypoints.grpc.convert import actor_of
from ledger.entrypoints.rebuild import rebuild_projections
from ledger.eventlog.port import ANY, AppendBatch, EventStore, NewEvent, StoredEvent, StreamAppend
from ledger.testing.postgres import fresh_schema, postgres_url
from ledger.testing.server import start_server, stop_server
from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)
from policies import OrderLine

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "little_sprout"
WORKERS = 64  # the server's default gRPC thread pool; the echo server uses the same
KEY_LIMIT = "100000:200000"
"""``--rate-limit`` of the ledger servers: every client thread calls with the one admin key, where a chain's POS
fleet would hold a key per store, so the default per-key limit (1,000/s) would cap the run instead of the server.
The limiter still runs on every call."""
ECHO_METHOD = "/bench.Echo/Echo"
POS = common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1")
OPERATOR = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="bench")
SETUP_CREDIT = 1_000_000
STORES = ("sqlite", "postgresql")
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
MEMBER_PREFIX = member_streams_of(PROGRAM)
EVENTS_PER_MEMBER = 10  # rebuild phase: members = events / 10 (1M events -> 100,000 members)
COPY_PAGE = 20_000  # rebuild phase: events read from the template and appended per transaction


def key() -> str:
    return str(uuid.uuid4())


def member_id(i: int) -> str:
    return f"bm-{i:07d}"


# -- servers -----------------------------------------------------------------------------------------------


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LEDGER_SQLITE_SYNCHRONOUS", "LEDGER_STORE")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def postgres_conditions(url: str) -> str:
    """The PostgreSQL server's version and durability settings, for the report."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        values = [
            str(row[0]) if (row := conn.execute(f"SHOW {name}").fetchone()) else "?"
            for name in ("server_version", "fsync", "synchronous_commit")
        ]
    return f"PostgreSQL {values[0]} (fsync={values[1]}, synchronous_commit={values[2]})"


def start_ledgers(
    stack: ExitStack, tmp: Path, kind: str, replicas: int, pg_base: str
) -> tuple[list[subprocess.Popen[bytes]], list[str], str]:
    """Start the store's server(s); ``stack`` stops them (and drops the PostgreSQL schema) on exit."""
    if kind == "sqlite":
        url: str | None = None
        count = 1
        conditions = "SQLite file in a temp directory, WAL, server default durability (`synchronous=FULL`)"
    else:
        url = stack.enter_context(fresh_schema(pg_base))
        count = replicas
        conditions = (
            f"{postgres_conditions(pg_base)} on this machine, one fresh schema shared by {count} `ledger serve` "
            "replicas (default pool of 8 connections each)"
        )
    procs: list[subprocess.Popen[bytes]] = []
    targets: list[str] = []
    for r in range(count):
        workdir = tmp / f"{kind}-{r}"
        workdir.mkdir()
        running = start_server(
            workdir, store_url=url, env=_server_env(), cwd=ROOT, extra_args=("--workers", str(WORKERS), "--rate-limit", KEY_LIMIT)
        )
        stack.callback(stop_server, running.process)
        procs.append(running.process)
        targets.append(running.target)
        if r == 0 and running.api_key:
            # Every replica shares the store and so its keys; client processes inherit the environment. Each
            # store has its own first admin key, so the key of the store measured before is replaced.
            os.environ["LEDGER_API_KEY"] = running.api_key
    return procs, targets, conditions


def _identity(data: bytes) -> bytes:
    return data


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def echo_server_main(port_queue: Any, stop_event: Any) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS))
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_queue.put(port)
    stop_event.wait()
    server.stop(1).wait()


# -- client workers (run in separate processes) -----------------------------------------------------------


@dataclass
class WorkerResult:
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)


def _merge(results: list[WorkerResult]) -> WorkerResult:
    out = WorkerResult()
    for r in results:
        out.ok += r.ok
        out.errors += r.errors
        out.latencies_ms.extend(r.latencies_ms)
        for k, v in r.error_kinds.items():
            out.error_kinds[k] = out.error_kinds.get(k, 0) + v
    return out


class _LedgerDriver:
    """One thread's command loop over the ledger; every RPC counts as one command."""

    def __init__(
        self, channel: grpc.Channel, members: int, seed: int, result: WorkerResult, lock: threading.Lock
    ):
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        self.query = query_pb2_grpc.MemberQueryServiceStub(channel)
        self.members = members
        self.rng = random.Random(seed)
        self.result = result
        self.lock = lock
        self.orders: list[tuple[str, str]] = []
        self.tag = uuid.uuid4().hex[:10]
        self.seq = itertools.count()

    def _timed(self, fn: Any, req: Any) -> bool:
        start = time.perf_counter()
        try:
            fn(req, timeout=30)
            ok = True
        except grpc.RpcError as err:
            ok = False
            name = str(getattr(err, "code", lambda: "ERR")())
            with self.lock:
                self.result.errors += 1
                self.result.error_kinds[name] = self.result.error_kinds.get(name, 0) + 1
        elapsed = (time.perf_counter() - start) * 1000
        if ok:
            with self.lock:
                self.result.ok += 1
                self.result.latencies_ms.append(elapsed)
        return ok

    def step(self) -> int:
        """Run one mix step; return how many commands it issued."""
        r = self.rng.random()
        m = member_id(self.rng.randrange(self.members))
        n = next(self.seq)
        if r < 0.05 and self.orders:
            om, oid = self.orders.pop(self.rng.randrange(len(self.orders)))
            self._timed(self.ledger.RefundPurchase, ledger_pb2.RefundPurchaseRequest(
                program_id=PROGRAM, idempotency_key=key(), context=POS, member_id=om, order_id=oid,
                refund_id=f"R-{oid}", whole_order=True))  # fmt: skip
            return 1
        if 0.05 <= r < 0.15:
            self._timed(self.query.GetBalance, query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id=m))
            return 1
        if 0.15 <= r < 0.30:
            hold_id = f"H-{self.tag}-{n}"
            ok = self._timed(self.ledger.HoldPoints, ledger_pb2.HoldPointsRequest(
                program_id=PROGRAM, idempotency_key=key(), context=POS, member_id=m, hold_id=hold_id,
                points=100, order_id=f"T-{self.tag}-{n}", order_total_fen=100_000))  # fmt: skip
            if ok:
                self._timed(self.ledger.CommitHold, ledger_pb2.CommitHoldRequest(
                    program_id=PROGRAM, idempotency_key=key(), context=POS, member_id=m, hold_id=hold_id))  # fmt: skip
                return 2
            return 1
        order_id = f"A-{self.tag}-{n}"
        paid = self.rng.randrange(1_000, 50_000)
        lines = [
            ledger_pb2.OrderLine(
                line_id="1", sku="LS-FORMULA-900G", category="infant_formula", quantity=1, paid_fen=paid
            )
        ]
        if self._timed(self.ledger.RecordPurchase, ledger_pb2.RecordPurchaseRequest(
                program_id=PROGRAM, idempotency_key=key(), context=POS, member_id=m, order_id=order_id,
                lines=lines, order_total_fen=paid)):  # fmt: skip
            self.orders.append((m, order_id))
            if len(self.orders) > 1000:
                self.orders.pop(0)
        return 1


def drive_worker(
    kind: str, targets: list[str], members: int, threads: int, seconds: float, rate: float, seed: int
) -> WorkerResult:
    """Drive ``kind`` ('ledger' or 'echo') from ``threads`` threads; ``rate`` > 0 paces each thread (commands/s).

    Thread ``i`` talks to ``targets[i % len(targets)]`` (replicas round-robin), over one channel per target.
    """
    result = WorkerResult()
    lock = threading.Lock()
    channels = [keyed_channel(t, os.environ.get("LEDGER_API_KEY")) for t in targets]
    echoes = [channel.unary_unary(ECHO_METHOD, _identity, _identity) for channel in channels]
    payload = b"x" * 128
    deadline = time.monotonic() + seconds

    def loop(i: int) -> None:
        channel = channels[i % len(channels)]
        echo = echoes[i % len(channels)]
        driver = _LedgerDriver(channel, members, seed * 1000 + i, result, lock)
        interval = 1.0 / rate if rate > 0 else 0.0
        next_at = time.monotonic() + random.random() * interval
        while True:
            if interval:
                now = time.monotonic()
                if next_at > now:
                    time.sleep(next_at - now)
            if time.monotonic() >= deadline:
                return
            if kind == "echo":
                start = time.perf_counter()
                try:
                    echo(payload, timeout=30)
                    with lock:
                        result.ok += 1
                        result.latencies_ms.append((time.perf_counter() - start) * 1000)
                except grpc.RpcError:
                    with lock:
                        result.errors += 1
                issued = 1
            else:
                issued = driver.step()
            next_at += issued * interval

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for channel in channels:
        channel.close()
    return result


def setup_worker(targets: list[str], start: int, stop_: int, threads: int) -> int:
    """Enrol members [start, stop_) and credit each with spendable points (operator adjustment).

    Thread ``t`` goes through ``targets[t % len(targets)]``, so setup is spread over every replica.
    """
    channels = [keyed_channel(t, os.environ.get("LEDGER_API_KEY")) for t in targets]
    stubs = [ledger_pb2_grpc.LedgerServiceStub(channel) for channel in channels]
    ids = iter(range(start, stop_))
    lock = threading.Lock()
    done = 0

    def loop(t: int) -> None:
        nonlocal done
        ledger = stubs[t % len(stubs)]
        while True:
            with lock:
                i = next(ids, None)
            if i is None:
                return
            m = member_id(i)
            try:
                ledger.EnrollMember(
                    ledger_pb2.EnrollMemberRequest(
                        program_id=PROGRAM, idempotency_key=f"enroll-{m}", member_id=m
                    ),
                    timeout=60,
                )
            except grpc.RpcError as err:
                if getattr(err, "code", lambda: None)() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
            ledger.AdjustPoints(ledger_pb2.AdjustPointsRequest(
                program_id=PROGRAM, idempotency_key=f"credit-{m}", context=OPERATOR, member_id=m,
                points=SETUP_CREDIT, reason_code="GOODWILL", note="bench setup"), timeout=60)  # fmt: skip
            with lock:
                done += 1

    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for channel in channels:
        channel.close()
    return done


# -- orchestration ----------------------------------------------------------------------------------------


def run_phase(
    ctx: Any,
    kind: str,
    targets: list[str],
    members: int,
    procs: int,
    threads: int,
    seconds: float,
    total_rate: float = 0.0,
) -> tuple[float, WorkerResult]:
    per_thread = total_rate / (procs * threads) if total_rate else 0.0
    with ctx.Pool(procs) as pool:
        start = time.monotonic()
        parts = pool.starmap(
            drive_worker,
            [
                (kind, targets, members, threads, seconds, per_thread, random.randrange(1 << 30))
                for _ in range(procs)
            ],
        )
        elapsed = time.monotonic() - start
    merged = _merge(parts)
    return merged.ok / min(elapsed, seconds) if seconds else 0.0, merged


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process (all its threads) has used so far, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def replay_bench(target: str, events: int, threads: int, repeats: int) -> tuple[float, int]:
    m = f"bm-replay-{uuid.uuid4().hex[:6]}"
    with keyed_channel(target, os.environ.get("LEDGER_API_KEY")) as channel:
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        ledger.EnrollMember(
            ledger_pb2.EnrollMemberRequest(program_id=PROGRAM, idempotency_key=key(), member_id=m)
        )
        remaining = iter(range(events - 1))
        lock = threading.Lock()

        def loop() -> None:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                ledger.AdjustPoints(ledger_pb2.AdjustPointsRequest(
                    program_id=PROGRAM, idempotency_key=key(), context=OPERATOR, member_id=m, points=1,
                    reason_code="GOODWILL", note="replay bench"), timeout=60)  # fmt: skip

        pool = [threading.Thread(target=loop) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        times = []
        count = 0
        for _ in range(repeats):
            start = time.perf_counter()
            count = sum(  # the stream is pages of events (default page size)
                len(page.events)
                for page in audit.ReplayMember(
                    audit_pb2.ReplayMemberRequest(program_id=PROGRAM, member_id=m), timeout=120
                )
            )
            times.append(time.perf_counter() - start)
    return statistics.median(times), count


@dataclass
class Plan:
    """The run's conditions."""

    quick: bool
    stores: list[str]
    replicas: int
    members: int
    seconds: float
    paced_seconds: float
    procs: int
    threads: int
    setup_threads: int
    repeats: int
    replay_events: int
    rebuild_events: int
    rebuild_copies: int
    catch_up_events: int
    pg_base: str
    command: str

    @property
    def full_scale(self) -> bool:
        """Whether the run has the issue's conditions (100,000 members, 10,000-event replay, 1M-event rebuild)."""
        return self.members >= 100_000 and self.replay_events >= 10_000 and self.rebuild_events >= 1_000_000


@dataclass
class StoreFigures:
    kind: str
    servers: int
    conditions: str
    setup_s: float
    enrolled: int
    runs: list[float]
    errors: dict[str, int]
    paced_rate: float
    paced_errors: dict[str, int]
    p50: float
    p99: float
    replay_s: float
    replay_count: int
    rss: list[float]
    cpu_us: list[float] = field(default_factory=list)
    """Per throughput run: the servers' own CPU time (all replicas) divided by the commands answered OK."""

    @property
    def rate(self) -> float:
        return statistics.median(self.runs)

    @property
    def cpu_per_command_us(self) -> float:
        return statistics.median(self.cpu_us) if self.cpu_us else float("nan")


def bench_store(ctx: Any, tmp: Path, kind: str, plan: Plan) -> StoreFigures:
    """Start the store's server(s), set the members up and run every ledger phase against them."""
    label = LABELS[kind]
    with ExitStack() as stack:
        procs, targets, conditions = start_ledgers(stack, tmp, kind, plan.replicas, plan.pg_base)
        where = ", ".join(f"pid {p.pid} at {t}" for p, t in zip(procs, targets, strict=True))
        print(
            f"[{label}] {len(procs)} ledger server(s): {where}; setting up {plan.members} members ...",
            flush=True,
        )
        t0 = time.monotonic()
        chunk = -(-plan.members // plan.procs)
        with ctx.Pool(plan.procs) as pool:
            enrolled = sum(
                pool.starmap(
                    setup_worker,
                    [
                        (targets, i, min(plan.members, i + chunk), plan.setup_threads)
                        for i in range(0, plan.members, chunk)
                    ],
                )
            )
        setup_s = time.monotonic() - t0
        print(
            f"[{label}] setup: {enrolled} members enrolled and credited in {setup_s:.1f} s "
            f"({2 * enrolled / setup_s:.0f} cmd/s)",
            flush=True,
        )

        runs: list[float] = []
        cpu_us: list[float] = []
        errors: dict[str, int] = {}
        for i in range(plan.repeats):
            cpu_before = sum(cpu_seconds(p.pid) for p in procs)
            rate, res = run_phase(
                ctx, "ledger", targets, plan.members, plan.procs, plan.threads, plan.seconds
            )
            cpu_us.append((sum(cpu_seconds(p.pid) for p in procs) - cpu_before) / max(res.ok, 1) * 1e6)
            runs.append(rate)
            for k, v in res.error_kinds.items():
                errors[k] = errors.get(k, 0) + v
            print(
                f"[{label}] ledger run {i + 1}: {rate:.0f} cmd/s, server CPU {cpu_us[-1]:.0f} us/cmd "
                f"({res.ok} ok, {res.errors} errors {res.error_kinds})",
                flush=True,
            )

        _, paced = run_phase(
            ctx,
            "ledger",
            targets,
            plan.members,
            plan.procs,
            plan.threads,
            plan.paced_seconds,
            total_rate=500.0,
        )
        p50, p99 = pct(paced.latencies_ms, 0.50), pct(paced.latencies_ms, 0.99)
        paced_rate = paced.ok / plan.paced_seconds
        print(
            f"[{label}] paced 500/s: achieved {paced_rate:.0f} cmd/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"({paced.errors} errors {paced.error_kinds})",
            flush=True,
        )

        replay_s, replay_count = replay_bench(targets[0], plan.replay_events, plan.threads, plan.repeats)
        print(
            f"[{label}] replay of {replay_count} events: {replay_s * 1000:.0f} ms (median of {plan.repeats})",
            flush=True,
        )
        rss = [rss_mb(p.pid) for p in procs]
        print(f"[{label}] server RSS after the run: {', '.join(f'{r:.0f} MB' for r in rss)}", flush=True)
    return StoreFigures(kind=kind, servers=len(procs), conditions=conditions, setup_s=setup_s, enrolled=enrolled,
                        runs=runs, errors=errors, paced_rate=paced_rate, paced_errors=paced.error_kinds, p50=p50,
                        p99=p99, replay_s=replay_s, replay_count=replay_count, rss=rss, cpu_us=cpu_us)  # fmt: skip


def bench_echo(ctx: Any, plan: Plan) -> tuple[list[float], list[float]]:
    """The echo server's calls/s per run, and its own CPU time per call (microseconds) per run."""
    port_q = ctx.Queue()
    stop_ev = ctx.Event()
    echo_proc = ctx.Process(target=echo_server_main, args=(port_q, stop_ev))
    echo_proc.start()
    try:
        echo_target = f"127.0.0.1:{port_q.get(timeout=30)}"
        echo_runs = []
        echo_cpu: list[float] = []
        for i in range(plan.repeats):
            assert echo_proc.pid is not None
            before = cpu_seconds(echo_proc.pid)
            rate, res = run_phase(
                ctx, "echo", [echo_target], plan.members, plan.procs, plan.threads, plan.seconds
            )
            echo_cpu.append((cpu_seconds(echo_proc.pid) - before) / max(res.ok, 1) * 1e6)
            echo_runs.append(rate)
            print(f"echo run {i + 1}: {rate:.0f} calls/s, server CPU {echo_cpu[-1]:.0f} us/call", flush=True)
    finally:
        stop_ev.set()
        echo_proc.join(10)
        if echo_proc.is_alive():
            echo_proc.terminate()
    return echo_runs, echo_cpu


# -- projection rebuild / catch-up ------------------------------------------------------------------------


@dataclass
class Generated:
    """The template log: real commands decided in-process by the ledger."""

    members: int
    commands: int
    rejected: int
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class RebuildFigures:
    kind: str
    log_events: int
    """Events in the store's log (every member copy plus the program stream)."""
    members: int
    load_seconds: float
    seconds: float
    events_per_second: float
    summary: str
    catch_up_events: int
    """How far the read models lagged the log when the store was opened (the ProjectionRunner's catch-up)."""
    catch_up_seconds: float
    """Opening the store (``build``): mostly that catch-up."""

    @property
    def catch_up_rate(self) -> float:
        return self.catch_up_events / self.catch_up_seconds if self.catch_up_seconds > 0 else float("nan")


def generate_template(path: str, members: int, events: int, seed: int) -> Generated:
    """Run real commands through an in-process ledger on a SQLite file (``synchronous=OFF``) until ``events``.

    Members ``rb-0000000``.. are enrolled and credited (as in the server setup), then the benchmark's write mix
    is decided for random members: 70/85 purchases, 15/85 holds each committed, 5/85 whole-order refunds of an
    earlier purchase of the member (queries write nothing, so they are left out). Every event is decided and
    applied by the real write path, projections included.
    """
    started = time.perf_counter()
    wired = build(Settings(store_url=f"sqlite:///{path}", synchronous="OFF"))
    app = wired.app
    rng = random.Random(seed)
    pos, operator = actor_of(POS), actor_of(OPERATOR)
    batch: list[cmd.Envelope] = []
    produced = commands = rejected = 0

    def flush() -> None:
        nonlocal produced, commands, rejected
        for result in app.writer.execute_many(batch, timeout=300):
            commands += 1
            if isinstance(result, BaseException):
                rejected += 1
            else:
                produced += len(result.events)
        batch.clear()

    try:
        for i in range(members):
            m = f"rb-{i:07d}"
            batch.append(
                cmd.Envelope(PROGRAM, cmd.EnrollMember(member_id=m, identities=()), f"enroll-{m}", None, pos)
            )
            batch.append(cmd.Envelope(PROGRAM, cmd.AdjustPoints(
                member_id=m, points=SETUP_CREDIT, reason_code="GOODWILL", note="bench setup", operator_id="bench"),
                f"credit-{m}", None, operator))  # fmt: skip
            if len(batch) >= 512:
                flush()
        flush()
        orders: dict[str, list[str]] = {}
        n = 0
        while produced < events:
            for _ in range(max(1, min(512, events - produced))):
                n += 1
                m = f"rb-{rng.randrange(members):07d}"
                r = rng.random() * 0.85
                if r < 0.05 and orders.get(m):
                    oid = orders[m].pop(rng.randrange(len(orders[m])))
                    batch.append(cmd.Envelope(PROGRAM, cmd.RefundPurchase(member_id=m, order_id=oid, refund_id=f"R-{oid}"),
                                              f"k-{n}", None, pos))  # fmt: skip
                elif r < 0.20:
                    hold = f"H-{n}"
                    batch.append(cmd.Envelope(PROGRAM, cmd.HoldPoints(member_id=m, hold_id=hold, order_id=f"T-{n}", points=100,
                                                                      order_total_fen=100_000), f"k-{n}-h", None, pos))  # fmt: skip
                    batch.append(
                        cmd.Envelope(
                            PROGRAM, cmd.CommitHold(member_id=m, hold_id=hold), f"k-{n}-c", None, pos
                        )
                    )
                else:
                    paid = rng.randrange(1_000, 50_000)
                    line = OrderLine(
                        line_id="1",
                        sku="LS-FORMULA-900G",
                        category="infant_formula",
                        quantity=1,
                        paid_fen=paid,
                    )
                    batch.append(cmd.Envelope(PROGRAM, cmd.RecordPurchase(member_id=m, order_id=f"O-{n}", lines=(line,),
                                                                          order_total_fen=paid), f"k-{n}", None, pos))  # fmt: skip
                    orders.setdefault(m, []).append(f"O-{n}")
            flush()
    finally:
        app.close()
        wired.backend.store.close()
    return Generated(members=members, commands=commands, rejected=rejected, events=produced,
                     seconds=time.perf_counter() - started)  # fmt: skip


def _copy_member(stored: StoredEvent, copy: int) -> tuple[str, bytes]:
    """The stream id and payload of ``stored`` for copy ``copy`` of its member (``rb-N`` becomes ``rbCC-N``)."""
    old = stored.stream_id.removeprefix(MEMBER_PREFIX)
    new = f"rb{copy:02d}-{old.removeprefix('rb-')}"
    return MEMBER_PREFIX + new, stored.payload.replace(f'"{old}"'.encode(), f'"{new}"'.encode())


def copy_events(template: EventStore[Any], target: EventStore[Any], copies: int) -> tuple[int, int]:
    """Append ``copies`` copies of the template's member streams to ``target``; return (events written, last position).

    Each copy is the template's log in its position order (members interleaved as they were written) with every
    member under a new id and every event under a new event id; the store computes the hash chains again.
    Streams that are not members' (the program's) are copied once, as they are.
    """
    written = last = 0
    for copy in range(copies):
        position = 0
        while page := template.read_all(after_position=position, limit=COPY_PAGE):
            position = page[-1].position
            appends: list[tuple[str, list[NewEvent]]] = []
            for stored in page:
                if stored.stream_id.startswith(MEMBER_PREFIX):
                    stream_id, payload = _copy_member(stored, copy)
                elif copy == 0:
                    stream_id, payload = stored.stream_id, stored.payload
                else:
                    continue
                event = NewEvent(
                    event_id=key(), type=stored.type, schema_version=stored.schema_version,
                    occurred_at=stored.occurred_at, recorded_at=stored.recorded_at,
                    policy_version=stored.policy_version, idempotency_key=stored.idempotency_key,
                    correlation_id=stored.correlation_id, causation_id=stored.causation_id, actor=stored.actor,
                    payload=payload,
                )  # fmt: skip
                if appends and appends[-1][0] == stream_id:  # runs of one stream keep the log's order
                    appends[-1][1].append(event)
                else:
                    appends.append((stream_id, [event]))
            if appends:
                stored_events = target.append(
                    AppendBatch([StreamAppend(s, ANY, events) for s, events in appends])
                )
                written += len(stored_events)
                last = max(last, stored_events[-1].position)
    return written, last


def _mark_projected(kind: str, store_url: str, position: int) -> None:
    """Create the read-model tables (empty) with their checkpoint at ``position``: read models that lag the log."""
    if kind == "sqlite":
        path = store_url.removeprefix("sqlite:///")
        sqlite_projector = SqliteProjector()
        sqlite_projector.create_schema_at(path)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        try:
            sqlite_projector.set_checkpoint(conn, position)
        finally:
            conn.close()
    else:
        with PostgresEventStore(store_url) as store, store.connection() as pg:
            pg_projector = PgProjector()
            pg_projector.create_schema(pg)
            pg_projector.set_checkpoint(pg, position)


def load_and_rebuild(
    kind: str, template_path: str, copies: int, store_url: str, catch_up: int
) -> RebuildFigures:
    """Copy the template into the (empty) store at ``store_url``, then time the catch-up and the rebuild.

    Loading SQLite uses ``synchronous=OFF`` (it is set-up, not measured). The read models are then marked as
    projected up to ``catch_up`` events before the end of the log, so opening the store (``build``, as ``ledger
    serve`` does) has the :class:`~projections.runner.ProjectionRunner` catch them up with those last events:
    that is the timed catch-up. Then ``rebuild_projections`` rebuilds every read model from the whole log, as
    ``ledger rebuild-projections`` does, on the store opened with the default settings (SQLite ``FULL``).
    """
    started = time.perf_counter()
    target: EventStore[Any]
    if kind == "sqlite":
        target = SqliteEventStore(store_url.removeprefix("sqlite:///"), synchronous="OFF")
    else:
        target = PostgresEventStore(store_url)
    template = SqliteEventStore(template_path)
    try:
        loaded, last = copy_events(template, target, copies)
    finally:
        template.close()
        target.close()
    lag = min(catch_up, last)
    _mark_projected(kind, store_url, last - lag)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    wired = build(Settings(store_url=store_url))
    catch_up_seconds = time.perf_counter() - started
    try:
        started = time.perf_counter()
        report = rebuild_projections(wired.app, wired.backend)
        seconds = time.perf_counter() - started
    finally:
        wired.app.close()
        wired.backend.store.close()
    return RebuildFigures(kind=kind, log_events=loaded, members=int(report["members"]), load_seconds=load_seconds,
                          seconds=seconds, events_per_second=float(report["events_per_second"]),
                          summary=str(report["summary"]), catch_up_events=lag,
                          catch_up_seconds=catch_up_seconds)  # fmt: skip


def bench_rebuild(ctx: Any, tmp: Path, plan: Plan) -> tuple[Generated, list[RebuildFigures]]:
    """The projection rebuild / catch-up phase; each step runs in a fresh process (clean memory)."""
    template_events = -(-plan.rebuild_events // plan.rebuild_copies)
    template_members = max(1, template_events // EVENTS_PER_MEMBER)
    template_path = str(tmp / "rebuild-template.db")
    print(
        f"rebuild: deciding {template_events} events for {template_members} members in-process "
        f"(x{plan.rebuild_copies} copies = {plan.rebuild_events} events) ...",
        flush=True,
    )
    with ctx.Pool(1) as pool:
        generated: Generated = pool.apply(
            generate_template, (template_path, template_members, template_events, 7)
        )
    print(
        f"rebuild: generated {generated.events} events from {generated.commands} commands "
        f"({generated.rejected} rejected) in {generated.seconds:.1f} s ({generated.rate:.0f} events/s; "
        f"{plan.rebuild_events} events this way would take ~{plan.rebuild_events / generated.rate:.0f} s)",
        flush=True,
    )
    results: list[RebuildFigures] = []
    for kind in plan.stores:
        with ExitStack() as stack:
            if kind == "sqlite":
                url = f"sqlite:///{tmp / 'rebuild.db'}"
            else:
                url = stack.enter_context(fresh_schema(plan.pg_base))
            # not a Pool: its daemonic process could not fork the rebuild's worker processes
            with futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as executor:
                figures: RebuildFigures = executor.submit(
                    load_and_rebuild, kind, template_path, plan.rebuild_copies, url, plan.catch_up_events
                ).result()
        if kind == "sqlite":
            for leftover in tmp.glob("rebuild.*"):
                leftover.unlink()
        print(
            f"[{LABELS[kind]}] loaded {figures.log_events} events in {figures.load_seconds:.1f} s; catch-up of "
            f"{figures.catch_up_events} events on opening: {figures.catch_up_seconds:.1f} s "
            f"({figures.catch_up_rate:,.0f} events/s); rebuild: {figures.events_per_second:,.0f} events/s ({figures.summary})",
            flush=True,
        )
        results.append(figures)
    return generated, results


def _stores(value: str) -> list[str]:
    names = [{"postgres": "postgresql", "pg": "postgresql"}.get(s.strip().lower(), s.strip().lower())
             for s in value.split(",") if s.strip()]  # fmt: skip
    unknown = [s for s in names if s not in STORES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"stores are a comma-separated list of {', '.join(STORES)}")
    return [s for s in STORES if s in names]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="2,000 members, short phases, 2,000-event replay, 100,000-event rebuild")  # fmt: skip
    p.add_argument("--stores", type=_stores, default=list(STORES),
                   help="comma-separated stores to measure (default: sqlite,postgresql)")  # fmt: skip
    p.add_argument("--replicas", type=int, default=2, help="ledger serve replicas on PostgreSQL (default 2)")
    p.add_argument("--postgres-url", default=postgres_url(),
                   help="PostgreSQL database; each phase uses a fresh schema of it (default: $LEDGER_TEST_POSTGRES "
                        "or postgresql://postgres@127.0.0.1:5432/test)")  # fmt: skip
    p.add_argument("--members", type=int)
    p.add_argument("--seconds", type=float, help="duration of each throughput run (default 30; quick 4)")
    p.add_argument("--paced-seconds", type=float,
                   help="duration of the paced 500 cmd/s phase (default 30, at most --seconds but at least 6; quick 6)")  # fmt: skip
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--threads", type=int, default=32,
                   help="threads per client process (default 32: 64 callers in all, like a fleet of tills; the echo"
                   " baseline gets the same)")
    p.add_argument("--setup-threads", type=int, default=32,
                   help="threads per client process while enrolling the members (default 32: bigger write groups)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=3, help="throughput runs per store (median reported)")
    p.add_argument("--replay-events", type=int)
    p.add_argument("--rebuild-events", type=int,
                   help="events written for the projection rebuild phase (default 1,000,000; quick 100,000; 0 skips it)")  # fmt: skip
    p.add_argument("--rebuild-copies", type=int, default=10,
                   help="the rebuild log is this many copies of a log decided by real commands under other member "
                        "ids (default 10; 1 decides every event by its own command, slower)")  # fmt: skip
    p.add_argument("--catch-up-events", type=int,
                   help="rebuild phase: how far the read models lag the log when the store is opened, timed as the "
                        "ProjectionRunner's catch-up (default 100,000; quick 20,000)")  # fmt: skip
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    a = p.parse_args(argv)
    if a.replicas < 1 or a.rebuild_copies < 1:
        p.error("--replicas and --rebuild-copies must be at least 1")
    plan = Plan(
        quick=a.quick, stores=a.stores, replicas=a.replicas,
        members=a.members or (2_000 if a.quick else 100_000),
        seconds=a.seconds or (4.0 if a.quick else 30.0),
        paced_seconds=a.paced_seconds or (6.0 if a.quick else max(6.0, min(30.0, a.seconds or 30.0))),
        procs=a.procs, threads=a.threads, setup_threads=a.setup_threads, repeats=a.repeats,
        replay_events=a.replay_events or (2_000 if a.quick else 10_000),
        rebuild_events=a.rebuild_events if a.rebuild_events is not None else (100_000 if a.quick else 1_000_000),
        rebuild_copies=a.rebuild_copies, pg_base=a.postgres_url,
        catch_up_events=a.catch_up_events or (20_000 if a.quick else 100_000),
        command=" ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
    )  # fmt: skip
    if "postgresql" in plan.stores:
        try:
            postgres_conditions(plan.pg_base)
        except psycopg.Error as error:
            p.error(f"PostgreSQL does not answer at --postgres-url ({error}); use --stores sqlite to skip it")
    ctx = mp.get_context("spawn")
    started = time.monotonic()
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmpdir:
        tmp = Path(tmpdir)
        figures = [bench_store(ctx, tmp, kind, plan) for kind in plan.stores]
        echo_runs, echo_cpu = bench_echo(ctx, plan)
        echo_rate = statistics.median(echo_runs)
        echo_cpu_us = statistics.median(echo_cpu)
        for f in figures:
            print(
                f"{LABELS[f.kind]}: {f.rate:.0f} cmd/s vs echo {echo_rate:.0f} calls/s: {f.rate / echo_rate:.1%}; "
                f"server CPU {f.cpu_per_command_us:.0f} us/cmd vs echo {echo_cpu_us:.0f} us/call: "
                f"{f.cpu_per_command_us / echo_cpu_us:.1f}x"
            )
        generated, rebuilds = bench_rebuild(ctx, tmp, plan) if plan.rebuild_events > 0 else (None, [])

    total_s = time.monotonic() - started
    print(f"total run time {total_s / 60:.1f} min")
    write_report(Path(a.out), plan, figures=figures, echo_runs=echo_runs, echo_cpu=echo_cpu, generated=generated, rebuilds=rebuilds,
                 total_s=total_s, load=(load_before, os.getloadavg()))  # fmt: skip
    print(f"wrote {a.out}")
    return 0


# -- the report -------------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _runs(values: list[float]) -> str:
    return ", ".join(f"{r:.0f}" for r in values)


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k.removeprefix('StatusCode.')} {v:,}" for k, v in sorted(errors.items())) or "none"


def _store_table(
    f: StoreFigures, plan: Plan, echo_rate: float, rebuild: RebuildFigures | None, echo_cpu_us: float = float("nan")
) -> list[str]:
    ratio = f.rate / echo_rate if echo_rate else float("nan")
    cpu_ratio = f.cpu_per_command_us / echo_cpu_us if echo_cpu_us else float("nan")
    cpu_row = (
        f"| Server CPU time per command (median; runs: {_runs(f.cpu_us)} us) / echo's per call ({echo_cpu_us:,.0f} us) | "
        f"{f.cpu_per_command_us:,.0f} us = {cpu_ratio:.1f}x | <= 2x | {_met(cpu_ratio <= 2)} |"
    )
    rss = " / ".join(f"{r:.0f} MB" for r in f.rss)
    replay = f"ReplayMember of {f.replay_count:,} events (median of {plan.repeats})"
    lines = ["| Figure | Measured | Target | Result |", "|---|---|---|---|"]
    if f.kind == "sqlite":
        lines += [
            f"| Sustained ledger commands/s (median; runs: {_runs(f.runs)}) | {f.rate:,.0f} | >= 1,500 | {_met(f.rate >= 1500)} |",
            f"| Ledger / echo | {ratio:.1%} | >= 50% | {_met(ratio >= 0.5)} |",
            cpu_row,
            f"| Latency at paced 500 cmd/s ({plan.paced_seconds:g} s, achieved {f.paced_rate:.0f}/s): p50 / p99 | "
            f"{f.p50:.1f} ms / {f.p99:.1f} ms | p99 < 25 ms | {_met(f.p99 < 25 and f.paced_rate >= 475)} |",
            f"| {replay} | {f.replay_s * 1000:.0f} ms | 10,000 events < 0.5 s | "
            + (
                _met(f.replay_s < 0.5)
                if f.replay_count >= 10_000
                else "not measured at 10,000 events in this run"
                + (f"; {f.replay_count:,} events already take over 0.5 s" if f.replay_s >= 0.5 else "")
            )
            + " |",
            f"| Server RSS after the run ({plan.members:,} members) | {rss} | < 500 MB with 100,000 members | "
            + (
                _met(f.rss[0] < 500)
                if plan.members >= 100_000
                else "not measured at 100,000 members in this run"
            )
            + " |",
        ]
        if rebuild is None:
            lines.append("| Projection rebuild (`rebuild_projections`) | — | >= 50,000 events/s from 1M events | not measured in this run |")  # fmt: skip
        else:
            result = _met(rebuild.events_per_second >= 50_000)
            if rebuild.log_events < 1_000_000:
                result = f"not measured at 1M events in this run ({result} at {rebuild.log_events:,})"
            lines.append(
                f"| Projection rebuild of {rebuild.log_events:,} events, {rebuild.members:,} members | "
                f"{rebuild.events_per_second:,.0f} events/s ({rebuild.seconds:.1f} s) | >= 50,000 events/s from 1M events | {result} |"
            )
            lines.append(_catch_up_row(rebuild, "—", None))
        return lines
    two = "" if f.servers == 2 else f" (with {f.servers} replicas; the target is for two)"
    lines += [
        f"| Sustained ledger commands/s over {f.servers} replicas (median; runs: {_runs(f.runs)}) | {f.rate:,.0f} | "
        f">= 1,200 | {_met(f.rate >= 1200)}{two} |",
        f"| Ledger / echo | {ratio:.1%} | — | — |",
        cpu_row,
        f"| Latency at paced 500 cmd/s ({plan.paced_seconds:g} s, achieved {f.paced_rate:.0f}/s): p50 / p99 | "
        f"{f.p50:.1f} ms / {f.p99:.1f} ms | p99 < 40 ms | {_met(f.p99 < 40 and f.paced_rate >= 475)}{two} |",
        f"| {replay}, through replica 1 | {f.replay_s * 1000:.0f} ms | — | — |",
        f"| Server RSS after the run, each replica ({plan.members:,} members) | {rss} | — | — |",
    ]
    if rebuild is None:
        lines.append(
            "| Projection catch-up (`rebuild_projections`) | — | >= 20,000 events/s | not measured in this run |"
        )
    else:
        lines += [
            f"| Projection catch-up as a full rebuild (`rebuild_projections`) of {rebuild.log_events:,} events, "
            f"{rebuild.members:,} members | {rebuild.events_per_second:,.0f} events/s ({rebuild.seconds:.1f} s) | "
            f">= 20,000 events/s | {_met(rebuild.events_per_second >= 20_000)} |",
            _catch_up_row(rebuild, ">= 20,000 events/s", 20_000),
        ]
    return lines


def _catch_up_row(rebuild: RebuildFigures, target: str, threshold: float | None) -> str:
    result = "—" if threshold is None else _met(rebuild.catch_up_rate >= threshold)
    return (
        f"| Projection catch-up on opening the store (`ProjectionRunner.catch_up` in `build`), read models "
        f"{rebuild.catch_up_events:,} events behind | {rebuild.catch_up_rate:,.0f} events/s "
        f"({rebuild.catch_up_seconds:.1f} s) | {target} | {result} |"
    )


def write_report(path: Path, plan: Plan, *, figures: list[StoreFigures], echo_runs: list[float], echo_cpu: list[float],
                 generated: Generated | None, rebuilds: list[RebuildFigures], total_s: float,
                 load: tuple[tuple[float, float, float], tuple[float, float, float]]) -> None:  # fmt: skip
    echo_rate = statistics.median(echo_runs)
    echo_cpu_us = statistics.median(echo_cpu) if echo_cpu else float("nan")
    if plan.quick:
        mode = "QUICK MODE"
    elif plan.full_scale:
        mode = "full mode"
    else:
        mode = "REDUCED RUN"
    mode += f" (`{plan.command}`)"
    rebuild_by_kind = {r.kind: r for r in rebuilds}
    lines = [
        "# Benchmarks",
        "",
        f"**{mode}** — generated by `bench/run.py` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"the whole run took {total_s / 60:.1f} min.",
        "",
        f"- Machine: {os.cpu_count()} CPUs (nproc), {platform.machine()}, {platform.system()} {platform.release()}; "
        "the servers, the client processes and (for PostgreSQL) the database server all share it. Load average "
        f"(1/5/15 min) {'/'.join(f'{v:.1f}' for v in load[0])} at the start, "
        f"{'/'.join(f'{v:.1f}' for v in load[1])} at the end.",
        f"- Python {platform.python_version()}, grpcio {grpc.__version__}",
        f"- Stores: {', '.join(LABELS[s] for s in plan.stores)}"
        + (f" ({plan.replicas} replicas)" if "postgresql" in plan.stores else "")
        + f"; {plan.members:,} members each; measured one after the other in this run.",
        f"- Load: {plan.procs} client processes x {plan.threads} threads, sync stubs (each thread talks to one replica, "
        f"round-robin); {plan.repeats} run(s) of {plan.seconds:g} s per store, medians quoted; paced phase "
        f"{plan.paced_seconds:g} s; ReplayMember of a {plan.replay_events:,}-event member.",
        f"- Servers: authentication on (every call carries the admin API key; plaintext, no TLS), one key for all"
        f" client threads with its rate limit raised to `--rate-limit {KEY_LIMIT}`.",
        "- Mix: 70% RecordPurchase, 15% HoldPoints+CommitHold (two commands), 10% GetBalance, 5% RefundPurchase of an earlier order.",
        f"- Echo baseline (generic-handler gRPC server, same {WORKERS}-thread pool), once: median "
        f"{echo_rate:,.0f} calls/s (runs: {_runs(echo_runs)}); its own CPU time per call, median "
        f"{echo_cpu_us:,.0f} us (runs: {_runs(echo_cpu)}).",
        "",
    ]
    if not plan.full_scale:
        short = [
            text
            for text, reduced in (
                (f"{plan.members:,} members (not 100,000)", plan.members < 100_000),
                (f"a {plan.replay_events:,}-event replay (not 10,000)", plan.replay_events < 10_000),
                (f"a {plan.rebuild_events:,}-event rebuild (not 1M)", plan.rebuild_events < 1_000_000),
            )
            if reduced
        ]
        lines += [
            f"This run uses {', '.join(short)}, with {plan.seconds:g} s throughput runs, so the targets tied to "
            "those conditions are reported as not measured and its figures are indicative only.",
            "",
        ]
    for f in figures:
        title = "SQLite (one server)" if f.kind == "sqlite" else f"PostgreSQL ({f.servers} replicas)"
        lines += [
            f"## {title}",
            "",
            f"- Store: {f.conditions}.",
            f"- Setup: {f.enrolled:,} members enrolled and credited (2 commands each; {plan.procs} x {plan.setup_threads} threads) in {f.setup_s:.1f} s "
            f"({2 * f.enrolled / f.setup_s:,.0f} cmd/s)"
            + (", spread over the replicas." if f.servers > 1 else "."),
            f"- Errors (counted, not in the rates): throughput runs {_errors(f.errors)}; paced phase {_errors(f.paced_errors)}.",
            "",
            *_store_table(f, plan, echo_rate, rebuild_by_kind.get(f.kind), echo_cpu_us),
            "",
        ]
    if generated is not None and rebuilds:
        copies = plan.rebuild_copies
        lines += [
            "## Projection rebuild / catch-up",
            "",
            f"The log: {generated.commands:,} commands ({generated.members:,} members enrolled and credited, then the "
            f"write part of the mix; {generated.rejected:,} rejected) were decided in-process by the real write path "
            f"on a SQLite file with `synchronous=OFF`, giving {generated.events:,} member events in "
            f"{generated.seconds:.1f} s ({generated.rate:,.0f} events/s)"
            + (
                f". Each store then got {copies} copies of that log appended in its order with the store API "
                f"(pages of {COPY_PAGE:,}), every member under a new id and every event under a new id, the store "
                "computing the hash chains: real domain events that fold exactly as their originals, so "
                f"{generated.members * copies:,} members. Deciding all {plan.rebuild_events:,} events by commands "
                f"(`--rebuild-copies 1`) would take about {_duration(plan.rebuild_events / generated.rate)} on "
                "this machine at that rate."
                if copies > 1
                else "; each store got that log appended in its order with the store API."
            ),
            "",
            "Two things are timed, in a fresh process per store. (1) Catch-up: the read-model tables are created empty "
            f"with their checkpoint {plan.catch_up_events:,} events before the end of the log (read models lagging "
            "the log), then the store is opened with `ledger.bootstrap.build` as `ledger serve` does, whose "
            "`ProjectionRunner.catch_up` projects those events; the figure is the whole `build` call (the app's own "
            "start is a small part of it). (2) Rebuild: `ledger.entrypoints.rebuild.rebuild_projections(app, backend)` (what "
            "`ledger rebuild-projections` runs) on that store, opened with the default settings (SQLite `FULL`); "
            "its events/s counts every event read. The brief names the rebuild as the PostgreSQL catch-up figure; "
            "both are shown against the 20,000 events/s target.",
            "",
        ]
        for r in rebuilds:
            lines.append(
                f"- {LABELS[r.kind]}: loaded in {r.load_seconds:.1f} s; opening the store caught the read models up "
                f"with the last {r.catch_up_events:,} events in {r.catch_up_seconds:.1f} s; {r.summary}."
            )
        lines.append("")
    lines += [
        "## Notes",
        "",
        "- Commands/s counts successful RPCs (a hold and its commit are two). Latency is per RPC, measured client-side.",
        "- The paced phase spreads 500 commands/s over all client threads; each thread keeps to its schedule. "
        "Its target counts as met only if the p99 is under the target and at least 475/s were achieved.",
        "- On PostgreSQL the replicas share the members: two replicas deciding for one member at once make one of "
        "them retry (and after several attempts answer ABORTED, counted above as errors).",
        "- ReplayMember, RSS and the echo ratio have no PostgreSQL target in the issue; they are shown for comparison.",
        "- Every store is measured with the clients and servers on the same machine, so client CPU is taken from "
        "the servers; on a busy machine all figures are lower than on a quiet one.",
        "- Where the time goes and what limits these figures (profiles of the write path, replay, rebuild and the "
        "PostgreSQL replicas): [docs/performance.md](docs/performance.md).",
        "",
    ]
    from bench import import_rate, replay_rebuild, standing_reads
    from bench.security_overhead import kept_section

    # the figures bench.security_overhead, bench.import_rate, bench.replay_rebuild and bench.standing_reads wrote stay
    kept = (
        kept_section(path) + import_rate.kept_section(path) + replay_rebuild.kept_section(path)
        + standing_reads.kept_section(path)
    )
    path.write_text("\n".join(lines) + kept)


if __name__ == "__main__":
    raise SystemExit(main())
