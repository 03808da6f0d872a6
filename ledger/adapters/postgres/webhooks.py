"""Webhook subscriptions and dead letters in PostgreSQL, beside the read models (tables made on first use)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final

import psycopg

from ledger.adapters.sqlite.webhooks import letter_from_row, subscription_from_row, subscription_row
from ledger.application.webhooks import DeadLetter, DeadLetterStatus, Subscription

_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS webhook_subscription (subscription_id TEXT PRIMARY KEY, program_id TEXT NOT NULL,"
    " url TEXT NOT NULL, event_types TEXT NOT NULL, secret TEXT NOT NULL, enabled BOOLEAN NOT NULL,"
    " position BIGINT NOT NULL, created_at TEXT NOT NULL, previous_secret TEXT, previous_until TEXT)",
    "CREATE TABLE IF NOT EXISTS webhook_dead_letter (letter_id BIGSERIAL PRIMARY KEY,"
    " subscription_id TEXT NOT NULL, position BIGINT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,"
    " attempts INTEGER NOT NULL, last_status INTEGER, last_error TEXT NOT NULL, dead_at TEXT NOT NULL,"
    " status TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS webhook_dead_letter_by_subscription ON webhook_dead_letter (subscription_id, position)",
)
_COLUMNS: Final = (
    "subscription_id, program_id, url, event_types, secret, enabled, position, created_at, previous_secret,"
    " previous_until"
)
_LETTER_COLUMNS: Final = "letter_id, subscription_id, position, event_id, event_type, attempts, last_status, last_error, dead_at, status"

Connect = Callable[[], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]


class PostgresWebhooks:
    """A :class:`~ledger.application.ports.WebhookStore` in PostgreSQL; each call commits its own transaction."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._ready = False

    def _run(self, statement: str, values: Sequence[object] = ()) -> tuple[list[tuple[Any, ...]], int]:
        with self._connect() as conn:
            if not self._ready:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(7301)")  # two first uses never race on the DDL
                    for ddl in _DDL:
                        conn.execute(ddl)
                self._ready = True
            cursor = conn.execute(statement, values)
            rows = cursor.fetchall() if cursor.description is not None else []
            count = cursor.rowcount
            conn.commit()
            return rows, count

    def add(self, subscription: Subscription) -> None:
        self._run(f"INSERT INTO webhook_subscription ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                  subscription_row(subscription))  # fmt: skip

    def get(self, subscription_id: str) -> Subscription | None:
        rows, _ = self._run(f"SELECT {_COLUMNS} FROM webhook_subscription WHERE subscription_id = %s",
                            (subscription_id,))  # fmt: skip
        return subscription_from_row(rows[0]) if rows else None

    def listed(self, program_id: str | None = None) -> list[Subscription]:
        where, values = ("WHERE program_id = %s", (program_id,)) if program_id is not None else ("", ())
        rows, _ = self._run(
            f"SELECT {_COLUMNS} FROM webhook_subscription {where} ORDER BY created_at, subscription_id",
            values,
        )
        return [subscription_from_row(r) for r in rows]

    def remove(self, subscription_id: str) -> bool:
        self._run("DELETE FROM webhook_dead_letter WHERE subscription_id = %s", (subscription_id,))
        return (
            self._run("DELETE FROM webhook_subscription WHERE subscription_id = %s", (subscription_id,))[1]
            > 0
        )

    def set_enabled(self, subscription_id: str, enabled: bool) -> bool:
        return self._run("UPDATE webhook_subscription SET enabled = %s WHERE subscription_id = %s",
                         (enabled, subscription_id))[1] > 0  # fmt: skip

    def rotate_secret(self, subscription_id: str, secret: str, previous_until: datetime) -> bool:
        statement = (
            "UPDATE webhook_subscription SET previous_secret = secret, secret = %s, previous_until = %s"
            " WHERE subscription_id = %s"
        )
        return self._run(statement, (secret, previous_until.isoformat(), subscription_id))[1] > 0

    def save_position(self, subscription_id: str, position: int) -> None:
        self._run("UPDATE webhook_subscription SET position = %s WHERE subscription_id = %s",
                  (position, subscription_id))  # fmt: skip

    def add_dead_letter(self, letter: DeadLetter) -> int:
        rows, _ = self._run(
            "INSERT INTO webhook_dead_letter (subscription_id, position, event_id, event_type, attempts, last_status,"
            " last_error, dead_at, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING letter_id",
            (letter.subscription_id, letter.position, letter.event_id, letter.event_type, letter.attempts,
             letter.last_status, letter.last_error, letter.dead_at.isoformat(), letter.status),
        )  # fmt: skip
        return int(rows[0][0])

    def dead_letters(self, subscription_id: str, status: DeadLetterStatus | None = None) -> list[DeadLetter]:
        where, values = "subscription_id = %s", [subscription_id]
        if status is not None:
            where, values = where + " AND status = %s", [*values, status]
        rows, _ = self._run(
            f"SELECT {_LETTER_COLUMNS} FROM webhook_dead_letter WHERE {where} ORDER BY position, letter_id",
            values,
        )
        return [letter_from_row(r) for r in rows]

    def request_replay(self, subscription_id: str, letter_ids: Sequence[int] | None = None) -> int:
        statement = "UPDATE webhook_dead_letter SET status = 'replaying' WHERE subscription_id = %s AND status = 'dead'"
        values: list[object] = [subscription_id]
        if letter_ids is not None:
            if not letter_ids:
                return 0
            statement += " AND letter_id = ANY(%s)"
            values.append(list(letter_ids))
        return self._run(statement, values)[1]

    def settle(self, letter: DeadLetter) -> None:
        self._run(
            "UPDATE webhook_dead_letter SET status = %s, attempts = %s, last_status = %s, last_error = %s,"
            " dead_at = %s WHERE letter_id = %s",
            (letter.status, letter.attempts, letter.last_status, letter.last_error, letter.dead_at.isoformat(),
             letter.letter_id),
        )  # fmt: skip
