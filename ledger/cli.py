"""The ``ledger`` command: serve the gRPC API, replay and verify members, rebuild the projections."""

from __future__ import annotations

import argparse
import json
import sys

import structlog

from ledger.application.service import LedgerApp
from ledger.bootstrap import REFERENCE_PROGRAM_ID, Settings, build_app, sqlite_path

DESCRIPTION = """\
An event-sourced points and benefits ledger for retail loyalty programs.

Every change to a member is an immutable event; balances, lots, tiers and entitlements are projections
rebuilt from the log. The store is chosen by --store or LEDGER_STORE (default sqlite:///var/ledger.db).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ledger", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="event store URL, e.g. sqlite:///var/ledger.db (default: $LEDGER_STORE)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve the gRPC API (health checking and reflection on)",
                       description="Serve the gRPC API with the reference program 'little_sprout' loaded.")
    s.add_argument("--listen", default="127.0.0.1:50051", help="host:port to listen on (port 0 picks a free one)")
    s.add_argument("--port-file", help="write the bound port to this file once listening")
    s.add_argument("--workers", type=int, default=64, help="gRPC worker threads (default 64)")
    s.add_argument("--no-reference-program", action="store_true", help="do not create the reference program")

    r = sub.add_parser("replay", help="print every event of one member with the balance after it",
                       description="Replay one member's stream from the log, one JSON line per event.")
    r.add_argument("member_id")
    r.add_argument("--program", default=REFERENCE_PROGRAM_ID, help="program id (default little_sprout)")

    v = sub.add_parser("verify", help="check every member's hash chain and projections; exit 1 on any finding",
                       description="Recompute every member (or one) from the log, compare with the projections and"
                       " check the tamper-evident hash chain. Names the member and position of any break.")
    v.add_argument("--program", help="only this program (default: all)")
    v.add_argument("--member", help="only this member (needs --program)")

    b = sub.add_parser("rebuild-projections", help="rebuild every read model from the log",
                       description="Fold every member stream again and rewrite the read models.")
    b.add_argument("--program", help="only report on this program")

    h = sub.add_parser("health", help="ask a running server's gRPC health service; exit 0 when SERVING")
    h.add_argument("--target", default="127.0.0.1:50051")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if args.command == "health":
        return _health(args.target)
    settings = Settings.from_env(args.store)
    if args.command == "serve":
        from ledger.api.server import serve

        if args.no_reference_program:
            settings = Settings(settings.store_url, settings.pepper, settings.synchronous, reference_program=False)
        from ledger.application.scheduler import Scheduler

        app = build_app(settings)
        scheduler = Scheduler(app)
        scheduler.start()
        try:
            serve(app, args.listen, port_file=args.port_file, max_workers=args.workers)
        finally:
            scheduler.stop()
            app.close()
        return 0
    app = build_app(Settings(settings.store_url, settings.pepper, settings.synchronous, reference_program=False))
    try:
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
        if args.command == "verify":
            return _verify(app, args.program, args.member)
        if args.command == "rebuild-projections":
            from ledger.rebuild import rebuild_projections

            report = rebuild_projections(app, sqlite_path(settings.store_url))
            print(json.dumps(report))
            return 0
    finally:
        app.close()
    return 2


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
    print(f"verified {total} members: {total - bad} ok, {bad} failed")
    return 1 if bad else 0


def _health(target: str) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}")
            return 1
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    raise SystemExit(main())
