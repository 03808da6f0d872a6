"""``ledger config``: the effective settings and where each comes from; ``--check`` validates them.

Every setting is printed with its variable, its value and its source (``default``, ``config file (PATH)`` for
a key of the ``--config`` / ``LEDGER_CONFIG`` file, ``file`` for a ``LEDGER_<NAME>_FILE`` secret,
``environment``, ``flag``; the later ones win), as JSON or as ``KEY=value`` lines. A secret's value is never
printed, nor any part of it: it shows as ``**********`` whatever its source, the config file included.
``--check`` prints nothing but the problems and exits 1 on any (a bad value, a secret given twice, an unknown key
in the config file, a config file holding a secret that group or others may read, the development pepper that
``ledger serve`` would refuse), 0 otherwise: a container's start script can run it first.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretBytes, SecretStr

from ledger import settings as configuration

HIDDEN = "**********"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("config", help="print the effective settings and their sources; --check validates them",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    c.add_argument("--format", choices=("json", "env"), default="json",
                   help="json (default: one object per setting) or env (KEY=value lines, the source in a comment)")  # fmt: skip
    c.add_argument("--check", action="store_true", help="only validate: print the problems, exit 1 on any")
    c.add_argument(
        "--sandbox", action="store_true", default=None, help="check as `ledger serve --sandbox` would"
    )


def run(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    flags = {**flags, "sandbox": args.sandbox}
    try:
        settings = configuration.load(flags, args.config)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    refusal = configuration.dev_pepper_refusal(settings)
    if args.check:
        if refusal is not None:
            print(f"ledger config: {refusal}", file=sys.stderr)
            return 1
        return 0
    rows = described(settings, configuration.sources(flags, args.config))
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for name, row in rows.items():
            value = "" if row["value"] is None else str(row["value"])
            print(f"{name}={shlex.quote(value) if value else ''}  # {row['source']}")
    if refusal is not None:
        print(f"ledger config: warning: {refusal}", file=sys.stderr)
    return 0


def described(settings: configuration.Settings, sources: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Each setting by its variable: the value (secrets hidden), its source and its description."""
    out: dict[str, dict[str, Any]] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, SecretStr | SecretBytes) or name in configuration.SECRET_FIELDS:
            shown: Any = None if value is None else HIDDEN
        elif isinstance(value, Path):
            shown = str(value)
        else:
            shown = value
        out[configuration.env_name(name)] = {
            "value": shown,
            "source": sources[name],
            "description": field.description,
        }
    return out
