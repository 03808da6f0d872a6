"""The stores the ledger runs on, each with its read models, personal data, leases and rebuild.

:func:`open_backend` picks one by the store URL's scheme (see :mod:`ledger.bootstrap` for what each means).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.application.personal import PersonalData
from ledger.application.ports import Lease, WebhookStore
from ledger.domain.state import MemberState
from ledger.eventlog.port import EventStore
from projections.rebuild import Fold
from projections.update import Projector, ReadModels

InWorker = Callable[[PersonalData], None]
"""Called in each worker process of a rebuild after the fork, with a personal-data store opened there (the
parent's connections are never used in a child): the caller points its fold's look-ups at it."""


RunRebuild = Callable[[Fold, Callable[[MemberState], datetime | None], int, InWorker | None], Any]
"""``rebuild(fold, due_at, workers, in_worker)``: rebuild every read model and switch over; its report.

``workers`` > 0 folds in that many processes where the backend can (its log can be opened again in a child);
0, or a backend that cannot, folds in this process."""


@dataclass(frozen=True, slots=True)
class Backend:
    """What one kind of store brings: the log, where read models are written and read, personal data."""

    kind: str
    store: EventStore[Any]
    read_models_url: str
    """Where the read models, checkpoints and personal data live (``sqlite:///...`` or ``postgresql://...``)."""
    projector: Projector
    reads: ReadModels
    read_connection: Callable[[], AbstractContextManager[Any]]
    personal: PersonalData
    shared: bool
    lease: Callable[[str], Lease]
    rebuild: RunRebuild
    project_in_transaction: bool | None = None
    """False: the read models cannot share the append's transaction and are written right after the commit
    (None: as the store says, ``supports_in_transaction``)."""
    webhooks: WebhookStore | None = None
    """Where webhook subscriptions live when not beside the read models (``memory://``: in process memory)."""
