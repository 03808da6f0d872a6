"""The ``ledger`` command: its options and the dispatch to each subcommand's module (``serve_cli.py``,
``history_cli.py`` for replay and liability, ``maintenance_cli.py`` for verify, rebuild-projections and migrate,
``health_cli.py``, ``keys_cli.py``, ``webhooks_cli.py``, ``config_cli.py`` and the others)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ledger import settings as configuration
from ledger.bootstrap import build
from ledger.domain.errors import InvalidCommand, NotFound
from ledger.entrypoints import (
    config_cli,
    evidence_cli,
    export_cli,
    health_cli,
    history_cli,
    import_cli,
    journal_cli,
    keys_cli,
    log_output,
    maintenance_cli,
    serve_cli,
    webhooks_cli,
)

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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ledger", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="event store URL: sqlite:///path or postgresql://... (default: $LEDGER_STORE)")
    p.add_argument("--config", metavar="FILE",
                   help="a TOML file of settings, keyed by their names (pool_size = 16); the environment and the"
                   " flags win over it (default: $LEDGER_CONFIG; unset: none)")
    sub = p.add_subparsers(dest="command", required=True)
    serve_cli.add_parser(sub)
    history_cli.add_parsers(sub)
    maintenance_cli.add_parsers(sub)
    journal_cli.add_parser(sub)
    evidence_cli.add_parsers(sub)
    keys_cli.add_parser(sub)
    export_cli.add_parser(sub)
    import_cli.add_parser(sub)
    webhooks_cli.add_parser(sub)
    config_cli.add_parser(sub)
    health_cli.add_parser(sub)
    return p


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (None: not given, the environment or the default decides)."""
    flags: dict[str, Any] = {"store": args.store}
    if args.command != "serve":
        return flags
    return flags | serve_cli.flags(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "config":
        return config_cli.run(args, _flags(args))
    settings = configuration.load(_flags(args), args.config)
    log_output.configure(sys.stderr, fmt=settings.log_format, level=settings.log_level)
    if args.command == "health":
        return health_cli.run(args, settings)
    if args.command == "verify-bundle":
        return evidence_cli.run_verify(args)
    if args.command == "migrate":
        return maintenance_cli.run_migrate(settings)
    if args.command == "serve":
        return serve_cli.run(args, settings)
    wired = build(settings.without_reference_program())
    app = wired.app
    try:
        try:
            if args.command == "replay" and (args.as_of or args.as_known_at):
                return history_cli.run_replay_as_of(app, args)
            if args.command == "liability":
                return history_cli.run_liability(app, args)
            if args.command == "journal":
                return journal_cli.run(app, args)
            if args.command == "export-audit":
                return evidence_cli.run_export(app, args)
        except (InvalidCommand, NotFound) as exc:
            print(f"ledger: {exc}", file=sys.stderr)
            return 2
        if args.command == "replay":
            return history_cli.run_replay(app, args)
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
            return maintenance_cli.run_verify(app, args.program, args.member)
        if args.command == "rebuild-projections":
            return maintenance_cli.run_rebuild(wired, args.workers)
    finally:
        app.close()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
