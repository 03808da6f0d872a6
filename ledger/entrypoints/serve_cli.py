"""``ledger serve``: its options, and serving the gRPC API with everything beside it (the key check, metrics,
the scheduler, the feed, webhooks, JSON over HTTP, the worker processes of ``--processes N``)."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Callable
from typing import Any

import structlog

from ledger import settings as configuration
from ledger.bootstrap import Settings, Wired, admin_key_path, build, first_admin_key
from ledger.entrypoints.grpc import rate_limit, tls

log = structlog.get_logger("ledger.cli")

SERVE_LIMITS = """\
limits (environment; beyond them a call is refused at once, see docs/errors.md):
  LEDGER_WRITE_QUEUE=1000          requests waiting for the writer; one more: RESOURCE_EXHAUSTED (WRITE_QUEUE_FULL)
  LEDGER_CALL_TIMEOUT=30           seconds a call may take at most (a client's shorter deadline wins):
                                   DEADLINE_EXCEEDED after it; a write still queued then is dropped
  LEDGER_MAX_STREAMS_PER_KEY=4     ReplayMember/VerifyProgram streams open at once per API key
  LEDGER_MAX_STREAMS=16            streams open at once in one process (keep it well below --workers)
  LEDGER_MAX_WORKER_WAIT=2         seconds a call may wait for a free worker; one more: RESOURCE_EXHAUSTED
                                   (SERVER_BUSY), nothing done
identity pepper: a durable store needs a secret one (LEDGER_IDENTITY_PEPPER or LEDGER_IDENTITY_PEPPER_FILE);
the public default is refused unless --sandbox (LEDGER_SANDBOX=1) says the store is a throwaway one.
health: SERVING while the writer runs and the store answers its probe; NOT_SERVING (and writes answered
UNAVAILABLE at once) while the store does not answer or the writer is being restarted.
traces: set OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/gRPC, needs the extra otel) for a span per call; OTEL_SERVICE_NAME
defaults to loyalty-ledger. Unset: no traces. See docs/operations.md, Traces.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("serve", help="serve the gRPC API (health checking and reflection on)",
                       description="Serve the gRPC API with the reference program 'little_sprout' loaded.",
                       epilog=SERVE_LIMITS, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--listen",
                   help="host:port to listen on (port 0 picks a free one; default: $LEDGER_LISTEN, else 127.0.0.1:50051)")
    s.add_argument("--port-file", help="write the bound port to this file once listening")
    s.add_argument("--workers", type=int, default=64, help="gRPC worker threads (default 64)")
    s.add_argument("--no-reference-program", action="store_true", help="do not create the reference program")
    s.add_argument("--processes", metavar="N",
                   help="server processes sharing the port (SO_REUSEPORT) and the store, to use more than one core"
                   " (default: $LEDGER_PROCESSES, else 1; 'auto': one per CPU); SIGTERM to this process stops them all")
    s.add_argument("--insecure-no-auth", action="store_true",
                   help="serve without authentication: anyone reaching the port may do anything (local tests only;"
                   " implies --sandbox)")
    s.add_argument("--sandbox", action="store_true", default=None,
                   help="a throwaway store: allow the public development identity pepper, with a warning in the log"
                   " ($LEDGER_SANDBOX=1). Without it `serve` refuses that pepper on any store but memory://")
    s.add_argument("--reflection", action="store_true",
                   help="serve reflection to callers without a key (by default only authenticated callers get it)")
    s.add_argument("--admin-key-file", metavar="PATH",
                   help="where a fresh store's first admin key is written (default: admin.key beside a SQLite "
                        "store; required on a fresh PostgreSQL store; $LEDGER_ADMIN_KEY_FILE)")
    s.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="serve Prometheus metrics over HTTP at HOST:PORT/metrics (default: $LEDGER_METRICS_LISTEN;"
                   " unset: none). With --processes N, process k (0 the first) serves its own on PORT+k. See docs/operations.md")
    s.add_argument("--drain-seconds", metavar="S",
                   help="on SIGTERM, answer health checks NOT_SERVING but keep taking calls for S seconds before"
                   " closing the port and finishing the calls in flight (default: $LEDGER_SHUTDOWN_DRAIN_SECONDS, else 0)")
    s.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)  # set on the processes `--processes` starts
    s.add_argument("--feed-nats", metavar="URL",
                   help="publish every event and lifecycle signal to NATS JetStream at URL, e.g."
                   " nats://127.0.0.1:4222 (default: $LEDGER_FEED_NATS; unset: no feed). See proto/loyalty/v1/FEED.md")
    s.add_argument("--http-listen", metavar="HOST:PORT",
                   help="also serve the API as JSON over HTTP (the Connect protocol: POST /loyalty.v1.<Service>/<Method>,"
                   " GET /healthz) at HOST:PORT, with the same keys, errors and limits, and TLS when the gRPC port has"
                   " it (default: $LEDGER_HTTP_LISTEN; unset: none). Unary calls only; with --processes N the first"
                   " process serves it. See docs/http.md")
    s.add_argument("--http-cors-origins", metavar="ORIGINS",
                   help="comma-separated origins whose web pages may call the HTTP API, e.g."
                   " https://mall.example.com ('*': any; default: $LEDGER_HTTP_CORS_ORIGINS, else none)")
    s.add_argument("--http-port-file", metavar="F", help="write the bound HTTP port to this file once listening")
    s.add_argument("--webhooks", action="store_true", default=None,
                   help="deliver the webhook subscriptions (`ledger webhooks`) from this server; with replicas, one"
                   " delivers at a time (default: $LEDGER_WEBHOOKS). See docs/webhooks.md")
    tls.add_arguments(s)
    rate_limit.add_arguments(s)


def flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``serve``'s own options give (None: not given, the environment or the default decides)."""
    return {
        "listen": args.listen, "shutdown_drain_seconds": args.drain_seconds, "metrics_listen": args.metrics_listen,
        "feed_nats": args.feed_nats, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca, "admin_key_file": args.admin_key_file,
        "rate_limit": None if args.rate_limit is None else str(args.rate_limit),
        "failed_auth_limit": None if args.failed_auth_limit is None else str(args.failed_auth_limit),
        "processes": None if args.processes is None else _processes(args.processes),
        "reference_program": False if args.no_reference_program else None,
        "sandbox": True if args.sandbox or args.insecure_no_auth else None,
        "http_listen": args.http_listen, "http_cors_origins": args.http_cors_origins,
        "webhooks": args.webhooks,
    }  # fmt: skip


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until stopped (SIGTERM, or the parent of a worker gone); every part started is stopped after."""
    from ledger.application.scheduler import Scheduler
    from ledger.entrypoints.grpc.access import AccessLog
    from ledger.entrypoints.grpc.limits import CallLimits
    from ledger.entrypoints.grpc.server import serve
    from ledger.entrypoints.traces import start as start_traces

    traces = start_traces(os.environ)  # before anything starts: without the extra it exits here
    _check_pepper(settings, args.worker_of is None)
    _settings_into(args, settings)
    processes = settings.processes
    wired = build(settings)
    app = wired.app
    if traces is not None:
        app.writer.on_wait = traces.layer.writer_wait
    if args.worker_of is None:
        _same_pepper(wired)
    tls_settings = tls.from_arguments(args)
    authenticator = _authenticator(wired, args)
    metrics_listen = settings.metrics_listen if args.worker_of is None else args.metrics_listen
    metrics = _metrics(wired, metrics_listen)
    scheduler = Scheduler(app, lease=wired.backend.lease("scheduler"))
    scheduler.start()
    feed = _feed(wired, settings)
    webhooks = _webhooks(wired, settings, metrics)
    try:
        serve(
            app, args.listen, port_file=args.port_file, max_workers=args.workers,
            workers=0 if args.worker_of is not None else processes - 1,
            worker_command=_worker_command(args, settings, metrics_listen),
            worker_env=_worker_secrets(settings),
            reuse_port=args.worker_of is not None, parent_pid=args.worker_of, authenticator=authenticator,
            limits=CallLimits(call_timeout=settings.call_timeout, max_streams=settings.max_streams,
                              max_streams_per_key=settings.max_streams_per_key,
                              max_worker_wait=settings.max_worker_wait),
            keys=wired.keys, credentials=tls.server_credentials(tls_settings) if tls_settings else None,
            interceptors=[*([traces.layer] if traces else []), AccessLog(metrics)],
            drain_seconds=args.drain_seconds, http=_http(settings, args, tls_settings),
        )  # fmt: skip
    finally:
        if traces is not None:
            traces.stop()  # the spans still in the batch go out
        if metrics is not None:
            metrics.stop()
        if feed is not None:
            feed.stop()
        if webhooks is not None:
            webhooks.stop()
        scheduler.stop()
        app.close()
    return 0


def _feed(wired: Wired, settings: Settings) -> Any:
    """The event feed to NATS (``--feed-nats``), started; None when not asked for."""
    nats_url = settings.feed_nats.get_secret_value() if settings.feed_nats else None
    if not nats_url:
        return None
    from ledger.bootstrap import feed_runner

    feed = feed_runner(wired, nats_url)
    feed.start()
    return feed


def _webhooks(wired: Wired, settings: Settings, metrics: Any) -> Any:
    """The webhook deliveries (``--webhooks``), started; None when not asked for."""
    if not settings.webhooks:
        return None
    from ledger.bootstrap import webhook_runner

    webhooks = webhook_runner(wired, metrics.watch_webhooks if metrics is not None else None)
    webhooks.start()
    return webhooks


def _worker_command(
    args: argparse.Namespace, settings: Settings, metrics_listen: str | None
) -> Callable[[str, str], list[str]]:
    """How the first process of ``--processes N`` starts each other one: the same options, as resolved."""
    processes = settings.processes
    worker_numbers = itertools.count(1)
    config_file = configuration.config_path(args.config)  # the workers read the same file (not a secret)
    worker_config = ["--config", os.path.abspath(config_file)] if config_file else []

    def worker_command(listen: str, port_file: str) -> list[str]:
        return [
            sys.executable, "-m", "ledger.entrypoints.cli", *worker_config, "serve", "--listen", listen,
            "--port-file", port_file, "--workers", str(args.workers), "--processes", str(processes),
            "--no-reference-program", "--worker-of", str(os.getpid()), "--drain-seconds", str(args.drain_seconds),
            *(["--webhooks"] if settings.webhooks else []),
            *(["--sandbox"] if settings.sandbox else []),
            *(["--metrics-listen", _worker_metrics(metrics_listen, next(worker_numbers))] if metrics_listen else []),
            *(["--insecure-no-auth"] if args.insecure_no_auth else []),
            *(["--reflection"] if args.reflection else []),
            *tls.worker_arguments(args), *rate_limit.worker_arguments(args),
        ]  # fmt: skip

    return worker_command


def _check_pepper(settings: Settings, first: bool) -> None:
    """Refuse the public development pepper outside a sandbox; in one, say loudly that it is in use."""
    refusal = configuration.dev_pepper_refusal(settings)
    if refusal is not None:
        raise SystemExit(f"ledger serve: {refusal}")
    if settings.dev_pepper and first:
        log.warning(
            "development_pepper",
            message="THE IDENTITY PEPPER IS THE PUBLIC DEVELOPMENT DEFAULT: identity digests in this store can be "
            "linked to card numbers and phones by anyone. Sandbox use only; a real store needs LEDGER_IDENTITY_PEPPER.",
        )


def _same_pepper(wired: Wired) -> None:
    """Record the pepper's fingerprint on a new store; refuse to serve an existing one with another pepper."""
    from ledger.application.pepper import PepperChanged, check_pepper

    try:
        if check_pepper(wired.backend.store, wired.settings.pepper, wired.app.clock.now()):
            log.info("identity_pepper_recorded", message="the identity pepper's fingerprint is now kept in the store")
    except PepperChanged as exc:
        wired.app.close()
        raise SystemExit(f"ledger serve: {exc}") from None


