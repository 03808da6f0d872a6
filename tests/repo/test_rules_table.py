"""docs/rules.md names, for every rule of the reference program, the tests that pin it: each named test must
exist, so that renaming or deleting one leaves the table red instead of quietly pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "rules.md"

# The table's abbreviations (defined in the text under each table).
PLACES = {
    "R": "tests/unit/rules",
    "P": "tests/unit/policies",
    "D": "tests/unit/domain",
    "H": "tests/unit/test_handlers.py",
    "M": "tests/model/test_model_counterexamples.py",
    "U": "tests/unit/test_mall.py",
    "V": "tests/unit/test_mall_verify.py",
    "E": "tests/e2e",
    "I": "tests/integration",
    "HU": "tests/unit/test_household.py",
    "HR": "tests/unit/rules/test_rules_household.py",
    "HD": "tests/unit/domain/test_household_decision.py",
    "HE": "tests/e2e/test_household.py",
    "HI": "tests/integration/test_household_seats.py",
}
ROW = re.compile(r"^\| *([A-Z]*\d+) *\|[^|]*\|([^|]*)\|", re.M)


def _file(token: str) -> Path:
    head, sep, rest = token.partition("/")
    if head in PLACES:
        place = Path(PLACES[head])
        if not sep:
            return ROOT / place
        return ROOT / (place.parent if place.suffix == ".py" else place) / rest
    return ROOT / token


def cited() -> list[tuple[str, Path, str]]:
    """(row, test file, test name) for every test the table names."""
    out = []
    for row, pinned in ROW.findall(RULES.read_text(encoding="utf-8")):
        for group in pinned.split(";"):
            current: Path | None = None
            for part in (p.strip().strip("`") for p in group.split(",")):
                where, sep, name = part.partition("::")
                if not sep:
                    continue
                if where:
                    current = _file(where)
                assert current is not None, f"rule {row}: {part!r} names no file"
                out.append((row, current, name.split("::")[-1].split("[")[0].strip()))
    return out


def test_every_test_the_rules_table_names_exists() -> None:
    tests = cited()
    assert len(tests) > 150, "the table's rows were not read"
    sources: dict[Path, str] = {}
    missing = []
    for row, path, name in tests:
        if path not in sources:
            sources[path] = path.read_text(encoding="utf-8") if path.is_file() else ""
        if not re.search(rf"^\s*(async )?def {re.escape(name)}\(", sources[path], re.M):
            missing.append(f"rule {row}: {path.relative_to(ROOT)}::{name}")
    assert not missing, "docs/rules.md names tests that do not exist:\n" + "\n".join(missing)


def test_no_rule_is_left_open() -> None:
    rows = [line for line in RULES.read_text(encoding="utf-8").splitlines() if ROW.match(line)]
    assert rows and not [line for line in rows if "**open**" in line]
