"""The event feed for downstream systems: a transactional outbox relayed to NATS JetStream.

The event log is the outbox: every ledger event is committed atomically with the business change and gets a
global ``position`` strictly increasing in commit order. :class:`~ledger.feed.relay.FeedRelay` reads the log
from its checkpoint (:mod:`ledger.feed.checkpoint`), maps each event to a versioned
``loyalty.v1.IntegrationEvent`` (:mod:`ledger.feed.integration`), publishes it (:mod:`ledger.feed.publisher`)
and, once JetStream acknowledged everything, moves the checkpoint. Lifecycle signals
(:mod:`ledger.feed.signals`) are recorded in the log too, so they travel the same ordered, checkpointed path.

The feed's contract for integrators is ``proto/loyalty/v1/feed.proto`` and ``proto/loyalty/v1/FEED.md``.
"""
