"""Fixtures for the policy tests: the reference program and an editable copy of its document."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies import Policy, little_sprout

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def policy() -> Policy:
    return little_sprout()


@pytest.fixture
def document() -> dict[str, Any]:
    """Little Sprout's document as plain data, a fresh copy for each test to change."""
    return little_sprout().model_dump(mode="json")


@pytest.fixture
def sh() -> Any:
    """``sh(2026, 3, 15, 23, 30)``: a wall-clock time in Asia/Shanghai."""

    def make(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
        return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)

    return make
