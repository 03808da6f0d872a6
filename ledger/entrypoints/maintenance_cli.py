"""``ledger verify``, ``rebuild-projections`` and ``migrate``: checking every member's hash chain and read models
against the log, rebuilding the read models, upgrading the PostgreSQL schema."""

from __future__ import annotations

import argparse
import json

from ledger.application.service import LedgerApp
from ledger.bootstrap import Settings, Wired, migrate_store, store_kind


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def run_migrate(settings: Settings) -> int:
    if store_kind(settings.store_url) != "postgresql":
        print("the embedded store migrates itself when opened; nothing to do")
        return 0
    applied, version = migrate_store(settings)
    print(json.dumps({"applied": applied, "schema_version": version}))
    return 0


def run_verify(app: LedgerApp, program: str | None, member: str | None) -> int:
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


def run_rebuild(wired: Wired, workers: int | None = None) -> int:
    """Rewrite every read model from the log (in ``workers`` processes; None: one per CPU) and print what was
    rebuilt."""
    from ledger.entrypoints.rebuild import rebuild_projections

    report = rebuild_projections(wired.app, wired.backend, workers)
    print(json.dumps(report))
    return 0