def _settings_into(args: argparse.Namespace, settings: Settings) -> None:
    """The serve options the other modules read from ``args`` (TLS, rate limits), as the settings resolved them."""
    args.listen = settings.listen
    args.drain_seconds = settings.shutdown_drain_seconds
    args.admin_key_file = str(settings.admin_key_file) if settings.admin_key_file else None
    args.tls_cert = str(settings.tls_cert) if settings.tls_cert else None
    args.tls_key = str(settings.tls_key) if settings.tls_key else None
    args.tls_client_ca = str(settings.tls_client_ca) if settings.tls_client_ca else None
    args.rate_limit = rate_limit.parse_limit(settings.rate_limit)
    args.failed_auth_limit = rate_limit.parse_limit(settings.failed_auth_limit)


def _authenticator(wired: Wired, args: argparse.Namespace) -> Any:
    """The key check every call passes, or None with ``--insecure-no-auth`` (said loudly in the log)."""
    if args.insecure_no_auth:
        log.warning(
            "authentication_off",
            message="--insecure-no-auth: ANYONE WHO REACHES THIS PORT CAN CREATE PROGRAMS, ADD POINTS AND READ "
            "EVERY MEMBER. Use it for local tests only.",
        )
        return None
    from ledger.entrypoints.grpc.auth import Authenticator

    if args.worker_of is None:
        written = first_admin_key(wired, admin_key_path(wired.settings, args.admin_key_file))
        if written is not None:
            log.info("admin_key_created", path=str(written), message="the first admin key was written to this file (mode 0600)")
    return Authenticator(
        wired.keys, public_reflection=args.reflection, limits=rate_limit.from_arguments(args),
        store_from_cn=args.tls_store_from_cn,
    )  # fmt: skip


