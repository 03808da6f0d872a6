"""Webhook subscriptions and dead letters in SQLite, beside the read models (tables made on first use)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from ledger.application.webhooks import DeadLetter, DeadLetterStatus, Subscription

_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS webhook_subscription (subscription_id TEXT PRIMARY KEY, program_id TEXT NOT NULL,"
    " url TEXT NOT NULL, event_types TEXT NOT NULL, secret TEXT NOT NULL, enabled INTEGER NOT NULL,"
    " position INTEGER NOT NULL, created_at TEXT NOT NULL, previous_secret TEXT, previous_until TEXT)",
    "CREATE TABLE IF NOT EXISTS webhook_dead_letter (letter_id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " subscription_id TEXT NOT NULL, position INTEGER NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,"
    " attempts INTEGER NOT NULL, last_status INTEGER, last_error TEXT NOT NULL, dead_at TEXT NOT NULL,"
    " status TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS webhook_dead_letter_by_subscription ON webhook_dead_letter (subscription_id, position)",
)
_COLUMNS: Final = (
    "subscription_id, program_id, url, event_types, secret, enabled, position, created_at, previous_secret,"
    " previous_until"
)
_LETTER_COLUMNS: Final = "letter_id, subscription_id, position, event_id, event_type, attempts, last_status, last_error, dead_at, status"


def subscription_from_row(row: Sequence[Any]) -> Subscription:
    return Subscription(
        subscription_id=row[0], program_id=row[1], url=row[2], event_types=tuple(json.loads(row[3])),
        secret=row[4], enabled=bool(row[5]), position=int(row[6]), created_at=datetime.fromisoformat(row[7]),
        previous_secret=row[8], previous_until=None if row[9] is None else datetime.fromisoformat(row[9]),
    )  # fmt: skip


def subscription_row(s: Subscription) -> tuple[object, ...]:
    return (s.subscription_id, s.program_id, s.url, json.dumps(list(s.event_types)), s.secret, s.enabled, s.position,
            s.created_at.isoformat(), s.previous_secret,
            None if s.previous_until is None else s.previous_until.isoformat())  # fmt: skip


def letter_from_row(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        letter_id=int(row[0]), subscription_id=row[1], position=int(row[2]), event_id=row[3], event_type=row[4],
        attempts=int(row[5]), last_status=None if row[6] is None else int(row[6]), last_error=row[7],
        dead_at=datetime.fromisoformat(row[8]), status=row[9],
    )  # fmt: skip


class SqliteWebhooks:
    """A :class:`~ledger.application.ports.WebhookStore` over one SQLite connection made by ``connect``."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def at(cls, path: str, *, busy_timeout: float = 5.0) -> SqliteWebhooks:
        return cls(
            lambda: sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        )

    def _run(self, statement: str, values: Sequence[object] = ()) -> tuple[list[Any], int, int]:
        """Run one statement (its own transaction) under the lock: its rows, rowcount and last row id."""
        with self._lock:
            if self._conn is None:
                conn = self._connect()
                for ddl in _DDL:
                    conn.execute(ddl)
                self._conn = conn
            cursor = self._conn.execute(statement, values)
            rows = cursor.fetchall()
            if self._conn.in_transaction:
                self._conn.commit()
            return rows, cursor.rowcount, int(cursor.lastrowid or 0)

    def add(self, subscription: Subscription) -> None:
        self._run(f"INSERT INTO webhook_subscription ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  subscription_row(subscription))  # fmt: skip

    def get(self, subscription_id: str) -> Subscription | None:
        rows = self._run(f"SELECT {_COLUMNS} FROM webhook_subscription WHERE subscription_id = ?",
                         (subscription_id,))[0]  # fmt: skip
        return subscription_from_row(rows[0]) if rows else None

    def listed(self, program_id: str | None = None) -> list[Subscription]:
        where, values = ("WHERE program_id = ?", (program_id,)) if program_id is not None else ("", ())
        rows = self._run(f"SELECT {_COLUMNS} FROM webhook_subscription {where} ORDER BY created_at, subscription_id",
                         values)[0]  # fmt: skip
        return [subscription_from_row(r) for r in rows]

    def remove(self, subscription_id: str) -> bool:
        self._run("DELETE FROM webhook_dead_letter WHERE subscription_id = ?", (subscription_id,))
        return (
            self._run("DELETE FROM webhook_subscription WHERE subscription_id = ?", (subscription_id,))[1] > 0
        )

    def set_enabled(self, subscription_id: str, enabled: bool) -> bool:
        return self._run("UPDATE webhook_subscription SET enabled = ? WHERE subscription_id = ?",
                         (enabled, subscription_id))[1] > 0  # fmt: skip

    def rotate_secret(self, subscription_id: str, secret: str, previous_until: datetime) -> bool:
        statement = (
            "UPDATE webhook_subscription SET previous_secret = secret, secret = ?, previous_until = ?"
            " WHERE subscription_id = ?"
        )
        return self._run(statement, (secret, previous_until.isoformat(), subscription_id))[1] > 0

    def save_position(self, subscription_id: str, position: int) -> None:
        self._run(
            "UPDATE webhook_subscription SET position = ? WHERE subscription_id = ?",
            (position, subscription_id),
        )

    def add_dead_letter(self, letter: DeadLetter) -> int:
        _, _, letter_id = self._run(
            "INSERT INTO webhook_dead_letter (subscription_id, position, event_id, event_type, attempts, last_status,"
            " last_error, dead_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (letter.subscription_id, letter.position, letter.event_id, letter.event_type, letter.attempts,
             letter.last_status, letter.last_error, letter.dead_at.isoformat(), letter.status),
        )  # fmt: skip
        return letter_id

    def dead_letters(self, subscription_id: str, status: DeadLetterStatus | None = None) -> list[DeadLetter]:
        where, values = "subscription_id = ?", [subscription_id]
        if status is not None:
            where, values = where + " AND status = ?", [*values, status]
        rows = self._run(f"SELECT {_LETTER_COLUMNS} FROM webhook_dead_letter WHERE {where} ORDER BY position, letter_id",
                         values)[0]  # fmt: skip
        return [letter_from_row(r) for r in rows]

    def request_replay(self, subscription_id: str, letter_ids: Sequence[int] | None = None) -> int:
        statement = "UPDATE webhook_dead_letter SET status = 'replaying' WHERE subscription_id = ? AND status = 'dead'"
        values: list[object] = [subscription_id]
        if letter_ids is not None:
            if not letter_ids:
                return 0
            statement += f" AND letter_id IN ({', '.join('?' for _ in letter_ids)})"
            values.extend(letter_ids)
        return self._run(statement, values)[1]

    def settle(self, letter: DeadLetter) -> None:
        self._run(
            "UPDATE webhook_dead_letter SET status = ?, attempts = ?, last_status = ?, last_error = ?, dead_at = ?"
            " WHERE letter_id = ?",
            (letter.status, letter.attempts, letter.last_status, letter.last_error, letter.dead_at.isoformat(),
             letter.letter_id),
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
