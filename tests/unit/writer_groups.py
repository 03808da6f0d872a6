"""A test helper that has the writer decide several requests as one group (retries and races within a group)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ledger.application import command_staging
from ledger.bootstrap import Wired
from ledger.domain import commands as cmd


def in_one_group(
    w: Wired, monkeypatch: pytest.MonkeyPatch, requests: list[cmd.Envelope], program_id: str, blocker: str
) -> list[Any]:
    """Decide ``requests`` as one group of the writer: it is held inside a first command (a one-point credit to
    the enrolled member ``blocker``) until they all queue. Results (or exceptions) in order."""
    entered, go = threading.Event(), threading.Event()
    real_decide = command_staging.decide  # type: ignore[attr-defined]

    def decide(command: Any, state: Any, ctx: Any) -> Any:
        if isinstance(command, cmd.AdjustPoints) and command.reason_code == "WAIT":
            entered.set()
            assert go.wait(30)
        return real_decide(command, state, ctx)

    monkeypatch.setattr(command_staging, "decide", decide)
    hold = cmd.Envelope(program_id, cmd.AdjustPoints(blocker, 1, "WAIT", "n", "op1"), f"wait-{blocker}")
    holder = threading.Thread(target=w.app.execute, args=(hold,))
    holder.start()
    assert entered.wait(30)
    results: list[Any] = []
    submitter = threading.Thread(target=lambda: results.extend(w.app.writer.execute_many(requests)))
    submitter.start()
    while w.app.writer._queue.qsize() < len(requests):
        pass
    go.set()
    holder.join(30)
    submitter.join(30)
    return results