def _metrics(wired: Wired, listen: str | None) -> Any:
    """The process's Prometheus metrics, served on ``listen`` (``--metrics-listen``); None when not asked for."""
    if not listen:
        return None
    from ledger.entrypoints.metrics import Metrics

    metrics = Metrics()
    metrics.watch_writer(wired.app.writer)
    metrics.serve(listen)
    return metrics


def _http(settings: Settings, args: argparse.Namespace, tls_settings: tls.TlsSettings | None) -> Any:
    """The JSON-over-HTTP listener (``--http-listen``), bound now; None when not asked for, and in a worker of
    ``--processes N`` (the first process serves it)."""
    if not settings.http_listen or args.worker_of is not None:
        return None
    from ledger.entrypoints.http.gateway import HttpGateway, HttpSettings

    return HttpGateway(HttpSettings(
        settings.http_listen, settings.cors_origins, settings.call_timeout, tls_settings, args.http_port_file,
        max_connections=settings.http_max_connections, read_seconds=settings.http_read_seconds,
    ))  # fmt: skip


def _worker_metrics(listen: str, number: int) -> str:
    """Where worker ``number`` of ``--processes N`` serves its metrics: the next port up (port 0: any free one)."""
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + number if port.isdigit() and int(port) else 0}"


def _worker_secrets(settings: Settings) -> dict[str, str | None]:
    """What the processes of ``--processes N`` are told in their environment rather than on their command line
    (which every user of the host can read): the store's URL and the NATS URL, either of which may hold a
    password, in place of any ``*_FILE`` the first process read them from."""
    nats = settings.feed_nats.get_secret_value() if settings.feed_nats else None
    return {
        "LEDGER_STORE": settings.store_url, "LEDGER_STORE_FILE": None,
        "LEDGER_FEED_NATS": nats, "LEDGER_FEED_NATS_FILE": None,
    }  # fmt: skip


def _processes(value: str) -> int | str:
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        n = 0
    return n if n >= 1 else value  # the settings model names the flag and what is wrong
