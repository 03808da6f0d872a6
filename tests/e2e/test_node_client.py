"""The Node client (clients/node) against the real server process: its test suite and its till example.

The suite gets the server's address, its first admin key and a till's key made with ``ledger keys create
--role pos`` in environment variables; it checks the typed refusals the server sends, idempotency, the queries,
and the retries through a failing proxy. The client is built here from the protos as they are (``npm run
build``: buf generate, then tsc); ``npm ci`` runs first when ``node_modules`` is missing. Skipped only when
``node`` or ``npm`` is not installed. The example also runs over mutual TLS, with real certificates.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.python.loyalty_client import tls_credentials
from ledger.testing.certs import TestCA
from ledger.testing.server import RunningServer, create_key, start_server, stop_server
from tests.e2e.conftest import ROOT, Server

pytestmark = pytest.mark.e2e

NODE_DIR = ROOT / "clients" / "node"
SUITE_TESTS = 17
"""How many tests the Node suite has: fewer passing means some were skipped or lost."""


@pytest.fixture(scope="module")
def node_client() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed: the Node client is not tested (install Node.js and npm)"
        )
    if not (NODE_DIR / "node_modules").is_dir():
        _npm("ci", "--no-audit", "--no-fund", "--ignore-scripts")
    _npm("run", "build")


def _npm(*args: str) -> None:
    result = subprocess.run(["npm", *args], cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"npm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {**env, **extra}


def test_node_suite_passes_against_the_server(node_client: None, server: Server) -> None:
    pos_key = create_key(
        server.store_url, "little_sprout", "pos", "--name", "node till", cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    result = subprocess.run(
        ["npm", "test", "--silent"],
        cwd=NODE_DIR,
        env=_env(LEDGER_TARGET=server.target, LEDGER_ADMIN_KEY=server.api_key or "", LEDGER_POS_KEY=pos_key),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"^# fail 0$", out, re.M), out
    assert re.search(r"^# skipped 0$", out, re.M), out
    passed = re.search(r"^# pass (\d+)$", out, re.M)
    assert passed is not None and int(passed.group(1)) >= SUITE_TESTS, out
    assert pos_key not in out + result.stderr


def test_node_till_example_prints_the_replay(node_client: None, server: Server) -> None:
    result = subprocess.run(
        ["node", "dist/examples/till.js", "--target", server.target],
        cwd=NODE_DIR,
        env=_env(LEDGER_API_KEY=server.api_key or ""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert (
        'hold 500 refused: FAILED_PRECONDITION INSUFFICIENT_POINTS [["available","1"],["requested","500"]]'
        in out
    )
    replay = [line for line in out.splitlines() if line.startswith("replay v")]
    assert [line.split()[2] for line in replay] == [
        "MemberEnrolled",
        "PurchaseRecorded",
        "PointsAwarded",
        "PointsAdjusted",
        "PointsHeld",
        "HoldCommitted",
        "PointsHeld",
        "HoldReleased",
        "PurchaseRefunded",
    ]
    assert "delta=-500" in replay[5]
    assert "delta=-100" in replay[8]
    assert re.search(r"^balance active=501 pending=0 held=0 available=501$", out, re.M), out


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    tmp = tmp_path_factory.mktemp("node-mtls")
    ca = TestCA("ledger test CA")
    cert, key = ca.issue("ledger.test", server=True).write(tmp, "server")
    (tmp / "ca.pem").write_bytes(ca.pem)
    till = ca.issue("till-1", server=False)
    till.write(tmp, "till")
    running = start_server(
        tmp, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        extra_args=["--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(tmp / "ca.pem")],
        credentials=tls_credentials(ca.pem, till.cert_pem, till.key_pem),
    )  # fmt: skip
    try:
        yield running, tmp
    finally:
        stop_server(running.process)


def test_node_till_example_runs_over_mutual_tls(
    node_client: None, mtls_server: tuple[RunningServer, Path]
) -> None:
    running, tmp = mtls_server

    def till(*tls: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["node", "dist/examples/till.js", "--target", running.target, "--tls-ca", str(tmp / "ca.pem"), *tls],
            cwd=NODE_DIR, env=_env(LEDGER_API_KEY=running.api_key or ""), capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    done = till("--tls-cert", str(tmp / "till.pem"), "--tls-key", str(tmp / "till.key"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replay v9 PurchaseRefunded" in done.stdout
    refused = till()  # no client certificate: the server ends the handshake, the first call fails
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "enrolled" not in refused.stdout
    assert refused.stderr.startswith("refused: "), refused.stderr
