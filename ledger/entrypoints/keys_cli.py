"""``ledger keys create | list | revoke``: API keys on the command line.

``create`` prints the key's public record as JSON and then the secret, alone on the last line of standard
output, once: scripts capture it with ``tail -n 1``. Only a slow hash of it is kept.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from ledger.application.keys import ROLES, KeyRefused, KeyRing

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``3600s``, ``2w`` (one number and one unit)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration such as 90d, 12h, 30m")
    return timedelta(**{_UNIT[found.group(2)]: int(found.group(1))})


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("keys", help="create, list and revoke API keys", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ks = k.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="issue a key; its secret is printed once, alone on the last line")
    c.add_argument("--program", required=True, help="the program the key acts on ('*': every program, admin only)")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--store", dest="store_id", default="", metavar="STORE",
                   help="pos and checkout keys: the only store the key may act for")
    c.add_argument("--name", default="", help="a label shown by `ledger keys list`")
    c.add_argument("--expires-in", type=duration, metavar="DURATION", help="e.g. 90d, 12h (default: never)")
    ks.add_parser("list", help="every key as JSON lines (never a secret)")
    r = ks.add_parser("revoke", help="revoke a key: refused on every server within seconds")
    r.add_argument("key_id")


def run(args: argparse.Namespace, keys: KeyRing, now_plus: Callable[[timedelta], datetime]) -> int:
    try:
        if args.keys_command == "create":
            expires_at = now_plus(args.expires_in) if args.expires_in else None
            key, token = keys.issue(
                args.program, args.role, store_id=args.store_id, name=args.name, expires_at=expires_at
            )
            print(json.dumps(key.public()))
            print(token)
            return 0
        if args.keys_command == "list":
            for key in keys.listed():
                print(json.dumps(key.public()))
            return 0
        if args.keys_command == "revoke":
            print(json.dumps(keys.revoke(args.key_id).public()))
            return 0
    except KeyRefused as exc:
        raise SystemExit(f"ledger keys {args.keys_command}: {exc}") from exc
    return 2
