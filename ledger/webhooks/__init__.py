"""Webhooks: the event feed delivered over HTTPS to systems that do not run NATS (CRMs, CDPs).

The event log is the outbox, as for the NATS feed (:mod:`ledger.feed`). Each subscription
(:mod:`ledger.application.webhooks`) has a checkpoint of its own; :class:`~ledger.webhooks.deliverer.WebhookDeliverer`
reads the log after it, POSTs each matching event as the JSON of the feed's ``loyalty.v1.IntegrationEvent``
(:mod:`ledger.webhooks.body`), signed (:mod:`ledger.webhooks.signing`), and moves the checkpoint only after a 2xx.
A failed attempt is retried with exponential backoff and jitter; after the last one the event is put on the
subscription's dead-letter list and delivery moves on. :mod:`ledger.webhooks.runner` runs it in ``ledger serve``
under the ``webhooks`` lease. The integrators' manual is ``docs/webhooks.md``.
"""
