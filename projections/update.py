"""What a projection is told after a write: the member update, and the ports a backend's read models implement.

:class:`MemberUpdate` is backend-neutral: one member's state after a write and the history rows of its new
events. Each backend's projector (:class:`Projector`) turns updates into its own tables; :class:`ReadModels` is
what the write path reads back (identity owners, the due index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from ledger.domain.state import MemberState
from projections.codec import (
    EPOCH,
    MICROSECOND,
)
from projections.rows import (
    HistoryRow,
)

DEFAULT_CHECKPOINT: Final = "projections"
"""The checkpoint name the projector advances unless told otherwise."""


Encoded = tuple[Any, ...]


MemberKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    """One member's state after a write, with the history rows of the events it just got."""

    program_id: str
    member_id: str
    state: MemberState
    history: Sequence[HistoryRow] = ()
    due_at: datetime | None = None
    identities_added: Sequence[str] = ()


def erases(update: MemberUpdate) -> bool:
    """Whether the update records the member's erasure: its identity rows are then deleted (none resolve to it)."""
    return any(row.event_type == "MemberErased" for row in update.history)


def encode_history(row: HistoryRow) -> Encoded:
    """``HISTORY.encode`` unrolled (a rebuild encodes one row per event)."""
    return (*row[:5], (row[5] - EPOCH) // MICROSECOND, (row[6] - EPOCH) // MICROSECOND, *row[7:])


class Projector(Protocol):
    """What the write path and the runner need of a backend's projector (``SqliteProjector``, ``PgProjector``):
    apply member updates, write history rows and move the checkpoint, all on a connection the caller owns."""

    prefix: str
    checkpoint_name: str

    def apply(self, conn: Any, updates: Sequence[MemberUpdate]) -> None: ...

    def write_history(self, conn: Any, rows: Sequence[HistoryRow], *, fresh: bool = False) -> int: ...

    def set_checkpoint(self, conn: Any, position: int) -> None: ...


if TYPE_CHECKING:
    from projections.queries import BalanceNow, LotsPage, MemberNow, StandingNow


class ReadModels(Protocol):
    """What the application reads back from the read models: identity owners, members with work due, balances,
    history and lot pages, standings."""

    def lookup_identity(self, program_id: str, identity: str) -> str | None: ...

    def due_members(self, program_id: str, upto: datetime, limit: int) -> list[str]: ...

    def balance_now(self, program_id: str, member_id: str, now: datetime) -> BalanceNow | None: ...

    def history_through(
        self, program_id: str, member_id: str, through_version: int | None, page_size: int
    ) -> tuple[list[HistoryRow], int]: ...

    def lots_in_debit_order(
        self, program_id: str, member_id: str, statuses: Sequence[str], offset: int, limit: int
    ) -> LotsPage | None: ...

    def standing_now(self, program_id: str, member_id: str) -> StandingNow | None: ...

    def member_now(self, program_id: str, member_id: str, now: datetime) -> MemberNow | None: ...
