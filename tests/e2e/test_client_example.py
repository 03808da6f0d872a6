"""The Python client example, run as a program against the real server process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT, Server

pytestmark = pytest.mark.e2e


def test_client_example_prints_the_replay(server: Server) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clients.python.example", "--target", server.target],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_API_KEY": server.api_key or ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "INSUFFICIENT_POINTS" in out
    replay = [line for line in out.splitlines() if line.startswith("replay v")]
    kinds = [line.split()[2] for line in replay]
    assert kinds == [
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
