"""Webhooks inside ``ledger serve``: a thread that hands each enabled subscription to a pool of delivery threads.

It works only while this replica holds the ``webhooks`` lease (on PostgreSQL an advisory lock, per database; the
embedded store always holds it), so one replica delivers at a time and another takes over when the holder dies,
from the checkpoints (at most the event in flight is sent again). Every round it lists the subscriptions and
starts a lane for each enabled one that has none running: a lane advances its subscription until it is caught
up, waits for a retry, or has worked ``lane_seconds``. A slow or failing endpoint so holds one thread of the pool,
never the others, nor the NATS feed (which has its own checkpoint and thread).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from ledger.application.ports import Lease
from ledger.webhooks.deliverer import WebhookDeliverer

log = structlog.get_logger("ledger.webhooks")


class WebhookRunner:
    def __init__(
        self,
        deliverer: WebhookDeliverer,
        lease: Lease,
        *,
        threads: int = 4,
        idle_wait_seconds: float = 0.5,
        error_wait_seconds: float = 5.0,
        lane_seconds: float = 5.0,
    ) -> None:
        self._deliverer = deliverer
        self._lease = lease
        self._idle_wait = idle_wait_seconds
        self._error_wait = error_wait_seconds
        self._lane_seconds = lane_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ledger-webhook")
        self._lanes: dict[str, Future[None]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ledger-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._lease.close()

    def round(self) -> int:
        """Start a lane for every enabled subscription without one; how many were started."""
        subscriptions = self._deliverer.subscriptions.listed()
        known = {s.subscription_id for s in subscriptions}
        for gone in [sid for sid in self._lanes if sid not in known]:
            if self._lanes[gone].done():
                del self._lanes[gone]
                self._deliverer.forget(gone)
        started = 0
        for subscription in subscriptions:
            lane = self._lanes.get(subscription.subscription_id)
            if subscription.enabled and (lane is None or lane.done()):
                self._lanes[subscription.subscription_id] = self._pool.submit(
                    self._lane, subscription.subscription_id
                )
                started += 1
        return started

    def _lane(self, subscription_id: str) -> None:
        until = time.monotonic() + self._lane_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < until and self._lease.held():
                subscription = self._deliverer.subscriptions.get(subscription_id)
                if subscription is None or not self._deliverer.advance(subscription):
                    return
        except Exception as exc:  # the store away, say: the checkpoint stays, the next round retries
            log.warning("webhook_lane_failed", subscription_id=subscription_id, error=repr(exc))

    def _holds_lease(self) -> bool:
        try:
            return self._lease.held() or self._lease.try_acquire()
        except Exception as exc:
            log.warning("webhook_lease_unavailable", error=repr(exc))
            return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._holds_lease():
                self._stop.wait(self._idle_wait)
                continue
            try:
                self.round()
            except Exception as exc:
                log.warning("webhook_round_failed", error=repr(exc))
                self._stop.wait(self._error_wait)
                continue
            self._stop.wait(self._idle_wait)
