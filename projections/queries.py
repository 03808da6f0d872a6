"""Reading the read models: :class:`ReadModelQueries` answers the query side from the projection tables.

The statements are the same on SQLite and PostgreSQL (the tables are the same, times as integer
microseconds); :class:`ledger.adapters.sqlite.read_models.SqliteReadModels` and
:class:`ledger.adapters.postgres.read_models.PgReadModels` only say how to run one. Every method runs one statement, so each
answer reflects one committed snapshot.

Page tokens are opaque to callers: URL-safe base64 of a small tagged text (the last version for history, the
last lot's expiry and id for lots). A token from one listing is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, NamedTuple

from ledger.domain.queries import EXPIRING_SOON
from projections.codec import (
    BALANCE,
    HISTORY,
    LOT,
    TIER,
    from_micros,
    to_micros,
)
from projections.rows import (
    BalanceRow,
    HistoryRow,
    LotRow,
    TierRow,
)
from projections.standing import StandingRow
from projections.update import DEFAULT_CHECKPOINT

MAX_PAGE_SIZE: Final = 1000


class LotsPage(NamedTuple):
    """A page of a member's lots, how many match in all, the member's version and next due moment."""

    lots: list[LotRow]
    total: int
    version: int
    due_at: datetime | None
    ordered: bool
    """False while some of the member's lot rows predate the ``seq`` column (their order is unknown)."""


class BalanceNow(NamedTuple):
    """A balance row with the figures that depend on the time asked about, and the member's next due moment."""

    row: BalanceRow
    due_at: datetime | None
    next_expiry_at: datetime | None
    next_expiry_points: int
    expiring_soon: int


class StandingNow(NamedTuple):
    """A member's standing row and its next due moment (one snapshot)."""

    row: StandingRow
    due_at: datetime | None


class MemberNow(NamedTuple):
    """A member's balance as :class:`BalanceNow` and its standing row, from one snapshot (None: no standing row
    yet, e.g. written before the table existed)."""

    balance: BalanceNow
    standing: StandingRow | None


class InvalidPageToken(ValueError):
    """A page token that this listing did not hand out."""


