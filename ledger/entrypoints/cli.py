"""The ``ledger`` command: serve the gRPC API, replay (also as of a date) and verify members, the liability, rebuilds,
webhook subscriptions (``webhooks_cli.py``)."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import structlog

from ledger import settings as configuration
from ledger.application.service import LedgerApp
from ledger.bootstrap import (
    REFERENCE_PROGRAM_ID,
    Settings,
    Wired,
    admin_key_path,
    build,
    first_admin_key,
    migrate_store,
    store_kind,
)
from ledger.domain.errors import InvalidCommand, NotFound
from ledger.entrypoints import (
    config_cli,
    evidence_cli,
    export_cli,
    import_cli,
    journal_cli,
    keys_cli,
    log_output,
    webhooks_cli,
)
from ledger.entrypoints.grpc import rate_limit, tls

log = structlog.get_logger("ledger.cli")

DESCRIPTION = """\
An event-sourced points and benefits ledger for retail loyalty programs.

Every change to a member is an immutable event; balances, lots, tiers and entitlements are projections
rebuilt from the log. The store is chosen by --store or LEDGER_STORE (default sqlite:///var/ledger.db):
sqlite:///path for the embedded store, postgresql://user@host:port/db for the production store (any number
of `serve` replicas may share it), kurrentdb://host:2113?Tls=false for a log in KurrentDB with the read
models in $LEDGER_READ_MODELS (default sqlite:///var/read-models.db). Every setting is a LEDGER_* variable
(a flag wins over it; a secret may come from a file named by <NAME>_FILE), or a key of the TOML config file
named by --config or $LEDGER_CONFIG (store = "sqlite:///var/ledger.db"; below the variables and the secrets'
files, above the defaults): `ledger config` shows them all and where each came from.
"""

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


TIMES_HELP = """\
times: an ISO 8601 instant with its offset (2026-02-28T23:59:59+08:00, 2026-03-05T02:00:00Z), or a date alone
(2026-02-28), meaning the end of that day in the program's time zone. Neither may be after the program's clock.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ledger", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="event store URL: sqlite:///path or postgresql://... (default: $LEDGER_STORE)")
    p.add_argument("--config", metavar="FILE",
                   help="a TOML file of settings, keyed by their names (pool_size = 16); the environment and the"
                   " flags win over it (default: $LEDGER_CONFIG; unset: none)")
    sub = p.add_subparsers(dest="command", required=True)

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

    r = sub.add_parser("replay", help="print every event of one member with the balance after it",
                       description="Replay one member's stream from the log, one JSON line per event. With --as-of:"
                       " the events that count as of that business time (as known at --as-known-at, default now),"
                       " then one line with the balance, lots and tier then (see docs/finance.md).",
                       epilog=TIMES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("member_id")
    r.add_argument("--program", default=REFERENCE_PROGRAM_ID, help="program id (default little_sprout)")
    r.add_argument("--as-of", metavar="TIME", help="fold the log as of this business time")
    r.add_argument("--as-known-at", metavar="TIME", help="only the events recorded by then (default now)")

    li = sub.add_parser("liability", help="the program's points liability as of a date, in money",
                        description="Outstanding points of every member as of a business time, by state and expiry"
                        " month, valued at the program's redemption value, with breakage from the program's history"
                        " and, with --since, the movements of the period (see docs/finance.md).",
                        epilog=TIMES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    li.add_argument("--program", default=REFERENCE_PROGRAM_ID, help="program id (default little_sprout)")
    li.add_argument("--as-of", metavar="TIME", help="business time (default now)")
    li.add_argument("--as-known-at", metavar="TIME", help="only the events recorded by then (default now)")
    li.add_argument("--since", metavar="TIME", help="also the movements from this business time to --as-of")
    li.add_argument("--format", choices=("json", "csv"), default="json", help="json (default) or csv")

    v = sub.add_parser("verify", help="check every member's hash chain and projections; exit 1 on any finding",
                       description="Recompute every member (or one) from the log, compare with the projections and"
                       " check the tamper-evident hash chain. Names the member and position of any break. Without"
                       " --member, also checks every points-mall stock stream against the members' exchanges.")
    v.add_argument("--program", help="only this program (default: all)")
    v.add_argument("--member", help="only this member (needs --program)")

    b = sub.add_parser("rebuild-projections", help="rebuild every read model from the log",
                       description="Fold every member stream again and rewrite the read models.")
    b.add_argument("--program", help="only report on this program")
    b.add_argument("--workers", type=int, default=None, help="worker processes the fold runs in, members partitioned"
                   " over them (default: one per CPU; 0: in this process)")

    sub.add_parser("migrate", help="create or upgrade the PostgreSQL schema, then print its version",
                   description="Apply the store's missing schema migrations (in order, under a lock, each once)."
                   " `serve` does this too; run it alone before rolling out a new version.")

    journal_cli.add_parser(sub)
    evidence_cli.add_parsers(sub)
    keys_cli.add_parser(sub)
    export_cli.add_parser(sub)
    import_cli.add_parser(sub)
    webhooks_cli.add_parser(sub)
    config_cli.add_parser(sub)
    h = sub.add_parser("health", help="ask a running server's gRPC health service; exit 0 when SERVING")
    h.add_argument("--target",
                   help="host:port of the server (default: this host on the port of $LEDGER_LISTEN, else 127.0.0.1:50051)")
    h.add_argument("--tls-ca", metavar="PEM", help="connect with TLS, trusting this CA (a server run with --tls-cert)")
    h.add_argument("--tls-client-cert", metavar="PEM", help="with --tls-ca: the client certificate for mutual TLS")
    h.add_argument("--tls-client-key", metavar="PEM", help="the private key of --tls-client-cert")
    return p


def _local_target(settings: Settings) -> str:
    """Where ``health`` asks by default: the port ``serve`` listens on, on this host (a container's health check
    and its server then read the one setting, ``LEDGER_LISTEN``)."""
    return f"127.0.0.1:{settings.listen.rsplit(':', 1)[-1]}"


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (None: not given, the environment or the default decides)."""
    flags: dict[str, Any] = {"store": args.store}
    if args.command != "serve":
        return flags
    return flags | {
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "config":
        return config_cli.run(args, _flags(args))
    settings = configuration.load(_flags(args), args.config)
    log_output.configure(sys.stderr, fmt=settings.log_format, level=settings.log_level)
    if args.command == "health":
        return _health(args.target or _local_target(settings), args.tls_ca, args.tls_client_cert, args.tls_client_key)
    if args.command == "verify-bundle":
        return evidence_cli.run_verify(args)
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "serve":
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
        feed = None
        nats_url = settings.feed_nats.get_secret_value() if settings.feed_nats else None
        if nats_url:
            from ledger.bootstrap import feed_runner

            feed = feed_runner(wired, nats_url)
            feed.start()
        webhooks = None
        if settings.webhooks:
            from ledger.bootstrap import webhook_runner

            webhooks = webhook_runner(wired, metrics.watch_webhooks if metrics is not None else None)
            webhooks.start()
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

        try:
            serve(
                app, args.listen, port_file=args.port_file, max_workers=args.workers,
                workers=0 if args.worker_of is not None else processes - 1, worker_command=worker_command,
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
    wired = build(settings.without_reference_program())
    app = wired.app
    try:
        try:
            if args.command == "replay" and (args.as_of or args.as_known_at):
                return _replay_as_of(app, args)
            if args.command == "liability":
                return _liability(app, args)
            if args.command == "journal":
                return journal_cli.run(app, args)
            if args.command == "export-audit":
                return evidence_cli.run_export(app, args)
        except (InvalidCommand, NotFound) as exc:
            print(f"ledger: {exc}", file=sys.stderr)
            return 2
        if args.command == "replay":
            for e in app.replay(args.program, args.member_id):
                print(json.dumps({
                    "version": e.stored.version, "position": e.stored.position, "type": e.stored.type,
                    "occurred_at": e.stored.occurred_at.isoformat(), "recorded_at": e.stored.recorded_at.isoformat(),
                    "policy_version": e.stored.policy_version, "active": e.after.active, "pending": e.after.pending,
                    "held": e.after.held, "arrears": e.after.arrears, "hash": e.stored.hash.hex(),
                    "payload": json.loads(e.stored.payload),
                }, ensure_ascii=False))
            return 0
        if args.command == "keys":
            return keys_cli.run(args, wired.keys, lambda d: app.clock.now() + d)
        if args.command == "export-member":
            return export_cli.run(args, app)
        if args.command == "import":
            return import_cli.run(args, app)
        if args.command == "webhooks":
            from ledger.bootstrap import webhook_store

            return webhooks_cli.run(args, webhook_store(wired.backend), app.store, app.clock.now())
        if args.command == "verify":
            return _verify(app, args.program, args.member)
        if args.command == "rebuild-projections":
            from ledger.entrypoints.rebuild import rebuild_projections

            report = rebuild_projections(app, wired.backend, args.workers)
            print(json.dumps(report))
            return 0
    finally:
        app.close()
    return 2


def _time(app: LedgerApp, program_id: str, value: str | None, option: str) -> datetime | None:
    """An option's time: an instant with its offset, or a date alone (the end of that day in the program's zone)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day + timedelta(days=1), time(), app.time_zone(program_id))
            return start.astimezone(UTC) - timedelta(microseconds=1)
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"ledger: {option}: not an ISO 8601 date or instant: {value!r}") from None
    if at.tzinfo is None:
        raise SystemExit(f"ledger: {option}: give the offset (e.g. +08:00 or Z): {value!r}")
    return at.astimezone(UTC)


