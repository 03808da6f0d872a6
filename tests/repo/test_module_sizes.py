"""No module of the ledger's code grows past :data:`LIMIT` lines, except the few still listed in :data:`TOO_BIG`.

The code is ``ledger/``, ``projections/``, ``policies/`` and the Python client ``clients/python/``; the generated
``loyalty/`` package is not. :data:`TOO_BIG` is the honest list of the modules still over the limit, each with its
line count today: one that grows fails, and so does an entry whose module is gone or back under the limit (take
it off the list then).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LIMIT = 420
"""The most lines a module may have (about 400, with some room for a docstring or an import more)."""

CODE = ("ledger", "projections", "policies", "clients/python")
"""The folders whose modules are counted."""

TOO_BIG: dict[str, int] = {}
"""Module (path from the repository root) -> its line count today. Lower a count when a module shrinks."""


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def modules() -> dict[str, int]:
    """Every counted module and its line count."""
    found: dict[str, int] = {}
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "loyalty" in relative.parts or "__pycache__" in relative.parts:
                continue
            found[relative.as_posix()] = line_count(path)
    return found


def test_the_counted_folders_hold_the_code() -> None:
    found = modules()
    assert "ledger/bootstrap.py" in found and "clients/python/loyalty_client.py" in found
    assert len(found) > 100


def test_no_module_is_over_the_limit_unless_listed() -> None:
    over = {name: lines for name, lines in modules().items() if lines > LIMIT and name not in TOO_BIG}
    assert over == {}, f"modules over {LIMIT} lines: split them by what they are about ({over})"


def test_a_listed_module_does_not_grow() -> None:
    found = modules()
    grown = {
        name: (found[name], allowed) for name, allowed in TOO_BIG.items() if found.get(name, 0) > allowed
    }
    assert grown == {}, f"listed modules grew past their count (now, listed): {grown}"


def test_every_listed_module_is_still_over_the_limit() -> None:
    found = modules()
    stale = sorted(name for name in TOO_BIG if found.get(name, 0) <= LIMIT)
    assert stale == [], f"no longer over {LIMIT} lines (or gone): take them off TOO_BIG: {stale}"
