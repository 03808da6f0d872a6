"""A serving process runs the cyclic garbage collector with raised thresholds, its start-up objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ledger.entrypoints.grpc.server import COLLECTOR_THRESHOLDS, serving_collector


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_thresholds_raised_and_the_previous_ones_returned(collector_restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    previous = serving_collector()
    assert previous == (700, 10, 10)
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert COLLECTOR_THRESHOLDS[0] >= 50 * 700  # a young collection every few commands is what this avoids
    assert gc.get_freeze_count() > 0


def test_what_exists_at_start_is_frozen(collector_restored: None) -> None:
    gc.unfreeze()
    kept = [object() for _ in range(10)]
    serving_collector()
    assert gc.get_freeze_count() >= len(kept)
