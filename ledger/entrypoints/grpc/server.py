"""The gRPC server: the ``loyalty.v1`` services, health checking and reflection, on plaintext or TLS.

``serve`` may run with worker processes (``ledger serve --processes N``): the process started by the user binds
the address first (so port 0 picks one port for all), then starts N-1 copies of itself as subprocesses that
bind the same port with ``SO_REUSEPORT``; the kernel spreads incoming connections (not calls) over the
listening processes. The port file is written once every process is SERVING. SIGTERM or SIGINT to the first
process stops the others gracefully too; a worker that dies is logged (``worker_exited``) and not restarted,
its share of new connections going to the processes left. A worker whose parent is gone stops by itself.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ledger.application.keys import KeyRing
from ledger.application.service import LedgerApp
from ledger.application.supervisor import Supervisor
from ledger.entrypoints.grpc.audit_service import AuditService
from ledger.entrypoints.grpc.gate import Gate
from ledger.entrypoints.grpc.import_service import ImportService
from ledger.entrypoints.grpc.key_service import KeyService
from ledger.entrypoints.grpc.ledger_service import LedgerService
from ledger.entrypoints.grpc.pipeline import LEDGER_METHODS, CallPipeline, Handler, Layer
from ledger.entrypoints.grpc.program_service import ProgramService
from ledger.entrypoints.grpc.query_service import MemberQueryService
from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    import_pb2,
    import_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    program_pb2,
    program_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)

log = structlog.get_logger("ledger.server")

SERVICE_NAMES: tuple[str, ...] = (
    program_pb2.DESCRIPTOR.services_by_name["ProgramService"].full_name,
    ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name,
    query_pb2.DESCRIPTOR.services_by_name["MemberQueryService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    import_pb2.DESCRIPTOR.services_by_name["ImportService"].full_name,
)
KEY_SERVICE_NAME: str = keys_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name

GRACE_SECONDS = 10.0
"""After SIGTERM, how long calls already accepted have to finish before they are cancelled."""

SHUTDOWN_SECONDS = GRACE_SECONDS + 10.0
"""The documented bound from SIGTERM to exit (plus ``drain_seconds``): the calls' grace, then the writer,
scheduler and feed stop."""

WORKER_START_SECONDS = 120.0

COLLECTOR_THRESHOLDS: tuple[int, int, int] = (50_000, 10, 10)
"""The cyclic garbage collector's thresholds while serving (Python's default is 700, 10, 10). A command allocates
thousands of short-lived objects that reference counting frees; at 700 the collector ran every few dozen commands
and each run walked the young objects and, every tenth, the writer's growing cache of member states (3-4% of
the server's CPU under load, in perf). At 50,000 it runs about a seventieth as often; what it would find (cyclic
garbage: the write path makes little) waits longer, a few MB at most."""

#: The health servicer of each built server, so shutdown can report NOT_SERVING first.
server_health: dict[grpc.Server, health.HealthServicer] = {}


class CallCounter(Layer):
    """Counts the ``loyalty.v1`` calls a server took (not health checks or reflection); one increment a call."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._last = 0

    @property
    def calls(self) -> int:
        return self._last

    def arrive(self, method: str) -> float | None:
        if method.startswith(LEDGER_METHODS):
            self._last = next(self._counter)  # next() is atomic under the GIL
        return None

    def wrap(self, method: str, handler: Handler) -> Handler:
        return handler


def serving_collector() -> tuple[int, int, int]:
    """Set the cyclic garbage collector up for serving: what exists now (modules, schemas, policies, the app: it
    lives as long as the process) frozen out of its generations, so the full collections that the writer's
    growing state cache triggers do not walk it again each time, and :data:`COLLECTOR_THRESHOLDS`. Returns the
    thresholds it replaced (``gc.set_threshold(*them)`` puts them back)."""
    gc.collect()
    gc.freeze()
    previous = gc.get_threshold()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    return previous


