"""Delivering the log to each webhook subscription from its own checkpoint, at least once, in log order.

:meth:`WebhookDeliverer.advance` moves one subscription on: it reads the log after the subscription's checkpoint,
passes the events it does not want, and POSTs the next one it wants. Only a 2xx moves the checkpoint past an event
(a crash before that sends the event again: receivers drop repeats by ``Ledger-Webhook-Id``). Any other answer,
a timeout or a refused connection is an attempt that failed: the subscription waits :meth:`RetryPolicy.delay`
(exponential, with jitter) and tries the same event again, later events waiting behind it, so each subscription
sees its events in log order. After ``max_attempts`` the event goes on the subscription's dead-letter list and
delivery moves on. A dead letter an operator asked to replay is tried again, with the same budget, before the
subscription's next event.

Subscriptions never wait for each other: each has its checkpoint and its retry schedule, and
:mod:`ledger.webhooks.runner` advances them on separate threads. The clock and the random source are injected;
where a retry stands is kept in memory (after a restart an event gets its attempts again, never fewer).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import structlog

from ledger.application.clock import Clock
from ledger.application.ports import WebhookStore
from ledger.application.webhooks import DeadLetter, Subscription
from ledger.eventlog.port import EventStore, StoredEvent
from ledger.webhooks.body import event_of, headers, json_body
from ledger.webhooks.transport import Answer, Transport

log = structlog.get_logger("ledger.webhooks")

MAX_BODY_BYTES: Final = 256 * 1024
"""A body above this is never sent: the event goes straight to the dead-letter list."""

Outcome = Literal["delivered", "failed", "dead_lettered", "replayed"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt ``n`` (from 1) failed: wait ``d/2 + random() * d/2`` where ``d = min(max_delay, first_delay *
    factor ** (n - 1))``; attempt ``max_attempts`` failing puts the event on the dead-letter list."""

    max_attempts: int = 10
    first_delay_seconds: float = 30.0
    factor: float = 2.0
    max_delay_seconds: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if (
            self.max_attempts < 1
            or self.first_delay_seconds <= 0
            or self.factor < 1
            or self.max_delay_seconds <= 0
        ):
            raise ValueError("a retry policy needs max_attempts >= 1, positive delays and factor >= 1")

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay_seconds, self.first_delay_seconds * self.factor ** (attempt - 1))
        return ceiling / 2 + rng.random() * ceiling / 2


@dataclass(frozen=True, slots=True)
class Retrying:
    """An event whose last attempt failed: how many were made and when the next one may be."""

    position: int
    attempts: int
    next_at: datetime
    last: Answer


