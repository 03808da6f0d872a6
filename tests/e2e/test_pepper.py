"""``ledger serve`` refuses the public development pepper on a durable store, runs with it as a sandbox (saying so
in the log), and runs with a secret pepper from a file without that secret ever reaching the log."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from ledger.testing.server import start_server, stop_server
from loyalty.v1 import query_pb2, query_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ledger.entrypoints.cli"]

pytestmark = pytest.mark.e2e


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {
        **base,
        "PYTHONPATH": str(ROOT),
        "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL",
        "LEDGER_LOG_LEVEL": "debug",
        **extra,
    }


def test_serve_refuses_the_development_pepper_on_sqlite(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*CLI, "--store", f"sqlite:///{tmp_path / 'ledger.db'}", "serve", "--listen", "127.0.0.1:0"],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "public development pepper" in refused.stderr and "--sandbox" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "admin.key").exists()  # stopped before the store was opened


def test_serve_runs_with_the_development_pepper_as_a_sandbox(tmp_path: Path) -> None:
    running = start_server(tmp_path, env=_env(), cwd=ROOT, extra_args=["--sandbox"])
    try:
        with running.channel() as channel:
            stub = query_pb2_grpc.MemberQueryServiceStub(channel)
            with contextlib.suppress(grpc.RpcError):
                stub.GetBalance(
                    query_pb2.GetBalanceRequest(program_id="little_sprout", member_id="x"), timeout=5
                )
    finally:
        stop_server(running.process)
    log = running.log_path.read_text()
    assert "development_pepper" in log and "Sandbox use only" in log


def test_serve_runs_with_a_secret_pepper_that_never_reaches_the_log(tmp_path: Path) -> None:
    pepper = secrets.token_hex(32)
    (tmp_path / "pepper").write_text(pepper + "\n")
    env = _env(LEDGER_IDENTITY_PEPPER_FILE=str(tmp_path / "pepper"))
    running = start_server(tmp_path, env=env, cwd=ROOT)
    try:
        with running.channel() as channel:
            stub = query_pb2_grpc.MemberQueryServiceStub(channel)
            with contextlib.suppress(grpc.RpcError):  # no such member: the call only has to be logged
                stub.GetBalance(
                    query_pb2.GetBalanceRequest(program_id="little_sprout", member_id="nobody"), timeout=5
                )
        shown = subprocess.run([*CLI, "--store", running.store_url, "config", "--format", "env"], env=env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    finally:
        stop_server(running.process)
    log = running.log_path.read_text()
    assert "development_pepper" not in log
    assert "LEDGER_IDENTITY_PEPPER='**********'  # file" in shown.stdout
    for text in (log, shown.stdout, shown.stderr):
        assert pepper not in text and pepper[:8] not in text


def test_serve_refuses_a_store_first_served_with_another_pepper(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    first, second = secrets.token_hex(32), secrets.token_hex(32)
    (tmp_path / "first").mkdir()
    (tmp_path / "again").mkdir()
    running = start_server(
        tmp_path / "first", store_url=store, env=_env(LEDGER_IDENTITY_PEPPER=first), cwd=ROOT
    )
    stop_server(running.process)
    assert "identity_pepper_recorded" in running.log_path.read_text()
    refused = subprocess.run(
        [*CLI, "--store", store, "serve", "--listen", "127.0.0.1:0"],
        env=_env(LEDGER_IDENTITY_PEPPER=second), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "first served with another identity pepper" in refused.stderr
    assert first not in refused.stderr and second not in refused.stderr
    again = start_server(
        tmp_path / "again", store_url=store, env=_env(LEDGER_IDENTITY_PEPPER=first), cwd=ROOT
    )
    stop_server(again.process)
    assert "identity_pepper_recorded" not in again.log_path.read_text()