def build_server(
    app: LedgerApp,
    listen: str,
    max_workers: int = 64,
    *,
    reuse_port: bool = False,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
    keys: KeyRing | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """A server (not started) with every service registered, bound to ``listen``; returns it and the bound port.

    With ``keys``, the KeyService manages them; with ``credentials``, the port serves TLS only.

    ``reuse_port`` lets other processes bind the same port (``SO_REUSEPORT``, Linux); without it, binding a
    port another server holds fails, so two servers never share a port by accident (grpc core's default is on).
    """
    layers = list(interceptors)
    composed: list[grpc.ServerInterceptor[Any, Any]] = (
        [CallPipeline(layers)] if layers and all(isinstance(i, Layer) for i in layers) else list(layers)  # type: ignore[arg-type]
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=composed,
        options=[
            ("grpc.max_receive_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    program_pb2_grpc.add_ProgramServiceServicer_to_server(ProgramService(app), server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(LedgerService(app), server)
    query_pb2_grpc.add_MemberQueryServiceServicer_to_server(MemberQueryService(app), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditService(app), server)
    import_pb2_grpc.add_ImportServiceServicer_to_server(ImportService(app), server)
    names = SERVICE_NAMES
    if keys is not None:
        keys_pb2_grpc.add_KeyServiceServicer_to_server(KeyService(keys), server)
        names = (*SERVICE_NAMES, KEY_SERVICE_NAME)

    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server_health[server] = health_servicer

    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_secure_port(listen, credentials) if credentials else server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"could not listen on {listen}")
    return server, port


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    """Report every service SERVING or NOT_SERVING (a load balancer takes a NOT_SERVING process out)."""
    value = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *SERVICE_NAMES, KEY_SERVICE_NAME):
        health_servicer.set(name, value)


def watch_writer(app: LedgerApp, health_servicer: health.HealthServicer) -> bool:
    """Health follows the writer: once its thread has ended nothing more can be written, so every service is
    reported NOT_SERVING. Returns whether the writer is alive. (``serve`` runs a
    :class:`~ledger.application.supervisor.Supervisor`, which also restarts the writer and probes the store.)"""
    if app.writer.alive:
        return True
    set_serving(health_servicer, False)
    return False


def supervise(app: LedgerApp, server: grpc.Server) -> Supervisor:
    """Start the supervisor of ``app``'s writer and store, reporting on ``server``'s health service."""
    health_servicer = server_health[server]
    supervisor = Supervisor(
        app.writer, getattr(app.store, "probe", None), lambda serving: set_serving(health_servicer, serving)
    )
    supervisor.start()
    return supervisor


class SideListener(Protocol):
    """A listener beside the gRPC port that forwards its calls to the server on :attr:`grpc_target` (the HTTP
    gateway, :mod:`ledger.entrypoints.http.gateway`): started with the server, closed before its gate."""

    grpc_target: str

    def start(self) -> None: ...
    def close(self) -> None: ...
    def wait_idle(self, timeout: float) -> bool: ...
    def stop(self) -> None: ...


#: Builds a worker's command line from the address it binds and the file it writes its port to once SERVING.
WorkerCommand = Callable[[str, str], list[str]]
"""The command line of a worker, given the address it binds and its port file: never a secret in it (any user on
the host can read a process's command line); secrets go in the worker's environment (``worker_env``)."""


def serve(
    app: LedgerApp,
    listen: str,
    *,
    port_file: str | None = None,
    max_workers: int = 64,
    workers: int = 0,
    worker_command: WorkerCommand | None = None,
    worker_env: Mapping[str, str | None] | None = None,
    reuse_port: bool = False,
    parent_pid: int | None = None,
    authenticator: grpc.ServerInterceptor[Any, Any] | None = None,
    limits: grpc.ServerInterceptor[Any, Any] | None = None,
    keys: KeyRing | None = None,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
    drain_seconds: float = 0.0,
    http: SideListener | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking calls and finish those in flight (graceful shutdown).

    With ``workers`` > 0 (and ``worker_command``), start that many worker processes on the bound port and stop
    them with this one; each gets this process's environment with ``worker_env`` over it (None: the variable is
    removed). A worker is served with ``reuse_port`` and its ``parent_pid``: it stops when the parent
    is gone. ``keys`` and ``credentials`` are as in :func:`build_server`. ``interceptors`` run before the
    authenticator, the first outermost (the access log). ``drain_seconds``: after SIGTERM, health says
    NOT_SERVING while calls are still taken for this long, so load balancers stop sending new ones before the
    port closes. ``http``: the JSON-over-HTTP listener, whose calls reach this server on its own socket; on
    shutdown it stops accepting first, and the calls it forwarded finish like the others.
    """
    multi = workers > 0 or reuse_port
    counter = CallCounter() if multi else None
    gate = Gate()
    # limits read the key id the authenticator found
    chain = [*interceptors, gate, *(i for i in (authenticator, limits, counter) if i is not None)]
    server, port = build_server(
        app, listen, max_workers, reuse_port=multi, interceptors=chain, keys=keys, credentials=credentials
    )
    if http is not None and server.add_insecure_port(http.grpc_target) == 0:
        raise RuntimeError(f"could not listen on {http.grpc_target}")
    thresholds = serving_collector()
    server.start()
    supervisor = supervise(app, server)
    if http is not None:
        http.start()
    pid = os.getpid()
    log.info("serving", listen=listen, port=port, pid=pid, tls=credentials is not None)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: list[subprocess.Popen[bytes]] = []
    try:
        if workers > 0:
            if worker_command is None:
                raise ValueError("workers need a worker_command")
            children = _start_workers(
                workers, worker_command, f"{listen.rsplit(':', 1)[0]}:{port}", stopping, worker_env or {}
            )
        if port_file and not stopping.is_set():
            tmp = Path(f"{port_file}.tmp")
            tmp.write_text(str(port))
            tmp.replace(port_file)
        reported: set[int] = set()
        while not stopping.wait(0.5):
            for child in children:
                if child.pid not in reported and child.poll() is not None:
                    reported.add(child.pid)
                    log.error("worker_exited", worker_pid=child.pid, returncode=child.returncode)
            if parent_pid is not None and os.getppid() != parent_pid:
                log.error("parent_exited", parent_pid=parent_pid)
                break
        log.info("stopping", grace_seconds=GRACE_SECONDS, drain_seconds=drain_seconds, pid=pid)
        supervisor.stop()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        health_servicer = server_health.pop(server, None)
        if health_servicer is not None:
            health_servicer.enter_graceful_shutdown()
        if drain_seconds > 0:
            time.sleep(drain_seconds)  # NOT_SERVING yet still serving: balancers move new calls elsewhere first
        # New calls get a clean UNAVAILABLE; those inside finish. Only then grpc stops, with nothing in flight
        # (its stop would kill calls not yet handed to a handler: CANCELLED, with no way to tell what happened).
        closed_at = time.monotonic()
        if http is not None:
            http.close()  # no new HTTP connections; the HTTP calls in flight are inside the gate, finishing
        gate.close()
        if not gate.wait_idle(GRACE_SECONDS):
            log.warning("calls_outlasted_grace", calls=gate.inside, grace_seconds=GRACE_SECONDS, pid=pid)
        if http is not None:
            if not http.wait_idle(max(0.0, GRACE_SECONDS - (time.monotonic() - closed_at))):
                log.warning("http_calls_outlasted_grace", grace_seconds=GRACE_SECONDS, pid=pid)
            http.stop()
        server.stop(max(0.0, GRACE_SECONDS - (time.monotonic() - closed_at))).wait()
        _stop_workers(children)  # the workers' last lines come before this one's
        log.info("stopped", pid=pid, **({"calls": counter.calls} if counter is not None else {}))
    finally:
        _stop_workers(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        gc.set_threshold(*thresholds)


def _start_workers(
    count: int, command: WorkerCommand, listen: str, stopping: threading.Event, env: Mapping[str, str | None]
) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` workers binding ``listen``; return once each has written its port file (is SERVING)."""
    environment = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    children: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="ledger-workers-") as tmp:
        files = [Path(tmp) / f"worker-{n}.port" for n in range(count)]
        try:
            for f in files:  # stdout and stderr are inherited: the workers log where this process logs
                children.append(subprocess.Popen(command(listen, str(f)), stdin=subprocess.DEVNULL, env=environment))
            deadline = time.monotonic() + WORKER_START_SECONDS
            while not all(f.exists() for f in files):
                for child in children:
                    if child.poll() is not None:
                        raise RuntimeError(f"worker {child.pid} exited with {child.returncode} while starting")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers not SERVING after {WORKER_START_SECONDS:.0f} s")
                if stopping.wait(0.05):
                    break
        except BaseException:
            _stop_workers(children)
            raise
    log.info("workers_serving", listen=listen, workers=[c.pid for c in children])
    return children


def _stop_workers(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each live worker, wait for their graceful shutdown, kill those that outlast it."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker_killed", worker_pid=child.pid)
            child.kill()
            child.wait()
