"""One setting for the address: ``ledger serve`` listens on ``$LEDGER_LISTEN`` and ``ledger health`` (as the
container's health check runs it, with no flag) asks this host on the same port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.testing.server import stop_server, with_pepper

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ledger.entrypoints.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_and_health_read_the_one_listen_setting(tmp_path: Path) -> None:
    port = free_port()
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LEDGER_LISTEN": f"0.0.0.0:{port}",
        "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL",
    }
    env = with_pepper(tmp_path, store, env)
    port_file = tmp_path / "port"
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [*CLI, "--store", store, "serve", "--port-file", str(port_file)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "no port file in 60 s"
            time.sleep(0.05)
        assert int(port_file.read_text()) == port
        health = subprocess.run(
            [*CLI, "health"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
        )
        assert health.returncode == 0 and health.stdout.strip() == "SERVING", health.stdout + health.stderr
        elsewhere = {**env, "LEDGER_LISTEN": f"0.0.0.0:{free_port()}"}
        refused = subprocess.run(
            [*CLI, "health"], cwd=tmp_path, env=elsewhere, capture_output=True, text=True, timeout=30
        )
        assert refused.returncode == 1 and "UNAVAILABLE" in refused.stdout
    finally:
        stop_server(server)
    assert server.returncode == 0
