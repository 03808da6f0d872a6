"""The outbox relay: from the event log's checkpoint, publish every event in position order, then checkpoint.

One pass (:meth:`FeedRelay.run_once`): load the checkpoint, ``read_all`` the next ``batch`` events after it, map
each to its feed message, publish them all and wait for JetStream's acks, then save the last event's position.
A crash (or a failed publish) before the save publishes the same events again on the next pass: delivery is at
least once, and JetStream drops the repeats within its duplicate window because each message's
``Nats-Msg-Id`` is its event id. The position order of the log gives per-member (indeed global) order.

Run exactly one relay per checkpoint name (the server runs it under a lease): two relays on one name would
still deliver everything, but interleave their repeats.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ledger.application.ports import CheckpointStore
from ledger.eventlog.port import EventStore
from ledger.feed.integration import DEFAULT_SUBJECT_PREFIX, FeedMessage, to_message
from ledger.feed.publisher import Publisher

log = logging.getLogger(__name__)


class FeedRelay:
    """Relays the event log to a :class:`~ledger.feed.publisher.Publisher`, checkpointed under ``name``."""

    def __init__(
        self,
        store: EventStore[Any],
        checkpoints: CheckpointStore,
        publisher: Publisher,
        *,
        name: str = "nats",
        batch: int = 500,
        subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.store = store
        self.checkpoints = checkpoints
        self.publisher = publisher
        self.name = name
        self.batch = batch
        self.subject_prefix = subject_prefix

    def run_once(self) -> int:
        """Publish the next batch after the checkpoint and move the checkpoint; return the events passed.

        0 means the feed is caught up. Events of streams the feed does not carry count as passed but are not
        published. Raises whatever publishing raised (the checkpoint is then left where it was).
        """
        after = self.checkpoints.load(self.name)
        events = self.store.read_all(after_position=after, limit=self.batch)
        if not events:
            return 0
        messages: list[FeedMessage] = []
        for stored in events:
            message = to_message(stored, self.subject_prefix)
            if message is not None:
                messages.append(message)
        self.publisher.publish(messages)
        self.checkpoints.save(self.name, events[-1].position)
        return len(events)

    def catch_up(self) -> int:
        """Run passes until the feed is caught up; return the events passed."""
        total = 0
        while passed := self.run_once():
            total += passed
        return total

    def run(self, stop: threading.Event, idle_wait: float = 1.0, error_wait: float = 5.0) -> None:
        """Relay until ``stop`` is set: passes back to back while there is work, waiting on ``stop`` for
        ``idle_wait`` seconds when caught up and ``error_wait`` seconds after a failure (which is logged)."""
        while not stop.is_set():
            try:
                passed = self.run_once()
            except Exception:
                log.exception("feed relay %r: pass failed; retrying from the checkpoint", self.name)
                stop.wait(error_wait)
                continue
            if passed == 0:
                stop.wait(idle_wait)
