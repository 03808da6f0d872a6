"""The contract every event-store backend must pass, as a pytest base class.

A backend's test module subclasses :class:`EventStoreContract` and implements ``make_store``::

    class TestSqliteStore(EventStoreContract):
        def make_store(self, tmp_path: Path) -> EventStore[object]:
            return SqliteEventStore(str(tmp_path / "ledger.db"))

The contract is backend-neutral: positions are only required to be strictly increasing, with one append's
events adjacent in the global order (KurrentDB's commit positions are not dense); a backend that cannot run
``in_transaction`` hooks sets ``supports_in_transaction = False`` and the hook tests are skipped. Stronger
guarantees of one backend (dense positions from 1, say) belong in that backend's own test module.

The helpers :func:`new_event` and :func:`batch_of` build well-formed events and batches for other tests.

The tests live in three parts, each a class of its own module combined here: appending and reading
(:mod:`~ledger.testing.store_contract_appends`), commands, duplicates and the hash chain
(:mod:`~ledger.testing.store_contract_integrity`) and concurrency (:mod:`~ledger.testing.store_contract_concurrency`),
over the helpers and base class of :mod:`~ledger.testing.store_contract_base`; every name stays importable from here.
"""

from __future__ import annotations

from ledger.testing.store_contract_appends import AppendAndReadContract
from ledger.testing.store_contract_base import (
    ACTOR,
    SHANGHAI,
    T0,
    StoreContractBase,
    assert_nothing_written,
    assert_positions_are_dense_from_one,
    batch_of,
    command,
    guarded_thread,
    new_event,
    read_everything,
    tail_until_done,
)
from ledger.testing.store_contract_concurrency import ConcurrencyContract
from ledger.testing.store_contract_integrity import IntegrityContract

__all__ = [
    "ACTOR",
    "SHANGHAI",
    "T0",
    "EventStoreContract",
    "StoreContractBase",
    "assert_nothing_written",
    "assert_positions_are_dense_from_one",
    "batch_of",
    "command",
    "guarded_thread",
    "new_event",
    "read_everything",
    "tail_until_done",
]


class EventStoreContract(AppendAndReadContract, IntegrityContract, ConcurrencyContract):
    """Tests every :class:`~ledger.eventlog.port.EventStore` backend must pass (each part's tests in its own module)."""
