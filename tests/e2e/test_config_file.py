"""``ledger serve --config FILE``: a real server takes its settings from a TOML file, and so do the worker
processes of ``--processes N``: the identity pepper is only in the file, so a worker that did not read it would
refuse the public development pepper and the server would not start."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from ledger.testing.server import start_server, stop_server
from loyalty.v1 import ledger_pb2, ledger_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    # LEDGER_SANDBOX=0 is the harness's sign that the pepper is chosen already: here, by the file alone
    return {**base, "PYTHONPATH": str(ROOT), "LEDGER_SANDBOX": "0"}


def test_serve_and_its_workers_take_their_settings_from_the_config_file(tmp_path: Path) -> None:
    pepper = secrets.token_hex(32)
    config = tmp_path / "ledger.toml"
    config.write_text(f'identity_pepper = "{pepper}"\nsqlite_synchronous = "NORMAL"\nrate_limit = "1:1"\n')
    config.chmod(0o600)
    running = start_server(
        tmp_path, env=_env(), cwd=ROOT, global_args=["--config", str(config)], extra_args=["--processes", "2"]
    )
    try:
        with running.channel() as channel:
            ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
            request = ledger_pb2.EnrollMemberRequest(
                program_id="little_sprout", idempotency_key="e-1", member_id="m-1"
            )
            ledger.EnrollMember(request, timeout=10)
            # the file's rate limit: one call, then none this second
            with pytest.raises(grpc.RpcError) as limited:
                ledger.EnrollMember(request, timeout=10)
            assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        stop_server(running.process)
    log = running.log_path.read_text()
    assert pepper not in log and "development_pepper" not in log
    shown = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "--config", str(config), "config"],
        env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rows = json.loads(shown.stdout)
    assert rows["LEDGER_IDENTITY_PEPPER"] == {**rows["LEDGER_IDENTITY_PEPPER"], "value": "**********",
                                              "source": f"config file ({config})"}  # fmt: skip
    assert pepper not in shown.stdout + shown.stderr


def test_serve_refuses_a_config_file_it_cannot_use_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "ledger.toml"
    config.write_text("pool_sise = 4\n")
    refused = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "--config", str(config), "--store", "memory://", "serve"],
        env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"ledger: configuration: config file {config}: unknown key 'pool_sise' (did you mean 'pool_size'?)"
    )
