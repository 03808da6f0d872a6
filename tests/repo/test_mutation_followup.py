"""scripts/mutation_followup.py reads later runs of some mutants against the full run's figures: a survivor
killed later counts as killed, a module run again whole takes the new outcomes, and ``--check`` fails while a
survivor has no equivalence note."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def followup() -> ModuleType:
    sys.path.insert(0, str(SCRIPTS))
    try:
        return importlib.import_module("mutation_followup")
    finally:
        sys.path.remove(str(SCRIPTS))


GRANT = "ledger.domain.decide.benefits.x_grant__mutmut_"
TIER = "policies.rules.tiers.x_tier_rank__mutmut_"


def _write(tmp: Path, *, notes: str = "") -> tuple[Path, Path, Path]:
    baseline = tmp / "baseline.tsv"
    baseline.write_text(
        "# header\n"
        "module\tledger/domain/decide/benefits.py\t10\t6\t3\t0\t0\t1\n"
        "module\tpolicies/rules/tiers.py\t4\t3\t1\t0\t0\t0\n"
        f"survivor\t{GRANT}1\nsurvivor\t{GRANT}2\nsurvivor\t{GRANT}3\nsurvivor\t{TIER}3\n"
    )
    notes_file = tmp / "notes.tsv"
    notes_file.write_text(notes)
    doc = tmp / "mutation.md"
    doc.write_text("# Mutation testing\n\nbefore\n")
    return baseline, notes_file, doc


def _meta(folder: Path, source: str, codes: dict[str, int | None]) -> Path:
    meta = folder / f"{source}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    return folder


def _run(
    followup: ModuleType, baseline: Path, notes: Path, doc: Path, *folders: Path, check: bool = True
) -> int:
    args = ["--baseline", str(baseline), "--notes", str(notes), "--doc", str(doc)]
    for f in folders:
        args += ["--mutants", str(f)]
    return int(followup.main(args + (["--check"] if check else [])))


def test_mutant_names_map_to_their_source_files(followup: ModuleType) -> None:
    assert followup.module_of(f"{GRANT}1") == "ledger/domain/decide/benefits.py"
    assert (
        followup.module_of("ledger.domain.decide.x_decide__mutmut_19") == "ledger/domain/decide/__init__.py"
    )
    assert followup.module_of("policies.rules.earning.xǁOrderLineǁ__post_init____mutmut_2") == (
        "policies/rules/earning.py"
    )


def test_survivors_killed_in_any_later_run_count_as_killed_and_the_rest_need_a_note(
    followup: ModuleType, tmp_path: Path
) -> None:
    baseline, notes, doc = _write(tmp_path, notes=f"{GRANT}3\tequivalent: a reason\n")
    first = _meta(
        tmp_path / "a",
        "ledger/domain/decide/benefits.py",
        {f"{GRANT}1": 1, f"{GRANT}2": 0, f"{GRANT}4": None},
    )
    second = _meta(tmp_path / "b", "ledger/domain/decide/benefits.py", {f"{GRANT}2": 1, f"{GRANT}1": 0})
    assert _run(followup, baseline, notes, doc, first, check=True) == 1  # GRANT 2 and the tier one are left
    text = doc.read_text()
    assert f"- `{GRANT}2`: open" in text and f"- `{TIER}3`: open" in text and f"`{GRANT}1`" not in text
    notes.write_text(f"{GRANT}3\tequivalent: a reason\n{TIER}3\tequivalent: another\n")
    assert _run(followup, baseline, notes, doc, first, second) == 0
    text = doc.read_text()
    assert text.startswith("# Mutation testing\n\nbefore\n\n" + followup.BEGIN)
    assert text.count(followup.BEGIN) == 1
    # benefits: 6 killed + 2 killed later, 1 equivalent, 1 not run: 8 / (10 - 1 - 1)
    assert (
        "| `ledger/domain/decide/benefits.py` | 10 | 8 | 0 | 1 | 1 | 100.0% | 88.9% | survivors again |"
        in text
    )
    assert "None." in text.partition("Survivors left")[2]


def test_a_module_run_again_whole_takes_the_new_outcomes(followup: ModuleType, tmp_path: Path) -> None:
    baseline, notes, doc = _write(tmp_path, notes=f"{TIER}3\tkilled by a test that no longer kills it\n")
    whole = _meta(
        tmp_path / "a",
        "policies/rules/tiers.py",
        {f"{TIER}1": 1, f"{TIER}2": 0, f"{TIER}3": 1, f"{TIER}4": 1},
    )
    assert _run(followup, baseline, notes, doc, whole, check=False) == 0
    text = doc.read_text()
    assert "| `policies/rules/tiers.py` | 4 | 3 | 1 | 0 | 0 | 75.0% | 75.0% | whole module again |" in text
    assert f"- `{TIER}2`: open" in text and f"`{TIER}3`" not in text.partition("Survivors left")[2]
    assert _run(followup, baseline, notes, doc, whole) == 1
