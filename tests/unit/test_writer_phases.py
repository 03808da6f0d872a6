"""The writer's phases of a group (for traces), as plain numbers: recorded only while the ``on_wait`` hook is set,
told once per group to what the hook entered as, in order (decide, then the append; the projection after the
commit on ``memory://``, which shares no transaction with the read models); a read the writer answers has no
append."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

import pytest

from ledger.application import group_commit
from ledger.application import writer as writer_module
from ledger.application.clock import ManualClock
from ledger.application.writer import GroupPhases, PhaseSink
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "phases"


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
    w.app.create_program(P, "Phases", reference_document(), "test", START, "create")
    w.app.enroll(P, "m1", [], None, "e1")
    try:
        yield w
    finally:
        w.app.close()


def _purchase(w: Wired, key: str) -> None:
    line = OrderLine("l1", "SKU-TOY", "toys", 1, 100_00)
    w.app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", f"O-{key}", (line,), 100_00), key))


def test_with_the_hook_unset_the_writer_records_no_phases(
    wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> GroupPhases:
        raise AssertionError("phases recorded with traces off")

    monkeypatch.setattr(group_commit, "GroupPhases", refuse)
    assert wired.app.writer.on_wait is None
    _purchase(wired, "b1")  # a group that recorded its phases would fail here (group_failed)


def test_the_phases_of_a_write_and_of_a_read_are_told_in_order(wired: Wired) -> None:
    told: list[GroupPhases] = []

    def on_wait(requests: int, queued: int) -> AbstractContextManager[PhaseSink | None]:
        @contextmanager
        def waiting() -> Iterator[PhaseSink]:
            yield told.append

        return waiting()

    wired.app.writer.on_wait = on_wait
    _purchase(wired, "b1")
    (write,) = told
    assert (write.commands, write.attempt, write.projected_in_append) == (1, 1, False)
    assert write.append is not None and write.project is not None
    assert write.decide[0] <= write.decide[1] <= write.append[0] <= write.append[1]
    assert write.append[1] <= write.project[0] <= write.project[1]  # memory://: projected after the commit

    told.clear()
    _purchase(wired, "b1")  # the retry: its first answer, nothing written
    (retry,) = told
    assert retry.append is None and retry.project is None

    told.clear()
    wired.app.writer.execute(writer_module.Peek(P, "m1"))
    (read,) = told
    assert read.append is None and read.project is None and read.decide[0] <= read.decide[1]