class WebhookDeliverer:
    def __init__(
        self,
        store: EventStore[Any],
        subscriptions: WebhookStore,
        transport: Transport,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        policy: RetryPolicy | None = None,
        batch: int = 100,
        max_body_bytes: int = MAX_BODY_BYTES,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.store = store
        self.subscriptions = subscriptions
        self.transport = transport
        self.clock = clock
        self.rng = rng or random.Random()
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.max_body_bytes = max_body_bytes
        self.on_outcome = on_outcome
        self.lag_seconds: dict[str, float] = {}
        """Per subscription: how old the oldest event it has not passed was when last looked at (0: caught up)."""
        self._retrying: dict[tuple[str, int], Retrying] = {}
        self._lock = threading.Lock()

    # -- the rounds -------------------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Advance every enabled subscription once, one after the other; the events passed in all."""
        return sum(self.advance(s) for s in self.subscriptions.listed() if s.enabled)

    def advance(self, subscription: Subscription) -> int:
        """Replay what an operator asked for, then deliver the subscription's next events until one fails or
        the batch is done; the events passed (0: caught up, or waiting for a retry)."""
        if not subscription.enabled:
            return 0
        if not self._replay(subscription):
            return 0
        now = self.clock.now()
        sid = subscription.subscription_id
        position = saved = subscription.position
        events = self.store.read_all(after_position=position, limit=self.batch)
        passed = 0
        try:
            for stored in events:
                event = event_of(stored)
                if event is None or not subscription.wants(event.program_id, stored.type):
                    position = stored.position
                    passed += 1
                    continue
                outcome = self._attempt(subscription, stored, key=(sid, 0))
                if outcome is None:  # waiting for the next attempt: later events wait behind it
                    self.lag_seconds[sid] = max(0.0, (now - stored.recorded_at).total_seconds())
                    return passed
                position = saved = stored.position
                passed += 1
                self.subscriptions.save_position(sid, position)  # only now: the endpoint accepted it
            self.lag_seconds[sid] = (
                0.0 if len(events) < self.batch else max(0.0, (now - events[-1].recorded_at).total_seconds())
            )
            return passed
        finally:
            if position != saved:  # the events passed without a delivery
                self.subscriptions.save_position(sid, position)

    def _replay(self, subscription: Subscription) -> bool:
        """Try the dead letters being replayed; True when none is left waiting."""
        waiting = False
        for letter in self.subscriptions.dead_letters(subscription.subscription_id, "replaying"):
            stored = self._event_at(letter.position)
            if stored is None:  # the event is no longer in the log (cannot happen in an append-only log)
                self.subscriptions.settle(
                    replace(letter, status="dead", last_error="event not found in the log")
                )
                continue
            outcome = self._attempt(
                subscription, stored, key=(subscription.subscription_id, letter.letter_id), letter=letter
            )
            waiting = waiting or outcome is None
        return not waiting

    def _event_at(self, position: int) -> StoredEvent | None:
        found = self.store.read_all(after_position=position - 1, limit=1)
        return found[0] if found and found[0].position == position else None

    # -- one attempt ---------------------------------------------------------------------------------------------------

    def _attempt(
        self,
        subscription: Subscription,
        stored: StoredEvent,
        *,
        key: tuple[str, int],
        letter: DeadLetter | None = None,
    ) -> Outcome | None:
        """POST ``stored`` unless its next attempt is not due; the outcome once the event is settled (delivered
        or dead-lettered), None while it waits for another attempt."""
        now = self.clock.now()
        with self._lock:
            retrying = self._retrying.get(key)
        if retrying is not None and retrying.position != stored.position:
            retrying = None
        if retrying is not None and now < retrying.next_at:
            return None
        attempt = 1 if retrying is None else retrying.attempts + 1
        event = event_of(stored)
        assert event is not None, "only events the feed carries are attempted"
        body = json_body(event)
        if len(body) > self.max_body_bytes:
            answer = Answer(None, f"body of {len(body)} bytes is above the limit of {self.max_body_bytes}")
            attempt = self.policy.max_attempts
        else:
            timestamp = int(now.timestamp())
            sent = headers(event, body, secrets=subscription.secrets_at(now), timestamp=timestamp,
                           subscription_id=subscription.subscription_id, attempt=attempt)  # fmt: skip
            answer = self.transport.post(subscription.url, body, sent)
        if answer.accepted:
            with self._lock:
                self._retrying.pop(key, None)
            if letter is not None:
                self.subscriptions.settle(replace(letter, status="delivered", attempts=attempt, last_status=answer.status,
                                                  last_error="", dead_at=now))  # fmt: skip
                return self._count("replayed")
            return self._count("delivered")
        self._count("failed")
        log.warning("webhook_attempt_failed", subscription_id=subscription.subscription_id, event_id=stored.event_id,
                    position=stored.position, attempt=attempt, status=answer.status, error=answer.error)  # fmt: skip
        if attempt < self.policy.max_attempts:
            wait = timedelta(seconds=self.policy.delay(attempt, self.rng))
            with self._lock:
                self._retrying[key] = Retrying(stored.position, attempt, now + wait, answer)
            return None
        with self._lock:
            self._retrying.pop(key, None)
        if letter is not None:
            self.subscriptions.settle(replace(letter, status="dead", attempts=letter.attempts + attempt,
                                              last_status=answer.status, last_error=answer.error, dead_at=now))  # fmt: skip
        else:
            self.subscriptions.add_dead_letter(DeadLetter(
                letter_id=0, subscription_id=subscription.subscription_id, position=stored.position,
                event_id=stored.event_id, event_type=stored.type, attempts=attempt, last_status=answer.status,
                last_error=answer.error, dead_at=now,
            ))  # fmt: skip
        log.error("webhook_dead_lettered", subscription_id=subscription.subscription_id, event_id=stored.event_id,
                  position=stored.position, attempts=attempt, status=answer.status, error=answer.error)  # fmt: skip
        return self._count("dead_lettered")

    def _count(self, outcome: Outcome) -> Outcome:
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def forget(self, subscription_id: str) -> None:
        """Drop what is kept in memory of a removed subscription."""
        with self._lock:
            for key in [k for k in self._retrying if k[0] == subscription_id]:
                del self._retrying[key]
        self.lag_seconds.pop(subscription_id, None)