def _replay_as_of(app: LedgerApp, args: argparse.Namespace) -> int:
    from ledger.application.as_of import fold_member, resolve_times
    from ledger.domain.queries import balance_figures, current_tier, lot_status

    program = args.program
    times = resolve_times(app, program, _time(app, program, args.as_of, "--as-of"),
                          _time(app, program, args.as_known_at, "--as-known-at"))  # fmt: skip
    folded = fold_member(app, program, args.member_id, times)
    for c in folded.events:
        print(json.dumps({"event_id": c.event_id or None, "type": c.event.type, "counted_at": c.counted_at.isoformat(),
                          "payload": c.event.model_dump(mode="json")}, ensure_ascii=False))  # fmt: skip
    state = folded.state
    f = balance_figures(state, times.as_of)
    policy = app.program(program).policies.in_force_at(times.as_of).policy if state.enrolled else None
    print(json.dumps({
        "as_of": times.as_of.isoformat(), "as_known_at": times.as_known_at.isoformat(), "enrolled": state.enrolled,
        "balance": {"active": f.active, "pending": f.pending, "held": f.held, "available": f.available,
                    "arrears": f.arrears},
        "tier": current_tier(state, policy, times.as_of) if policy else None,
        "lots": [{"lot_id": lot.lot_id, "source": lot.source, "amount": lot.amount, "remaining": lot.remaining,
                  "held": lot.held, "status": lot_status(lot), "active_at": lot.active_at.isoformat(),
                  "expires_at": lot.expires_at.isoformat()}
                 for lot in sorted(state.lots.values(), key=lambda lot: lot.order_key())],
        "entitlements": sorted(state.entitlements),
    }, ensure_ascii=False))  # fmt: skip
    return 0


