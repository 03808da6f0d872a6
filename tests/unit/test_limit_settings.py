"""The limits on load are read from the environment, with their documented defaults; a bad value stops the start."""

from __future__ import annotations

import pytest

from ledger.entrypoints.grpc.limits import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_STREAMS_PER_KEY,
    DEFAULT_MAX_WORKER_WAIT,
)
from ledger.settings import Settings

VARIABLES = (
    "LEDGER_WRITE_QUEUE", "LEDGER_CALL_TIMEOUT", "LEDGER_MAX_STREAMS", "LEDGER_MAX_STREAMS_PER_KEY",
    "LEDGER_MAX_WORKER_WAIT",
)  # fmt: skip


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env("memory://")
    assert (s.write_queue, s.call_timeout, s.max_streams, s.max_streams_per_key, s.max_worker_wait) == (
        1_000, 30.0, 16, 4, 2.0
    )
    assert (DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_STREAMS, DEFAULT_MAX_STREAMS_PER_KEY, DEFAULT_MAX_WORKER_WAIT) == (
        30.0, 16, 4, 2.0
    )


def test_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in zip(VARIABLES, ("50", "2.5", "8", "2", "0.5"), strict=True):
        monkeypatch.setenv(name, value)
    s = Settings.from_env("memory://")
    assert (s.write_queue, s.call_timeout, s.max_streams, s.max_streams_per_key, s.max_worker_wait) == (
        50, 2.5, 8, 2, 0.5
    )


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
def test_a_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LEDGER_WRITE_QUEUE", value)
    with pytest.raises(SystemExit, match="LEDGER_WRITE_QUEUE"):
        Settings.from_env("memory://")
