"""The scheduler: time-driven work on real-clock programs (activation, expiry, hold time-outs, reviews, grants).

Each pass asks the due index which members of each real-clock program have something due at or before the
program's now, and sends each of them a ``Tick`` through the one write path. Test-clock programs are driven by
``AdvanceClock`` instead, through the same ``run_due``.

Replicas sharing one store each run a scheduler, but a pass runs only on the replica holding the
``scheduler`` lease (a PostgreSQL advisory lock: when its holder dies, the next replica to try takes over).
The lease saves work rather than guarding correctness: a ``Tick`` writes only what is due, checked against
the member's version, so two replicas ticking one member write its expiry once.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import structlog

from ledger.application.service import LedgerApp

log = structlog.get_logger("ledger.scheduler")


class Lease(Protocol):
    def try_acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def close(self) -> None: ...


class Scheduler:
    def __init__(self, app: LedgerApp, *, interval_seconds: float = 1.0, lease: Lease | None = None) -> None:
        self._app = app
        self._lease = lease
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ledger-scheduler", daemon=True)

    def run_pass(self) -> dict[str, dict[str, Any]]:
        """One pass over every real-clock program; returns what ran, by program."""
        ran: dict[str, dict[str, Any]] = {}
        for program_id in self._app.program_ids():
            if self._app.program(program_id).clock != "real":
                continue
            counts = self._app.run_due(program_id, self._app.now(program_id))
            if counts["members_ticked"]:
                ran[program_id] = counts
                log.info("due_work_ran", program_id=program_id, **counts)
        return ran

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._lease is not None:
            self._lease.close()

    def may_run(self) -> bool:
        """True when this replica holds the scheduler lease (taking it if it is free)."""
        if self._lease is None:
            return True
        try:
            return self._lease.held() or self._lease.try_acquire()
        except Exception as exc:  # the database is away: do nothing this pass
            log.warning("scheduler_lease_unavailable", error=repr(exc))
            return False

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            if not self.may_run():
                continue
            try:
                self.run_pass()
            except Exception as exc:  # keep scheduling; the next pass retries what did not run
                log.error("scheduler_pass_failed", error=repr(exc))
