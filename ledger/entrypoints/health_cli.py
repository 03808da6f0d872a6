"""``ledger health``: ask a running server's gRPC health service (a container's health check); exit 0 when SERVING."""

from __future__ import annotations

import argparse

from ledger.bootstrap import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    h = sub.add_parser("health", help="ask a running server's gRPC health service; exit 0 when SERVING")
    h.add_argument("--target",
                   help="host:port of the server (default: this host on the port of $LEDGER_LISTEN, else 127.0.0.1:50051)")
    h.add_argument("--tls-ca", metavar="PEM", help="connect with TLS, trusting this CA (a server run with --tls-cert)")
    h.add_argument("--tls-client-cert", metavar="PEM", help="with --tls-ca: the client certificate for mutual TLS")
    h.add_argument("--tls-client-key", metavar="PEM", help="the private key of --tls-client-cert")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Ask the server ``--target`` names (default: this host, on the port ``serve`` listens on)."""
    return _health(args.target or _local_target(settings), args.tls_ca, args.tls_client_cert, args.tls_client_key)


def _local_target(settings: Settings) -> str:
    """Where ``health`` asks by default: the port ``serve`` listens on, on this host (a container's health check
    and its server then read the one setting, ``LEDGER_LISTEN``)."""
    return f"127.0.0.1:{settings.listen.rsplit(':', 1)[-1]}"


def _health(target: str, ca: str | None = None, cert: str | None = None, key: str | None = None) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from clients.python.loyalty_client import keyed_channel, tls_credentials

    credentials = tls_credentials(ca, cert, key) if ca else None
    with keyed_channel(target, None, credentials=credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}")
            return 1
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
