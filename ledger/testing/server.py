"""Running the real server from tests and benchmarks: shipped with the package so every caller starts it alike.

``start_server`` launches ``ledger serve`` as a subprocess on a free port, waits until it has written its port
file and its health service answers SERVING, and returns where to reach it with an admin key: the first admin
key the server wrote on a fresh store, or one made with ``ledger keys create`` as a user would.
``stop_server`` sends SIGTERM (the server shuts down gracefully) and kills it only if it does not stop in time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.python.loyalty_client import keyed_channel


def create_key(store_url: str, program: str, role: str, *extra: str, cwd: Path | None = None,
               env: Mapping[str, str] | None = None) -> str:
    """``ledger keys create`` as a user runs it; the key (the last line of its output)."""
    out = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "--store", store_url, "keys", "create",
         "--program", program, "--role", role, *extra],
        cwd=cwd, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


@dataclass(frozen=True, slots=True)
class RunningServer:
    target: str
    process: subprocess.Popen[bytes]
    log_path: Path
    store_url: str = ""
    api_key: str | None = None
    """A deployment admin key (None when the server runs with ``--insecure-no-auth``)."""
    credentials: grpc.ChannelCredentials | None = None
    """How to reach a TLS server (None: plaintext)."""

    def channel(self, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A channel to the server whose calls carry :attr:`api_key` (over TLS with :attr:`credentials`)."""
        return keyed_channel(self.target, self.api_key, options, self.credentials)


def start_server(
    workdir: Path,
    *,
    store_url: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    extra_args: Sequence[str] = (),
    startup_seconds: float = 60.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> RunningServer:
    """Start ``ledger serve`` with its store, port file and log in ``workdir``; raise with the log if it fails.

    A server started with ``--tls-cert`` is checked for health over TLS with ``credentials``."""
    port_file = workdir / "port"
    log_path = workdir / "server.log"
    key_file = workdir / "admin.key"
    store_url = store_url or f"sqlite:///{workdir / 'ledger.db'}"
    command = [
        sys.executable, "-m", "ledger.entrypoints.cli", "--store", store_url,
        "serve", "--listen", "127.0.0.1:0", "--port-file", str(port_file), "--admin-key-file", str(key_file),
        *extra_args,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_seconds
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not write its port file:\n{log_path.read_text()}")
            time.sleep(0.05)
        target = f"127.0.0.1:{int(port_file.read_text())}"
        with keyed_channel(target, None, credentials=credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not SERVING:\n{log_path.read_text()}")
                time.sleep(0.1)
        api_key: str | None = None
        if "--insecure-no-auth" not in extra_args:
            api_key = (
                key_file.read_text().strip() if key_file.exists()
                else create_key(store_url, "*", "admin", "--name", "test harness", cwd=cwd, env=env)
            )
    except BaseException:
        stop_server(process)
        raise
    return RunningServer(target, process, log_path, store_url, api_key, credentials)


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
