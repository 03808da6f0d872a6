#!/usr/bin/env python3
"""A sampled mutation run for CI: mutants of the central rule functions, chosen by a fixed seed.

The sample is drawn from the mutants mutmut makes of the functions in ``KEY_FUNCTIONS`` (the arithmetic of
earning, multipliers, lot expiry, redemption caps, refunds, tiers, lot order and take-back). Those mutants are
run against the unit tests (``mutmut run`` with their names, one worker); the script fails if any of them
survives, unless ``scripts/mutation_notes.tsv`` marks it as equivalent.

    python scripts/mutation_sample.py [--count N] [--seed S] [--list]

mutmut works in ``mutants/`` (the same folder ``make mutation`` uses).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from mutation_report import MUTANTS, equivalents, load_notes  # noqa: E402

# (source file, function) pairs; a method is "Class.method".
KEY_FUNCTIONS: tuple[tuple[str, str], ...] = (
    ("policies/rules/earning.py", "earn_line"),
    ("policies/rules/earning.py", "earn_order"),
    ("policies/rules/earning.py", "line_rate"),
    ("policies/rules/multipliers.py", "applicable_multipliers"),
    ("policies/rules/multipliers.py", "campaign_applies"),
    ("policies/rules/multipliers.py", "combine_multipliers"),
    ("policies/rules/lots.py", "activation_time"),
    ("policies/rules/lots.py", "lot_expiry"),
    ("policies/rules/lots.py", "relot_expiry"),
    ("policies/rules/redemption.py", "redemption_share"),
    ("policies/rules/redemption.py", "redemption_cap_points"),
    ("policies/rules/refunds.py", "refund_takeback"),
    ("policies/rules/refunds.py", "redeemed_return"),
    ("policies/rules/behaviours.py", "behaviour_award"),
    ("policies/rules/tiers.py", "qualifies"),
    ("policies/rules/tiers.py", "qualifying_tier"),
    ("policies/rules/tiers.py", "purchased_recently"),
    ("ledger/domain/decide/lots.py", "take"),
    ("ledger/domain/decide/lots.py", "repaid"),
    ("ledger/domain/decide/lots_due.py", "run_due"),
    ("ledger/domain/decide/refunds.py", "refund"),
    ("ledger/domain/decide/holds.py", "hold"),
    ("ledger/domain/decide/holds.py", "commit"),
)
DEFAULT_COUNT = 60
DEFAULT_SEED = 20260618


def key_mutants() -> list[str]:
    """Every mutant name mutmut gives the key functions, in a stable order."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    wanted: dict[str, set[str]] = {}
    for path, function in KEY_FUNCTIONS:
        wanted.setdefault(path, set()).add(function)
    names: list[str] = []
    for path, functions in sorted(wanted.items()):
        source = (ROOT / path).read_text(encoding="utf-8")
        mutated = mutate_file_contents(path, source)
        for method in mutated.mutant_names:
            if _function_of(method) in functions:
                names.append(get_mutant_name(Path(path), method))
    return sorted(set(names))


def _function_of(mangled: str) -> str:
    """``x_earn_line__mutmut_3`` -> ``earn_line``; ``xǁLotǁorder_key__mutmut_1`` -> ``Lot.order_key``."""
    body = mangled.rpartition("__mutmut_")[0]
    if body.startswith("xǁ"):
        cls, _, method = body[2:].partition("ǁ")
        return f"{cls}.{method}"
    return body.removeprefix("x_")


def results(names: list[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for meta in MUTANTS.rglob("*.py.meta"):
        codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
        for name in names:
            if name in codes:
                out[name] = codes[name]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"mutants to run (default {DEFAULT_COUNT})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"sampling seed (default {DEFAULT_SEED})")
    parser.add_argument("--list", action="store_true", help="print the sample and stop")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    population = key_mutants()
    sample = sorted(random.Random(args.seed).sample(population, min(args.count, len(population))))
    if args.list:
        print("\n".join(sample))
        return 0
    print(f"mutation sample: {len(sample)} of the {len(population)} mutants of {len(KEY_FUNCTIONS)} key functions")
    start = time.monotonic()
    mutmut = Path(sys.executable).with_name("mutmut")
    run = subprocess.run([str(mutmut), "run", "--max-children", "1", *sample], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.monotonic() - start
    found = results(sample)
    equivalent = equivalents(load_notes())
    killed_codes = {1, 3, 24, -24, 36, 37, 152, 255, -9, -11}
    bad = [n for n in sample if found.get(n) not in killed_codes and n not in equivalent]
    killed = sum(1 for n in sample if found.get(n) in killed_codes)
    print(f"mutation sample: {killed} killed, {len(sample) - killed - len(bad)} equivalent, {len(bad)} survived, "
          f"in {elapsed:.0f} s")
    if run.returncode != 0 and (not found or all(found.get(n) is None for n in sample)):
        # no mutant was run: the unmutated tests failed in mutants/ (see the output), not the tests' strength
        print(run.stdout[-4000:])
        print(f"mutation sample: mutmut failed with exit code {run.returncode}", file=sys.stderr)
        return 2
    for name in bad:
        print(f"SURVIVED ({found.get(name)}): {name}   (see: .venv/bin/mutmut show {name})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
