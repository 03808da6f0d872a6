"""What every backend must do for the application's other ports: checkpoints, personal data, leases, webhooks.

One abstract test class per port (as :mod:`ledger.testing.store_contract` is for the event log), subclassed per
backend in ``tests/contract/test_ports.py``. A subclass gives ``open_backend()``, a fresh backend on a store of
its own (calling it again opens the same store again, as a second replica or a restarted server would).
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ledger.adapters.backend import Backend
from ledger.application.personal import PersonalProfile
from ledger.application.webhooks import DeadLetter, Subscription, new_subscription
from ledger.bootstrap import checkpoint_store, webhook_store


class PortContract:
    """The fixture every port contract shares; subclasses set ``reopens`` False where a second open is a new,
    empty store (``memory://``)."""

    reopens = True

    def open_backend(self) -> AbstractContextManager[Backend]:  # pragma: no cover - each backend's subclass gives it
        raise NotImplementedError


class CheckpointContract(PortContract):
    def test_an_unknown_name_is_at_zero(self) -> None:
        with self.open_backend() as backend:
            assert checkpoint_store(backend).load("feed") == 0

    def test_a_saved_position_is_loaded_and_a_later_save_replaces_it(self) -> None:
        with self.open_backend() as backend:
            checkpoints = checkpoint_store(backend)
            checkpoints.save("feed", 41)
            assert checkpoints.load("feed") == 41
            checkpoints.save("feed", 97)
            assert checkpoints.load("feed") == 97

    def test_names_are_independent(self) -> None:
        with self.open_backend() as backend:
            checkpoints = checkpoint_store(backend)
            checkpoints.save("feed", 5)
            checkpoints.save("signals", 9)
            assert (checkpoints.load("feed"), checkpoints.load("signals"), checkpoints.load("other")) == (5, 9, 0)

    def test_a_position_survives_a_reopen(self) -> None:
        if not self.reopens:
            return
        with self.open_backend() as backend:
            checkpoint_store(backend).save("feed", 123)
        with self.open_backend() as backend:
            assert checkpoint_store(backend).load("feed") == 123


PROFILE = PersonalProfile(birth_month=6, baby_birth_date="2025-11-02", phone="+8613800138000", consent=True)


class PersonalDataContract(PortContract):
    def test_a_saved_profile_is_loaded_as_saved(self) -> None:
        with self.open_backend() as backend:
            backend.personal.save("p", "m1", PROFILE)
            assert backend.personal.load("p", "m1") == PROFILE
            assert backend.personal.load("p", "m2") is None
            assert backend.personal.load("q", "m1") is None

    def test_a_later_save_replaces_the_profile(self) -> None:
        with self.open_backend() as backend:
            backend.personal.save("p", "m1", PROFILE)
            changed = PersonalProfile(birth_month=7, baby_birth_date=None, phone=None, consent=True)
            backend.personal.save("p", "m1", changed)
            assert backend.personal.load("p", "m1") == changed

    def test_an_erased_profile_is_gone_and_erasing_twice_is_harmless(self) -> None:
        with self.open_backend() as backend:
            backend.personal.save("p", "m1", PROFILE)
            backend.personal.save("p", "m2", PROFILE)
            backend.personal.erase("p", "m1")
            backend.personal.erase("p", "m1")
            backend.personal.erase("p", "nobody")
            assert backend.personal.load("p", "m1") is None
            assert backend.personal.load("p", "m2") == PROFILE

    def test_an_erased_profile_stays_gone_after_a_reopen_and_a_new_save_gets_a_new_key(self) -> None:
        if not self.reopens:
            return
        with self.open_backend() as backend:
            backend.personal.save("p", "m1", PROFILE)
            backend.personal.erase("p", "m1")
        with self.open_backend() as backend:
            assert backend.personal.load("p", "m1") is None
            changed = PersonalProfile(birth_month=3, consent=True)
            backend.personal.save("p", "m1", changed)
            assert backend.personal.load("p", "m1") == changed

    def test_a_profile_survives_a_reopen(self) -> None:
        if not self.reopens:
            return
        with self.open_backend() as backend:
            backend.personal.save("p", "m1", PROFILE)
        with self.open_backend() as backend:
            assert backend.personal.load("p", "m1") == PROFILE


def _name(kind: str) -> str:
    """A lease name of this test alone (PostgreSQL advisory locks are per database, not per schema)."""
    return f"{kind}-{uuid.uuid4().hex[:12]}"


class LeaseContract(PortContract):
    """Leases exclude each other across the processes (or replicas) of one store. A backend that never runs two
    processes on a store (``memory://``, SQLite with one process) may hand out leases that are always held."""

    def test_one_holder_at_a_time_and_the_next_once_it_lets_go(self) -> None:
        if not self.reopens:
            return
        name = _name("scheduler")
        with self.open_backend() as first, self.open_backend() as second:
            a, b = first.lease(name), second.lease(name)
            try:
                assert a.try_acquire() and a.held()
                assert not b.try_acquire() and not b.held()
                a.close()
                assert b.try_acquire() and b.held()
            finally:
                a.close()
                b.close()

    def test_leases_of_different_names_do_not_exclude_each_other(self) -> None:
        with self.open_backend() as backend:
            a, b = backend.lease(_name("scheduler")), backend.lease(_name("feed"))
            try:
                assert a.try_acquire() and b.try_acquire()
            finally:
                a.close()
                b.close()


T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def _subscription(
    program_id: str = "p", *, at: datetime = T0, types: tuple[str, ...] = ("*",)
) -> Subscription:
    return new_subscription(
        program_id, "https://crm.example.com/hooks", list(types), existing=0, position=0, now=at
    )


def _letter(subscription_id: str, position: int) -> DeadLetter:
    return DeadLetter(letter_id=0, subscription_id=subscription_id, position=position, event_id=f"e{position}",
                      event_type="PurchaseRecorded", attempts=10, last_status=503, last_error="HTTP 503", dead_at=T0)  # fmt: skip


class WebhookStoreContract(PortContract):
    def test_a_subscription_is_kept_as_added_with_its_secret(self) -> None:
        with self.open_backend() as backend:
            store = webhook_store(backend)
            added = _subscription(types=("PointsAwarded", "PurchaseRecorded"))
            store.add(added)
            assert store.get(added.subscription_id) == added
            assert store.get(added.subscription_id).secret == added.secret  # type: ignore[union-attr]
            assert store.get("wh_0000000000000000") is None

    def test_listed_oldest_first_and_by_program(self) -> None:
        with self.open_backend() as backend:
            store = webhook_store(backend)
            a, b, c = (
                _subscription("p", at=T0),
                _subscription("q", at=T0 + timedelta(seconds=1)),
                _subscription("p", at=T0 + timedelta(seconds=2)),
            )
            for s in (c, a, b):
                store.add(s)
            assert [s.subscription_id for s in store.listed()] == [
                a.subscription_id,
                b.subscription_id,
                c.subscription_id,
            ]
            assert [s.subscription_id for s in store.listed("p")] == [a.subscription_id, c.subscription_id]
            assert store.listed("nobody") == []

    def test_pause_resume_and_position(self) -> None:
        with self.open_backend() as backend:
            store = webhook_store(backend)
            s = _subscription()
            store.add(s)
            assert store.set_enabled(s.subscription_id, False)
            assert store.get(s.subscription_id) == replace(s, enabled=False)
            store.save_position(s.subscription_id, 41)
            store.set_enabled(s.subscription_id, True)
            assert store.get(s.subscription_id) == replace(s, position=41)
            assert not store.set_enabled("wh_0000000000000000", True)
            store.save_position("wh_0000000000000000", 5)  # a removed subscription: nothing happens
            assert store.get("wh_0000000000000000") is None

    def test_a_rotated_secret_keeps_the_previous_one_until_the_end_of_the_overlap(self) -> None:
        with self.open_backend() as backend:
            store = webhook_store(backend)
            s = _subscription()
            store.add(s)
            until = T0 + timedelta(hours=24)
            assert store.rotate_secret(s.subscription_id, "whsec_the-new-one-0123456789abcdef", until)
            rotated = store.get(s.subscription_id)
            assert rotated == replace(s, secret="whsec_the-new-one-0123456789abcdef", previous_secret=s.secret,
                                      previous_until=until)  # fmt: skip
            assert rotated.secrets_at(until - timedelta(seconds=1)) == (rotated.secret, s.secret)
            assert rotated.secrets_at(until) == (rotated.secret,)
            assert not store.rotate_secret("wh_0000000000000000", "whsec_x" * 4, until)

    def test_dead_letters_in_log_order_replay_and_settle(self) -> None:
        with self.open_backend() as backend:
            store = webhook_store(backend)
            s, other = _subscription(), _subscription()
            store.add(s)
            store.add(other)
            late = store.add_dead_letter(_letter(s.subscription_id, 9))
            early = store.add_dead_letter(_letter(s.subscription_id, 3))
            store.add_dead_letter(_letter(other.subscription_id, 4))
            assert late != early
            letters = store.dead_letters(s.subscription_id)
            assert [(d.letter_id, d.position, d.status) for d in letters] == [
                (early, 3, "dead"),
                (late, 9, "dead"),
            ]
            assert letters[0] == replace(_letter(s.subscription_id, 3), letter_id=early)
            assert store.request_replay(s.subscription_id, [late]) == 1
            assert store.request_replay(s.subscription_id, [late]) == 0  # already replaying
            assert [d.letter_id for d in store.dead_letters(s.subscription_id, "replaying")] == [late]
            assert [d.letter_id for d in store.dead_letters(s.subscription_id, "dead")] == [early]
            replaying = store.dead_letters(s.subscription_id, "replaying")[0]
            store.settle(replace(replaying, status="delivered", attempts=1, last_status=200, last_error=""))
            assert store.dead_letters(s.subscription_id, "delivered")[0].last_status == 200
            assert store.request_replay(s.subscription_id) == 1  # every dead one: the early one
            assert store.request_replay(other.subscription_id, []) == 0
            assert len(store.dead_letters(other.subscription_id, "dead")) == 1

    def test_removing_a_subscription_removes_its_dead_letters(self) -> None:
        with self.open_backend() as backend:
            store = webhook_store(backend)
            s, other = _subscription(), _subscription()
            store.add(s)
            store.add(other)
            store.add_dead_letter(_letter(s.subscription_id, 3))
            store.add_dead_letter(_letter(other.subscription_id, 3))
            assert store.remove(s.subscription_id)
            assert not store.remove(s.subscription_id)
            assert store.get(s.subscription_id) is None and store.dead_letters(s.subscription_id) == []
            assert len(store.dead_letters(other.subscription_id)) == 1

    def test_subscriptions_and_positions_survive_a_reopen(self) -> None:
        if not self.reopens:
            return
        s = _subscription()
        with self.open_backend() as backend:
            webhook_store(backend).add(s)
            webhook_store(backend).save_position(s.subscription_id, 77)
            webhook_store(backend).add_dead_letter(_letter(s.subscription_id, 5))
        with self.open_backend() as backend:
            assert webhook_store(backend).get(s.subscription_id) == replace(s, position=77)
            assert [d.position for d in webhook_store(backend).dead_letters(s.subscription_id)] == [5]