def _encode_token(tag: str, value: object) -> str:
    text = tag + ":" + json.dumps(value, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_token(tag: str, token: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        found, sep, body = raw.partition(":")
        if found != tag or not sep:
            raise InvalidPageToken("the page token belongs to another listing")
        return json.loads(body)
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidPageToken("the page token is malformed") from error


def _page_size(page_size: int) -> int:
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    return min(page_size, MAX_PAGE_SIZE)


class ReadModelQueries:
    """Queries over the tables named ``prefix + table``, the same on every database; a subclass runs them.

    The statements are written with ``?`` marks and turned into the database's own (``placeholder``).
    """

    def __init__(self, *, prefix: str = "", placeholder: str = "?") -> None:
        self._placeholder = placeholder
        self._prefix = prefix
        p = prefix
        member = " WHERE program_id = ? AND member_id = ?"
        self._sql_balance = BALANCE.select(p + BALANCE.table) + member
        self._sql_tier = TIER.select(p + TIER.table) + member
        self._sql_lots = LOT.select(p + LOT.table) + member
        self._sql_history = HISTORY.select(p + HISTORY.table) + member
        self._sql_expiring = (
            f"SELECT coalesce(sum(remaining), 0) FROM {p}lot{member} "
            "AND status <> 'expired' AND remaining > 0 AND expires_at >= ? AND expires_at < ?"
        )
        # The lot subqueries name the member by parameter, not by the balance row: each is then evaluated once
        # (correlated to the row, the next expiry's minimum was evaluated again for every lot it summed).
        live = (
            f"FROM {p}lot l WHERE l.program_id = ? AND l.member_id = ? "
            "AND l.status IN ('pending', 'active') AND l.remaining > 0"
        )
        self._sql_balance_now = (
            f"SELECT {', '.join('b.' + c for c in BALANCE.columns)}, "
            f"(SELECT d.due_at FROM {p}due d WHERE d.program_id = b.program_id AND d.member_id = b.member_id), "
            f"(SELECT min(l.expires_at) {live}), "
            f"(SELECT coalesce(sum(l.remaining), 0) {live} AND l.expires_at = (SELECT min(l.expires_at) {live})), "
            f"(SELECT coalesce(sum(l.remaining), 0) {live} AND l.expires_at >= ? AND l.expires_at < ?) "
            f"FROM {p}balance b WHERE b.program_id = ? AND b.member_id = ?"
        )
        standing_of_b = f"FROM {p}standing s WHERE s.program_id = b.program_id AND s.member_id = b.member_id"
        self._sql_member_now = self._sql_balance_now.replace(
            f" FROM {p}balance b WHERE",
            f", (SELECT s.version {standing_of_b}), (SELECT s.document {standing_of_b}) FROM {p}balance b WHERE",
        )
        self._sql_standing_now = (
            f"SELECT s.program_id, s.member_id, s.version, s.document, "
            f"(SELECT d.due_at FROM {p}due d WHERE d.program_id = s.program_id AND d.member_id = s.member_id) "
            f"FROM {p}standing s WHERE s.program_id = ? AND s.member_id = ?"
        )
        self._sql_history_head = f"SELECT max(version) FROM {p}history{member}"
        self._sql_history_through = (
            f"SELECT {', '.join(HISTORY.columns)}, ({self._sql_history_head}) FROM {p}history{member} "
            "AND version <= ? ORDER BY version DESC LIMIT ?"
        )
        self._sql_identity = f"SELECT member_id FROM {p}identity WHERE program_id = ? AND identity = ?"
        self._sql_due = f"SELECT member_id FROM {p}due WHERE program_id = ? AND due_at <= ? ORDER BY due_at, member_id LIMIT ?"
        self._sql_member_ids = f"SELECT member_id FROM {p}balance WHERE program_id = ? ORDER BY member_id"
        self._sql_liability = (
            f"SELECT expires_at, status, sum(remaining) FROM {p}lot WHERE program_id = ? "
            "AND status IN ('pending', 'active') AND remaining > 0 AND expires_at > ? GROUP BY expires_at, status"
        )
        self._sql_checkpoint = f"SELECT position FROM {p}projection_checkpoint WHERE name = ?"

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)  # the statements hold no other question marks
        return self._all(sql, params)

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run one statement (with the database's marks) and return its rows as tuples."""
        raise NotImplementedError

    # -- one member -------------------------------------------------------------------------------------------

    def balance(self, program_id: str, member_id: str) -> BalanceRow | None:
        rows = self._run(self._sql_balance, (program_id, member_id))
        return BALANCE.decode(rows[0]) if rows else None

    def balance_now(self, program_id: str, member_id: str, now: datetime) -> BalanceNow | None:
        """The member's balance row with what a balance shows at ``now`` (points expiring within 30 days, the
        next expiry) and when it next has time-driven work, from one statement (one snapshot)."""
        soon = to_micros(now + EXPIRING_SOON)
        member = (program_id, member_id)
        rows = self._run(self._sql_balance_now, (*member, *member, *member, *member, to_micros(now), soon, *member))
        if not rows:
            return None
        row = rows[0]
        n = len(BALANCE.columns)
        due_at, next_expiry, next_points, expiring = row[n : n + 4]
        return BalanceNow(
            BALANCE.decode(row[:n]),
            due_at=from_micros(due_at) if due_at is not None else None,
            next_expiry_at=from_micros(next_expiry) if next_expiry is not None else None,
            next_expiry_points=int(next_points),
            expiring_soon=int(expiring),
        )

    def standing_now(self, program_id: str, member_id: str) -> StandingNow | None:
        """The member's standing row (the facts its tier state and entitlements are computed from) and when it
        next has time-driven work, from one statement (None: no row)."""
        rows = self._run(self._sql_standing_now, (program_id, member_id))
        if not rows:
            return None
        program, member, version, document, due_at = rows[0]
        return StandingNow(
            StandingRow(str(program), str(member), int(version), str(document)),
            from_micros(due_at) if due_at is not None else None,
        )

    def member_now(self, program_id: str, member_id: str, now: datetime) -> MemberNow | None:
        """:meth:`balance_now` with the member's standing row, from one statement (one snapshot): what a
        look-up shows (None: no balance row)."""
        soon = to_micros(now + EXPIRING_SOON)
        member = (program_id, member_id)
        rows = self._run(self._sql_member_now, (*member, *member, *member, *member, to_micros(now), soon, *member))
        if not rows:
            return None
        row = rows[0]
        n = len(BALANCE.columns)
        due_at, next_expiry, next_points, expiring, version, document = row[n : n + 6]
        balance = BalanceNow(
            BALANCE.decode(row[:n]),
            due_at=from_micros(due_at) if due_at is not None else None,
            next_expiry_at=from_micros(next_expiry) if next_expiry is not None else None,
            next_expiry_points=int(next_points),
            expiring_soon=int(expiring),
        )
        standing = None if version is None else StandingRow(program_id, member_id, int(version), str(document))
        return MemberNow(balance, standing)

    def tier(self, program_id: str, member_id: str) -> TierRow | None:
        rows = self._run(self._sql_tier, (program_id, member_id))
        return TIER.decode(rows[0]) if rows else None

    def expiring_between(self, program_id: str, member_id: str, start: datetime, end: datetime) -> int:
        """Unexpired points of lots expiring in ``[start, end)`` (as ``MemberState.expiring_between``)."""
        rows = self._run(self._sql_expiring, (program_id, member_id, to_micros(start), to_micros(end)))
        return int(rows[0][0])

    def lots(
        self,
        program_id: str,
        member_id: str,
        *,
        include_closed: bool = False,
        page_size: int = 100,
        page_token: str = "",
    ) -> tuple[list[LotRow], str]:
        """The member's lots, soonest expiry first (then lot id); open ones only (pending, active) unless
        ``include_closed``. Returns a page and the token of the next one ("" after the last page)."""
        size = _page_size(page_size)
        sql = self._sql_lots
        params: list[Any] = [program_id, member_id]
        if not include_closed:
            sql += " AND status IN ('pending', 'active')"
        if page_token:
            after = _decode_token("lot", page_token)
            if not (
                isinstance(after, list)
                and len(after) == 2
                and isinstance(after[0], int)
                and not isinstance(after[0], bool)
            ):
                raise InvalidPageToken("the page token is malformed")
            sql += " AND (expires_at, lot_id) > (?, ?)"
            params += [after[0], str(after[1])]
        sql += " ORDER BY expires_at, lot_id LIMIT ?"
        params.append(size + 1)
        rows = self._run(sql, tuple(params))
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            token = _encode_token(
                "lot", [last[LOT.columns.index("expires_at")], last[LOT.columns.index("lot_id")]]
            )
        return [LOT.decode(r) for r in rows], token

    def history(
        self, program_id: str, member_id: str, page_size: int = 50, page_token: str = ""
    ) -> tuple[list[HistoryRow], str]:
        """The member's history, newest first; a page and the next page's token ("" after the last page)."""
        size = _page_size(page_size)
        sql = self._sql_history
        params: list[Any] = [program_id, member_id]
        if page_token:
            before = _decode_token("history", page_token)
            if not isinstance(before, int) or isinstance(before, bool):
                raise InvalidPageToken("the page token is malformed")
            sql += " AND version < ?"
            params.append(before)
        sql += " ORDER BY version DESC LIMIT ?"
        params.append(size + 1)
        rows = [HISTORY.decode(r) for r in self._run(sql, tuple(params))]
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = _encode_token("history", rows[-1].version)
        return rows, token

    def lots_in_debit_order(
        self, program_id: str, member_id: str, statuses: Sequence[str], offset: int, limit: int
    ) -> LotsPage | None:
        """Up to ``limit`` of the member's lots after the first ``offset``, in the order debits consume them
        (soonest expiry, earliest business time, the order recorded), only those with one of ``statuses`` (all
        when empty); with how many match, the member's version, its next due moment and whether every lot row
        has its ``seq``, from one statement.
        None when nothing matches there (the caller decides from the state whether that is an empty page)."""
        where = " WHERE program_id = ? AND member_id = ?"
        params: list[Any] = [program_id, member_id]
        if statuses:
            where += f" AND status IN ({', '.join('?' * len(statuses))})"
            params += list(statuses)
        p = self._prefix
        sql = (
            f"SELECT {', '.join(LOT.columns)}, (SELECT count(*) FROM {p}lot{where}), "
            f"(SELECT b.version FROM {p}balance b WHERE b.program_id = ? AND b.member_id = ?), "
            f"(SELECT d.due_at FROM {p}due d WHERE d.program_id = ? AND d.member_id = ?), "
            f"(SELECT count(*) FROM {p}lot u WHERE u.program_id = ? AND u.member_id = ? AND u.seq IS NULL) "
            f"FROM {p}lot{where} ORDER BY expires_at, occurred_at, seq LIMIT ? OFFSET ?"
        )
        rows = self._run(
            sql,
            (*params, *(program_id, member_id) * 3, *params, max(limit, 0), max(offset, 0)),
        )
        if not rows:
            return None
        n = len(LOT.columns)
        total, version, due_at, unordered = rows[0][n : n + 4]
        return LotsPage(
            [LOT.decode(r[:n]) for r in rows],
            total=int(total),
            version=int(version or 0),
            due_at=from_micros(due_at) if due_at is not None else None,
            ordered=not unordered,
        )

    def history_through(
        self, program_id: str, member_id: str, through_version: int | None, page_size: int
    ) -> tuple[list[HistoryRow], int]:
        """A page of the member's history, newest first: up to ``page_size`` rows at or before
        ``through_version`` (None: from the newest), with the member's newest version in the table (0: none)."""
        size = _page_size(page_size)
        sql = self._sql_history_through
        rows = self._run(
            sql,
            (program_id, member_id, program_id, member_id, through_version if through_version is not None else 2**62, size),
        )
        if not rows:
            head = self._run(self._sql_history_head, (program_id, member_id))
            return [], int(head[0][0] or 0)
        n = len(HISTORY.columns)
        return [HISTORY.decode(r[:n]) for r in rows], int(rows[0][n])

    # -- across members ---------------------------------------------------------------------------------------

    def lookup_identity(self, program_id: str, identity: str) -> str | None:
        """The member an identity (its keyed digest) resolves to."""
        rows = self._run(self._sql_identity, (program_id, identity))
        return str(rows[0][0]) if rows else None

    def due_members(self, program_id: str, upto: datetime, limit: int) -> list[str]:
        """Members with time-driven work due at or before ``upto``, earliest first."""
        return [str(r[0]) for r in self._run(self._sql_due, (program_id, to_micros(upto), max(limit, 0)))]

    def member_ids(self, program_id: str) -> list[str]:
        """Every projected member of the program, by id."""
        return [str(r[0]) for r in self._run(self._sql_member_ids, (program_id,))]

    def liability(self, program_id: str, as_of: datetime, tz: tzinfo = UTC) -> dict[str, Any]:
        """Outstanding points of the program: unexpired lots with points left whose expiry is after ``as_of``.

        Buckets are the month (in ``tz``) of a lot's last usable instant (expiry is an exclusive bound, so
        points expiring at the first instant of April are March's). Returns ``{"as_of": ..., "active": n,
        "pending": n, "total": n, "by_month": {"2027-03": n, ...}}`` with months in order.
        """
        rows = self._run(self._sql_liability, (program_id, to_micros(as_of)))
        by_month: dict[str, int] = {}
        totals = {"pending": 0, "active": 0}
        for expires_at, status, points in rows:
            last_usable = from_micros(expires_at) - timedelta(microseconds=1)
            month = last_usable.astimezone(tz).strftime("%Y-%m")
            by_month[month] = by_month.get(month, 0) + int(points)
            totals[status] += int(points)
        return {
            "as_of": as_of,
            "active": totals["active"],
            "pending": totals["pending"],
            "total": totals["active"] + totals["pending"],
            "by_month": dict(sorted(by_month.items())),
        }

    def checkpoint(self, name: str = DEFAULT_CHECKPOINT) -> int:
        """The position of the last event the named projection has applied (0: none)."""
        rows = self._run(self._sql_checkpoint, (name,))
        return int(rows[0][0]) if rows else 0
