"""A fault for the server under test: asking for program ``faulty`` fails with an unexpected error (INTERNAL).

Put this folder first on the server's ``PYTHONPATH``; Python imports ``sitecustomize`` at start-up.
"""

from __future__ import annotations

from typing import Any

from ledger.application.service import LedgerApp

FAULTY_PROGRAM = "faulty"
_program = LedgerApp.program


def _failing_program(self: LedgerApp, program_id: str) -> Any:
    if program_id == FAULTY_PROGRAM:
        raise RuntimeError("injected fault: the program directory is broken")
    return _program(self, program_id)


LedgerApp.program = _failing_program  # type: ignore[method-assign]
