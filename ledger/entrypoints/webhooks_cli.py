"""``ledger webhooks add | list | remove | pause | resume | rotate-secret | dead-letters | replay``: webhook
subscriptions.

``add`` prints the subscription as JSON and then its signing secret, alone on the last line of standard output,
once (scripts capture it with ``tail -n 1``); with ``--secret-file`` the secret is read from that file instead and
not printed. The secret is kept in the store (the deliverer signs with it) and is shown by no other command but
``rotate-secret``, which prints the new one the same way; while ``--overlap`` lasts, deliveries carry a second
signature made with the old one, so the receiver can switch without refusing any.
A new subscription starts at the end of the log (``--from-start``: every event the log holds). Deliveries are
made by ``ledger serve`` with ``--webhooks`` (``LEDGER_WEBHOOKS=1``). See docs/webhooks.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ledger.application.ports import WebhookStore
from ledger.application.webhooks import (
    EVENT_TYPES,
    SubscriptionRefused,
    check_secret,
    new_secret,
    new_subscription,
)
from ledger.eventlog.port import EventStore

EPILOG = "event types: '*' (all), or a comma-separated list of:\n" + textwrap.fill(
    ", ".join(sorted(EVENT_TYPES)), width=100, initial_indent="  ", subsequent_indent="  "
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("webhooks", help="add, list, pause and remove webhook subscriptions; dead letters and replays",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ws = w.add_subparsers(dest="webhooks_command", required=True)
    a = ws.add_parser("add", help="subscribe a URL to a program's events; prints the secret once, on the last line",
                      epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    a.add_argument("--program", required=True, help="the program whose events are delivered")
    a.add_argument("--url", required=True, help="https:// URL the events are POSTed to")
    a.add_argument(
        "--events",
        required=True,
        help="'*' or comma-separated event types, e.g. PurchaseRecorded,TierChanged",
    )
    a.add_argument("--secret-file", metavar="PATH",
                   help="read the signing secret from PATH (24 to 256 printable characters) instead of generating one")  # fmt: skip
    start = a.add_mutually_exclusive_group()
    start.add_argument(
        "--from-start", action="store_true", help="deliver every event the log holds, oldest first"
    )
    start.add_argument(
        "--from-position", type=int, metavar="N", help="deliver the events after log position N"
    )
    a.add_argument("--allow-http-loopback", action="store_true",
                   help="allow http://127.0.0.1 (or localhost) for tests; `serve` sends there only with --sandbox")  # fmt: skip
    ls = ws.add_parser("list", help="every subscription as JSON lines (never a secret)")
    ls.add_argument("--program", help="only this program's")
    for name, text in (("remove", "delete a subscription and its dead letters"),
                       ("pause", "stop delivering to a subscription (its checkpoint stays)"),
                       ("resume", "deliver again from where the subscription stopped")):  # fmt: skip
        ws.add_parser(name, help=text).add_argument("subscription_id")
    rs = ws.add_parser("rotate-secret", help="a new signing secret (printed once, on the last line); deliveries carry"
                       " a signature with the old one too for --overlap")  # fmt: skip
    rs.add_argument("subscription_id")
    rs.add_argument(
        "--secret-file", metavar="PATH", help="read the new secret from PATH instead of generating one"
    )
    rs.add_argument("--overlap", type=duration, default=timedelta(hours=24), metavar="DURATION",
                    help="how long the old secret signs too, e.g. 24h (the default), 30m, 0s: not at all")  # fmt: skip
    d = ws.add_parser("dead-letters", help="a subscription's dead letters as JSON lines, in log order")
    d.add_argument("subscription_id")
    d.add_argument("--status", choices=("dead", "replaying", "delivered", "all"), default="dead",
                   help="which (default: dead, the ones waiting for an operator)")  # fmt: skip
    r = ws.add_parser(
        "replay", help="deliver dead letters again (all of the subscription's, or --letter ones)"
    )
    r.add_argument("subscription_id")
    r.add_argument(
        "--letter", type=int, action="append", metavar="ID", help="only this dead letter (repeatable)"
    )


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    """``24h``, ``30m``, ``7d``, ``0s``: one number and one unit."""
    found = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration such as 24h, 30m, 0s")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def log_end(store: EventStore[Any], page: int = 5000) -> int:
    """The position of the last event in the log (0: empty); reads the log once."""
    end = 0
    while events := store.read_all(after_position=end, limit=page):
        end = events[-1].position
    return end


def _secret_from(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise SubscriptionRefused(
            f"--secret-file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def run(args: argparse.Namespace, webhooks: WebhookStore, log: EventStore[Any], now: datetime) -> int:
    command = args.webhooks_command
    try:
        if command == "add":
            start = (
                0
                if args.from_start
                else args.from_position
                if args.from_position is not None
                else log_end(log)
            )
            given = _secret_from(args.secret_file) if args.secret_file else None
            subscription = new_subscription(
                args.program, args.url, args.events.split(","), existing=len(webhooks.listed(args.program)),
                position=start, now=now, secret=given, allow_loopback_http=args.allow_http_loopback,
            )  # fmt: skip
            webhooks.add(subscription)
            print(json.dumps(subscription.public()))
            if given is None:
                print(subscription.secret)
            return 0
        if command == "list":
            for s in webhooks.listed(args.program):
                print(json.dumps(s.public()))
            return 0
        if command == "remove":
            return _found(webhooks.remove(args.subscription_id), args.subscription_id, "removed")
        if command in ("pause", "resume"):
            changed = webhooks.set_enabled(args.subscription_id, command == "resume")
            return _found(changed, args.subscription_id, "paused" if command == "pause" else "resumed")
        if command == "rotate-secret":
            _exists(webhooks, args.subscription_id)
            given = _secret_from(args.secret_file) if args.secret_file else None
            secret = new_secret() if given is None else check_secret(given)
            until = now + args.overlap
            webhooks.rotate_secret(args.subscription_id, secret, until)
            print(
                json.dumps(
                    {"subscription_id": args.subscription_id, "previous_secret_until": until.isoformat()}
                )
            )
            if given is None:
                print(secret)
            return 0
        if command == "dead-letters":
            _exists(webhooks, args.subscription_id)
            status = None if args.status == "all" else args.status
            for letter in webhooks.dead_letters(args.subscription_id, status):
                print(json.dumps(letter.public()))
            return 0
        if command == "replay":
            _exists(webhooks, args.subscription_id)
            count = webhooks.request_replay(args.subscription_id, args.letter)
            print(json.dumps({"subscription_id": args.subscription_id, "replaying": count}))
            return 0
    except SubscriptionRefused as exc:
        print(f"ledger webhooks {command}: {exc}", file=sys.stderr)
        return 2
    return 2


def _exists(webhooks: WebhookStore, subscription_id: str) -> None:
    if webhooks.get(subscription_id) is None:
        raise SubscriptionRefused(f"no subscription {subscription_id!r}")


def _found(done: bool, subscription_id: str, what: str) -> int:
    if not done:
        raise SubscriptionRefused(f"no subscription {subscription_id!r}")
    print(json.dumps({"subscription_id": subscription_id, what: True}))
    return 0