def _liability(app: LedgerApp, args: argparse.Namespace) -> int:
    from ledger.application.liability import program_liability, report_document, report_lines

    program = args.program
    report = program_liability(
        app, program, _time(app, program, args.as_of, "--as-of"), _time(app, program, args.as_known_at, "--as-known-at"),
        _time(app, program, args.since, "--since"),
    )  # fmt: skip
    if args.format == "json":
        print(json.dumps(report_document(report), ensure_ascii=False))
        return 0
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["program_id", "as_of", "as_known_at", "section", "name", "points", "value_fen"])
    for section, name, points, fen in report_lines(report):
        out.writerow([program, report.as_of.isoformat(), report.as_known_at.isoformat(), section, name, points, fen])
    ratio = report.closing.breakage
    out.writerow([program, report.as_of.isoformat(), report.as_known_at.isoformat(), "breakage", "ratio",
                  f"{ratio.numerator}/{ratio.denominator}", ratio.numerator * 10_000 // ratio.denominator])  # fmt: skip
    return 0


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


def _migrate(settings: Settings) -> int:
    if store_kind(settings.store_url) != "postgresql":
        print("the embedded store migrates itself when opened; nothing to do")
        return 0
    applied, version = migrate_store(settings)
    print(json.dumps({"applied": applied, "schema_version": version}))
    return 0


def _verify(app: LedgerApp, program: str | None, member: str | None) -> int:
    programs = [program] if program else app.program_ids()
    bad = 0
    total = 0
    for pid in programs:
        reports = [app.verify_member(pid, member)] if member else app.verify_program(pid)
        for r in reports:
            total += 1
            if not r.ok:
                bad += 1
                where = (
                    f"version {r.chain_break.version} position {r.chain_break.position}: {r.chain_break.reason}"
                    if r.chain_break
                    else "; ".join(r.mismatches)
                )
                print(f"FAIL program={pid} member={r.member_id} {where}")
    stocks = bad_stocks = 0
    if not member:
        from ledger.application.mall import verify_stock

        for pid in programs:
            for s in verify_stock(app, pid):
                stocks += 1
                if not s.ok:
                    bad_stocks += 1
                    print(f"FAIL program={pid} stock={s.stream_id} {'; '.join(s.problems)}")
    print(f"verified {total} members: {total - bad} ok, {bad} failed")
    if stocks:
        print(f"verified {stocks} stock streams: {stocks - bad_stocks} ok, {bad_stocks} failed")
    return 1 if bad or bad_stocks else 0


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


if __name__ == "__main__":
    raise SystemExit(main())
