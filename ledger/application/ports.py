"""Ports: what the application needs from a backend besides the event log (leases, feed checkpoints, webhooks),
and what the write path needs of the programs (:class:`ProgramDirectory`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from ledger.application.webhooks import DeadLetter, DeadLetterStatus, Subscription
from ledger.domain.decide import Context


class ProgramDirectory(Protocol):
    """What the write path needs to know of programs: their policies and clock (as a member's context), the
    identities they have given, and their latest versions on a shared store. The application implements it
    (:class:`~ledger.application.service.LedgerApp`); the writer asks it and never the application itself."""

    def context(
        self, program_id: str, occurred_at: datetime | None, member_id: str, *, look_up_profile: bool = True
    ) -> Context:
        """What the rules see besides the member's state: now, the business time, the policies, the profile."""
        ...

    def identity_owner(self, program_id: str, identity: str) -> str | None:
        """The member an identity digest belongs to (committed), or None."""
        ...

    def refresh(self, program_ids: set[str]) -> None:
        """Bring these programs up to date with the log (other replicas may have changed them)."""
        ...


class Lease(Protocol):
    """Permission to run work that must run on one replica at a time (see ``AdvisoryLease``)."""

    def try_acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def close(self) -> None: ...


class CheckpointStore(Protocol):
    def load(self, name: str) -> int:
        """The saved position of ``name``; 0 if none was saved."""
        ...

    def save(self, name: str, position: int) -> None:
        """Durably set the position of ``name``."""
        ...


class WebhookStore(Protocol):
    """Webhook subscriptions, their checkpoints and dead letters (see :mod:`ledger.application.webhooks`).

    Each backend keeps them beside its read models; ``ledger.testing.port_contracts.WebhookStoreContract`` is what
    every implementation must do.
    """

    def add(self, subscription: Subscription) -> None: ...

    def get(self, subscription_id: str) -> Subscription | None: ...

    def listed(self, program_id: str | None = None) -> list[Subscription]:
        """Every subscription (of ``program_id``), oldest first."""
        ...

    def remove(self, subscription_id: str) -> bool:
        """Delete the subscription and its dead letters; False if there was none."""
        ...

    def set_enabled(self, subscription_id: str, enabled: bool) -> bool:
        """Pause or resume; False if there is no such subscription."""
        ...

    def rotate_secret(self, subscription_id: str, secret: str, previous_until: datetime) -> bool:
        """Sign with ``secret`` from now on, and with the secret it replaces too until ``previous_until``; False if
        there is no such subscription."""
        ...

    def save_position(self, subscription_id: str, position: int) -> None:
        """Durably move the subscription's checkpoint (a removed subscription: nothing happens)."""
        ...

    def add_dead_letter(self, letter: DeadLetter) -> int:
        """Keep a dead letter; its id."""
        ...

    def dead_letters(self, subscription_id: str, status: DeadLetterStatus | None = None) -> list[DeadLetter]:
        """The subscription's dead letters (with ``status``), in log order."""
        ...

    def request_replay(self, subscription_id: str, letter_ids: Sequence[int] | None = None) -> int:
        """Mark dead letters (all of the subscription's, or those of ``letter_ids``) ``replaying``; how many."""
        ...

    def settle(self, letter: DeadLetter) -> None:
        """Write a dead letter's new status, attempts and last answer (after a replay)."""
        ...
