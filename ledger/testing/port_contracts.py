"""What every backend must do for the application's other ports: checkpoints, personal data and leases.

One abstract test class per port (as :mod:`ledger.testing.store_contract` is for the event log), subclassed per
backend in ``tests/contract/test_ports.py``. A subclass gives ``open_backend()``, a fresh backend on a store of
its own (calling it again opens the same store again, as a second replica or a restarted server would).
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager

from ledger.adapters.backend import Backend
from ledger.application.personal import PersonalProfile
from ledger.bootstrap import checkpoint_store


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
