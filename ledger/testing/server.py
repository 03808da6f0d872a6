"""Running the real server from tests and benchmarks: shipped with the package so every caller starts it alike.

``start_server`` launches ``ledger serve`` as a subprocess on a free port, waits until it has written its port
file and its health service answers SERVING, and returns where to reach it; ``stop_server`` sends SIGTERM
(the server shuts down gracefully) and kills it only if it does not stop in time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


@dataclass(frozen=True, slots=True)
class RunningServer:
    target: str
    process: subprocess.Popen[bytes]
    log_path: Path


def start_server(
    workdir: Path,
    *,
    store_url: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    extra_args: Sequence[str] = (),
    startup_seconds: float = 60.0,
) -> RunningServer:
    """Start ``ledger serve`` with its store, port file and log in ``workdir``; raise with the log if it fails."""
    port_file = workdir / "port"
    log_path = workdir / "server.log"
    command = [
        sys.executable, "-m", "ledger.entrypoints.cli", "--store", store_url or f"sqlite:///{workdir / 'ledger.db'}",
        "serve", "--listen", "127.0.0.1:0", "--port-file", str(port_file), *extra_args,
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
        with grpc.insecure_channel(target) as channel:
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
    except BaseException:
        stop_server(process)
        raise
    return RunningServer(target, process, log_path)


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
