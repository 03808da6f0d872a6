"""Running the real server from tests and benchmarks: shipped with the package so every caller starts it alike.

``start_server`` launches ``ledger serve`` as a subprocess on a free port, waits until it has written its port
file and its health service answers SERVING, and returns where to reach it with an admin key: the first admin
key the server wrote on a fresh store, or one made with ``ledger keys create`` as a user would.
Unless the caller chose (``LEDGER_IDENTITY_PEPPER``, ``LEDGER_IDENTITY_PEPPER_FILE``, ``LEDGER_SANDBOX`` in ``env``,
or ``--sandbox`` / ``--insecure-no-auth``), the server gets a secret identity pepper the way a user gives one: a
``secrets.token_hex(32)`` in a file named by ``LEDGER_IDENTITY_PEPPER_FILE``, the same for every server this
process starts on one store (replicas and restarts resolve the same identities).
With ``http=True`` the server also serves JSON over HTTP on a free port (``--http-listen``), at
:attr:`RunningServer.http_url`.
``stop_server`` sends SIGTERM (the server shuts down gracefully) and kills it only if it does not stop in time.
"""

from __future__ import annotations

import os
import secrets
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

_PEPPERS: dict[str, str] = {}
"""The identity pepper of each store this process started a server on."""

PEPPER_CHOICES = ("LEDGER_IDENTITY_PEPPER", "LEDGER_IDENTITY_PEPPER_FILE", "LEDGER_SANDBOX")


def with_pepper(workdir: Path, store_url: str, env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` (default: this process's) with ``LEDGER_IDENTITY_PEPPER_FILE`` naming a file in ``workdir`` that
    holds the store's pepper (made with :func:`secrets.token_hex` on first use), unless ``env`` chose already."""
    out = dict(os.environ if env is None else env)
    if any(out.get(name) for name in PEPPER_CHOICES):
        return out
    pepper_file = workdir / "identity.pepper"
    pepper_file.write_text(_PEPPERS.setdefault(store_url, secrets.token_hex(32)) + "\n")
    pepper_file.chmod(0o600)
    out["LEDGER_IDENTITY_PEPPER_FILE"] = str(pepper_file)
    return out


def create_key(
    store_url: str,
    program: str,
    role: str,
    *extra: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
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
    http_url: str | None = None
    """``http://127.0.0.1:PORT`` of the JSON-over-HTTP listener (``https://`` with TLS), when started with it."""

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
    global_args: Sequence[str] = (),
    startup_seconds: float = 60.0,
    credentials: grpc.ChannelCredentials | None = None,
    http: bool = False,
) -> RunningServer:
    """Start ``ledger serve`` with its store, port file and log in ``workdir``; raise with the log if it fails.

    ``extra_args`` follow ``serve``; ``global_args`` (``--config FILE``) come before it. A server started with
    ``--tls-cert`` is checked for health over TLS with ``credentials``."""
    port_file = workdir / "port"
    log_path = workdir / "server.log"
    key_file = workdir / "admin.key"
    http_port_file = workdir / "http.port"
    store_url = store_url or f"sqlite:///{workdir / 'ledger.db'}"
    command = [
        sys.executable, "-m", "ledger.entrypoints.cli", *global_args, "--store", store_url,
        "serve", "--listen", "127.0.0.1:0", "--port-file", str(port_file), "--admin-key-file", str(key_file),
        *(["--http-listen", "127.0.0.1:0", "--http-port-file", str(http_port_file)] if http else []), *extra_args,
    ]  # fmt: skip
    if not {"--sandbox", "--insecure-no-auth"} & set(extra_args):
        env = with_pepper(workdir, store_url, env)
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
        http_url = None
        if http:  # written before the gRPC port file
            scheme = "https" if credentials is not None else "http"
            http_url = f"{scheme}://127.0.0.1:{int(http_port_file.read_text())}"
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
                key_file.read_text().strip()
                if key_file.exists()
                else create_key(store_url, "*", "admin", "--name", "test harness", cwd=cwd, env=env)
            )
    except BaseException:
        stop_server(process)
        raise
    return RunningServer(target, process, log_path, store_url, api_key, credentials, http_url)


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
