"""Graceful shutdown of the HTTP listener: SIGTERM while many writes arrive as JSON over HTTP.

Each HTTP call must either succeed (and its member is there after a restart) or be refused cleanly - ``503
unavailable`` before anything of it ran, or a connection the server no longer accepts - never cut off with a
connection dropped under a request it had read. The process exits 0 within the documented grace period.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from ledger.entrypoints.grpc.server import SHUTDOWN_SECONDS
from ledger.testing.server import RunningServer, start_server, stop_server
from loyalty.v1 import query_pb2, query_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 12
PROGRAM = "little_sprout"


@dataclass
class Outcomes:
    ok: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def enrol_until_refused(
    running: RunningServer, n: int, outcomes: Outcomes, ids: itertools.count[int]
) -> None:
    """Enrol new members over one kept-alive HTTP connection (a new one when the server closes it) until refused."""
    assert running.http_url is not None
    host, port = running.http_url.removeprefix("http://").split(":")
    connection: http.client.HTTPConnection | None = None
    while True:
        member_id = f"m-{n}-{next(ids)}"
        body = json.dumps({"programId": PROGRAM, "idempotencyKey": f"k-{member_id}", "memberId": member_id})
        try:
            if connection is None:
                connection = http.client.HTTPConnection(host, int(port), timeout=60)
                connection.connect()
        except ConnectionRefusedError:
            with outcomes.lock:
                outcomes.refused.append((member_id, "connection refused"))
            return
        try:
            connection.request("POST", "/loyalty.v1.LedgerService/EnrollMember", body, headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {running.api_key}"})  # fmt: skip
            reply = connection.getresponse()
            answer = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            with outcomes.lock:
                outcomes.other.append((member_id, repr(exc)))
            return
        with outcomes.lock:
            if reply.status == 200:
                outcomes.ok.append(member_id)
            elif reply.status == 503 and json.loads(answer)["code"] == "unavailable":
                outcomes.refused.append((member_id, json.loads(answer)["message"]))
                return
            else:
                outcomes.other.append((member_id, f"{reply.status} {answer!r}"))
                return
        if reply.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = None


def test_sigterm_finishes_http_calls_and_refuses_the_rest_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = start_server(tmp_path, env=env, cwd=ROOT, http=True, extra_args=["--workers", "8"])
    outcomes = Outcomes()
    ids = itertools.count(1)
    threads = [
        threading.Thread(target=enrol_until_refused, args=(running, n, outcomes, ids)) for n in range(CLIENTS)
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(outcomes.ok) < 100:
            assert time.monotonic() < deadline, f"only {len(outcomes.ok)} writes in 60 s"
            assert not outcomes.other and not outcomes.refused, (outcomes.other, outcomes.refused)
            time.sleep(0.01)
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        returncode = running.process.wait(timeout=SHUTDOWN_SECONDS + 10)
        took = time.monotonic() - signalled
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
    finally:
        stop_server(running.process)

    print(f"{len(outcomes.ok)} acknowledged, {len(outcomes.refused)} refused, exit after {took:.2f} s")
    assert returncode == 0
    assert took < SHUTDOWN_SECONDS
    assert not outcomes.other, f"HTTP calls cut off instead of finished or refused: {outcomes.other[:5]}"
    assert len(outcomes.refused) == CLIENTS

    (tmp_path / "port").unlink()
    (tmp_path / "http.port").unlink()
    again = start_server(tmp_path, env=env, cwd=ROOT)
    try:
        with again.channel() as channel:
            query = query_pb2_grpc.MemberQueryServiceStub(channel)
            for member_id in outcomes.ok:
                query.GetBalance(query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id=member_id))
            for member_id, details in outcomes.refused:
                with pytest.raises(grpc.RpcError) as caught:
                    query.GetBalance(query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id=member_id))
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND, (
                    f"{member_id} refused ({details}) yet written"
                )
    finally:
        stop_server(again.process)
