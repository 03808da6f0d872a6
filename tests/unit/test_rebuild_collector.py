"""``ledger rebuild-projections`` pauses Python's cyclic garbage collector and leaves it as it found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.entrypoints.rebuild import cyclic_gc_paused, rebuild_projections

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.parametrize("enabled", [True, False])
def test_paused_inside_and_as_it_was_after(enabled: bool, collector_restored: None) -> None:
    gc.enable() if enabled else gc.disable()
    with cyclic_gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled() is enabled
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        raise RuntimeError("a failed rebuild")
    assert gc.isenabled() is enabled


def test_the_rebuild_runs_with_the_collector_paused(tmp_path: Path, collector_restored: None) -> None:
    w: Wired = build(
        Settings(store_url=f"sqlite:///{tmp_path}/ledger.db", reference_program=False), ManualClock(START)
    )
    w.app.create_program("p", "P", reference_document(), "test", START, "create")
    w.app.enroll("p", "m1", [], None, "enroll-m1")
    seen: list[bool] = []
    real = w.backend.rebuild

    def rebuild(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args)

    gc.enable()
    try:
        report = rebuild_projections(w.app, replace(w.backend, rebuild=rebuild))
    finally:
        w.app.close()
    assert report["members"] == 1
    assert seen == [False]
    assert gc.isenabled()
