"""Fixtures the unit tests share."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def far_ahead_host_clock() -> Iterator[None]:
    """The machine's own clock set to UTC+14, 26 hours ahead of a program at UTC-12."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
