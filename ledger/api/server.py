"""The gRPC server: the four ``loyalty.v1`` services, health checking and reflection."""

from __future__ import annotations

import signal
import threading
from concurrent import futures
from pathlib import Path
from types import FrameType

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ledger.api.servicers import AuditService, LedgerService, MemberQueryService, ProgramService
from ledger.application.service import LedgerApp
from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
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
)

GRACE_SECONDS = 10.0

#: The health servicer of each built server, so shutdown can report NOT_SERVING first.
server_health: dict[grpc.Server, health.HealthServicer] = {}


def build_server(app: LedgerApp, listen: str, max_workers: int = 64) -> tuple[grpc.Server, int]:
    """A server (not started) with every service registered, bound to ``listen``; returns it and the bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ],
    )
    program_pb2_grpc.add_ProgramServiceServicer_to_server(ProgramService(app), server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(LedgerService(app), server)
    query_pb2_grpc.add_MemberQueryServiceServicer_to_server(MemberQueryService(app), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditService(app), server)

    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server_health[server] = health_servicer

    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"could not listen on {listen}")
    return server, port


def serve(app: LedgerApp, listen: str, *, port_file: str | None = None, max_workers: int = 64) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking calls and finish those in flight (graceful shutdown)."""
    server, port = build_server(app, listen, max_workers)
    server.start()
    log.info("serving", listen=listen, port=port)
    if port_file:
        tmp = Path(f"{port_file}.tmp")
        tmp.write_text(str(port))
        tmp.replace(port_file)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping.wait(0.5):
            pass
        log.info("stopping", grace_seconds=GRACE_SECONDS)
        health_servicer = server_health.pop(server, None)
        if health_servicer is not None:
            health_servicer.enter_graceful_shutdown()
        server.stop(GRACE_SECONDS).wait()
        log.info("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
