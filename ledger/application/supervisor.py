"""Keeps the write path serving and says when it cannot: restarts a writer thread that died, probes the store.

A :class:`Supervisor` runs one thread that, every ``interval`` seconds:

* restarts the writer if its thread died (it never should: every failure of a command or a group is answered;
  only something like an interpreter-level error ends it). Cached states are dropped, so the new thread folds
  every member from the log again; the callers of the group it was deciding were answered UNAVAILABLE. Restarts
  back off (``interval`` doubling up to ``MAX_RESTART_DELAY``) while the writer keeps dying.
* reads the store's probe (``store.probe()``, run on a prober thread of its own so that a probe that hangs is a
  failed probe too, after ``probe_timeout``). While the store is unreachable the writer refuses new requests at
  once and answers waiting ones with UNAVAILABLE (:attr:`CommandWriter.store_down`), instead of letting them wait
  out their deadline; when a probe succeeds again, writes go through again.

``on_change(serving)`` is called with False when the writer is down or the store unreachable, and with True
when both are back (the gRPC server turns it into its health status).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from ledger.application.writer import CommandWriter, StoreUnavailable

log = structlog.get_logger("ledger.supervisor")

MAX_RESTART_DELAY = 5.0


class Supervisor:
    def __init__(
        self,
        writer: CommandWriter,
        probe: Callable[[], None] | None,
        on_change: Callable[[bool], None],
        *,
        interval: float = 0.2,
        probe_timeout: float = 2.0,
    ) -> None:
        self._writer = writer
        self._probe = probe
        self._on_change = on_change
        self._interval = interval
        self._probe_timeout = probe_timeout
        self._stop = threading.Event()
        self.serving = True
        self.store_ok = True
        self._probed: tuple[bool, float] = (True, time.monotonic())
        self._restart_at: float | None = None
        self._restart_delay = interval
        self._restarted_at = float("-inf")
        self._thread = threading.Thread(target=self._loop, name="ledger-supervisor", daemon=True)
        self._prober = threading.Thread(target=self._probe_loop, name="ledger-store-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if self._probe is not None:
            self._prober.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in (self._thread, self._prober):
            if thread.is_alive():
                thread.join(timeout=self._probe_timeout + 1)

    # -- one check ------------------------------------------------------------------------------------------

    def check(self) -> bool:
        """Look once at the writer and the store; act and report. Returns whether the ledger can serve."""
        writer_ok = self._check_writer()
        store_ok = self._check_store()
        serving = writer_ok and store_ok
        if serving != self.serving:
            self.serving = serving
            log.warning("serving" if serving else "not_serving", writer_alive=writer_ok, store_reachable=store_ok)
            self._on_change(serving)
        return serving

    def _check_writer(self) -> bool:
        writer = self._writer
        if writer.alive:
            if time.monotonic() - self._restarted_at > MAX_RESTART_DELAY:
                self._restart_delay = self._interval  # alive for a while since the last restart: no backoff
            self._restart_at = None
            return True
        now = time.monotonic()
        if self._restart_at is None:
            log.error("writer_stopped", restart_in=self._restart_delay)
            self._restart_at = now + self._restart_delay
            return False
        if now >= self._restart_at and writer.restart():
            log.warning("writer_restarted", restarts=writer.restarts)
            self._restarted_at = now
            self._restart_delay = min(self._restart_delay * 2, MAX_RESTART_DELAY)
            self._restart_at = None
            return writer.alive
        return False

    def _check_store(self) -> bool:
        if self._probe is None:
            return True
        ok, at = self._probed
        ok = ok and time.monotonic() - at < self._interval + self._probe_timeout  # a probe that hangs has failed
        if ok != self.store_ok:
            self.store_ok = ok
            self._writer.store_down = not ok
            if ok:
                log.warning("store_reachable")
            else:
                failed = self._writer.fail_queued(StoreUnavailable("the store is unreachable; nothing was written"))
                log.error("store_unreachable", queued_failed=failed)
        return ok

    # -- threads --------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception as exc:  # the supervisor must outlive anything it watches
                log.exception("supervisor_check_failed", error=repr(exc))

    def _probe_loop(self) -> None:
        assert self._probe is not None
        while not self._stop.is_set():
            try:
                self._probe()
                ok = True
            except Exception as exc:
                if self._probed[0]:
                    log.warning("store_probe_failed", error=repr(exc))
                ok = False
            self._probed = (ok, time.monotonic())
            self._stop.wait(self._interval)
