"""The feed inside ``ledger serve``: one background thread that relays the log and raises lifecycle signals.

It works only while this replica holds the ``feed`` lease (on PostgreSQL an advisory lock; the embedded store
always holds it), so one replica publishes at a time and another takes over when the holder dies. The relay
resumes from its checkpoint, so a take-over republishes at most the last unacknowledged batch, which JetStream
drops as duplicates by message id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from ledger.feed.relay import FeedRelay

log = structlog.get_logger("ledger.feed")


class Lease(Protocol):
    def try_acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def close(self) -> None: ...


class FeedRunner:
    def __init__(
        self,
        relay: FeedRelay,
        lease: Lease,
        *,
        scan: Callable[[], int] | None = None,
        scan_every_seconds: float = 60.0,
        idle_wait_seconds: float = 0.5,
        error_wait_seconds: float = 5.0,
    ) -> None:
        self._relay = relay
        self._lease = lease
        self._scan = scan
        self._scan_every = scan_every_seconds
        self._idle_wait = idle_wait_seconds
        self._error_wait = error_wait_seconds
        self._next_scan = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ledger-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self._lease.close()

    def step(self) -> int:
        """One round while holding the lease: raise signals if a scan is due, then relay one batch."""
        if self._scan is not None and time.monotonic() >= self._next_scan:
            raised = self._scan()
            self._next_scan = time.monotonic() + self._scan_every
            if raised:
                log.info("lifecycle_signals_raised", count=raised)
        return self._relay.run_once()

    def _holds_lease(self) -> bool:
        try:
            return self._lease.held() or self._lease.try_acquire()
        except Exception as exc:  # the database is away: try again later
            log.warning("feed_lease_unavailable", error=repr(exc))
            return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._holds_lease():
                self._stop.wait(self._idle_wait)
                continue
            try:
                passed = self.step()
            except Exception as exc:  # NATS away, say: the checkpoint stays, the next round retries
                log.warning("feed_round_failed", error=repr(exc))
                self._stop.wait(self._error_wait)
                continue
            if passed == 0:
                self._stop.wait(self._idle_wait)
