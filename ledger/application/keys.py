"""API keys: who may call. Issued and revoked as events of the deployment's ``keys`` stream in the log.

A key is ``lk_<key_id>_<secret>``: the key id is public (listed, recorded on every event the key causes), the
secret is shown once when the key is issued and only its Argon2id hash is kept. Every replica reads the same
stream, so a key revoked or expired on one is refused by all within :data:`REFRESH_SECONDS`.

Checking a secret with Argon2 is slow on purpose; a process checks each key's secret with it once and then
compares a SHA-256 of the presented secret with the one it verified, in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Literal

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ledger.application.clock import Clock
from ledger.domain.streams import KEYS_STREAM
from ledger.eventlog.chain import format_time
from ledger.eventlog.port import (
    AppendBatch,
    EventStore,
    NewEvent,
    StoreError,
    StreamAppend,
    WrongExpectedVersion,
)

Role = Literal["pos", "checkout", "operator", "auditor", "admin"]
ROLES: Final[tuple[Role, ...]] = ("pos", "checkout", "operator", "auditor", "admin")
ALL_PROGRAMS: Final = "*"
"""The program scope of a deployment-wide key (admin keys only)."""

log = structlog.get_logger("ledger.keys")

REFRESH_SECONDS: Final = 2.0
"""How stale a process's view of the keys may be: revocations reach every replica within this."""

UNKNOWN_REFRESH_SECONDS: Final = 0.1
"""An unknown key id reads the stream again, at most this often (so unknown ids cannot flood the store)."""

PREFIX: Final = "lk_"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)
_HASHER: Final = PasswordHasher()


class KeyCheckThrottled(Exception):
    """A presented key would need slow work (an Argon2 check, a read of the log) that the caller may not spend now."""


def _always() -> bool:
    return True


class KeyRefused(Exception):
    """A key cannot be issued or revoked as asked (bad role, scope, unknown id)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What the log knows of a key (never its secret)."""

    key_id: str
    program_id: str
    role: Role
    store_id: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    secret_hash: str
    revoked_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def public(self) -> dict[str, Any]:
        """The key as listed: everything but the hash."""
        return {
            "key_id": self.key_id, "program_id": self.program_id, "role": self.role, "store_id": self.store_id,
            "name": self.name, "created_at": format_time(self.created_at),
            "expires_at": format_time(self.expires_at) if self.expires_at else None,
            "revoked_at": format_time(self.revoked_at) if self.revoked_at else None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proved by a key: recorded on every event the call causes."""

    key_id: str
    program_id: str
    role: Role
    store_id: str = ""

    def sees(self, program_id: str) -> bool:
        return self.program_id in (ALL_PROGRAMS, program_id)


def split_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a presented key, or None if it does not look like one."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(key_id) != 16 or not secret or len(secret) > 128:
        return None
    return key_id, secret


class KeyRing:
    """The keys of a deployment, folded from the ``keys`` stream and refreshed at most every few seconds."""

    def __init__(self, store: EventStore[Any], clock: Clock, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._keys: dict[str, ApiKey] = {}
        self._version = 0
        self._refreshed = float("-inf")
        self._verified: dict[str, bytes] = {}
        self._verifying: dict[str, threading.Lock] = {}
        self._verifying_lock = threading.Lock()
        self.refresh()

    # -- reading ------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        with self._lock:
            for stored in self._store.read_stream(KEYS_STREAM, after_version=self._version):
                self._evolve(json.loads(stored.payload))
                self._version = stored.version
            self._refreshed = self._monotonic()

    def _refresh_if_reachable(self, *, wait: bool = False) -> None:
        """Refresh; while the store cannot be read, go on with the keys known (tried again after REFRESH_SECONDS).

        Nothing can be written or read meanwhile anyway, so the call goes on to be answered UNAVAILABLE by what
        it asks for, rather than failing here; a revocation takes effect once the store answers again.
        """
        if not self._refreshing.acquire(blocking=wait):
            return  # another call is reading the stream right now: go on with what is known
        try:
            self.refresh()
        except StoreError as exc:
            log.warning("keys_not_refreshed", error=repr(exc))
            self._refreshed = self._monotonic()
        finally:
            self._refreshing.release()

    def _evolve(self, event: dict[str, Any]) -> None:
        if event["type"] == "KeyIssued":
            self._keys[event["key_id"]] = ApiKey(
                key_id=event["key_id"], program_id=event["program_id"], role=event["role"],
                store_id=event["store_id"], name=event["name"], created_at=parse_time(event["created_at"]),
                expires_at=parse_time(event["expires_at"]) if event["expires_at"] else None,
                secret_hash=event["secret_hash"],
            )  # fmt: skip
        elif event["type"] == "KeyRevoked" and event["key_id"] in self._keys:
            self._keys[event["key_id"]] = replace(self._keys[event["key_id"]], revoked_at=parse_time(event["at"]))
            self._verified.pop(event["key_id"], None)

    def listed(self) -> list[ApiKey]:
        self.refresh()
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.key_id))

    def is_empty(self) -> bool:
        self.refresh()
        return not self._keys

    def authenticate(self, token: str, *, may_work: Callable[[], bool] = _always) -> Principal | None:
        """The principal a presented key proves, or None (unknown, wrong secret, revoked, expired).

        Before slow work for this token (reading the log for an unknown key id, an Argon2 check of a secret not
        verified yet) ``may_work`` is asked; if it says no, :class:`KeyCheckThrottled` is raised. A key already
        verified by this process costs a SHA-256 and never asks.
        """
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        if self._monotonic() - self._refreshed > REFRESH_SECONDS:
            self._refresh_if_reachable()
        key = self._keys.get(key_id)
        if key is None:
            if not may_work():
                raise KeyCheckThrottled(key_id)
            if self._monotonic() - self._refreshed > UNKNOWN_REFRESH_SECONDS:
                self._refresh_if_reachable(wait=True)  # a key issued a moment ago, on another process: usable at once
                key = self._keys.get(key_id)
        if key is None or not key.usable_at(self._clock.now()):
            return None
        digest = hashlib.sha256(secret.encode()).digest()
        if not self._proven(key_id, digest):
            if not may_work():
                raise KeyCheckThrottled(key_id)
            with self._verifying_lock:
                verifying = self._verifying.setdefault(key_id, threading.Lock())
            with verifying:  # one Argon2 check of a key at a time: callers arriving meanwhile wait for its result
                if not self._proven(key_id, digest):
                    try:
                        _HASHER.verify(key.secret_hash, secret)
                    except (VerificationError, InvalidHashError):
                        return None
                    self._verified[key_id] = digest
        return Principal(key.key_id, key.program_id, key.role, key.store_id)

    def _proven(self, key_id: str, digest: bytes) -> bool:
        known = self._verified.get(key_id)
        return known is not None and hmac.compare_digest(known, digest)

    # -- writing ------------------------------------------------------------------------------------------

    def issue(
        self, program_id: str, role: str, *, store_id: str = "", name: str = "", expires_at: datetime | None = None,
        actor: dict[str, str] | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key; return it and its token (``lk_<key_id>_<secret>``), which is never stored or shown again."""
        if role not in ROLES:
            raise KeyRefused(f"role must be one of {', '.join(ROLES)}")
        if program_id == ALL_PROGRAMS and role != "admin":
            raise KeyRefused("only an admin key may cover every program ('*')")
        if store_id and role not in ("pos", "checkout"):
            raise KeyRefused("a store applies to pos and checkout keys only")
        now = self._clock.now()
        if expires_at is not None and expires_at <= now:
            raise KeyRefused("the expiry must be in the future")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        event = {
            "type": "KeyIssued", "key_id": key_id, "program_id": program_id, "role": role, "store_id": store_id,
            "name": name, "created_at": format_time(now),
            "expires_at": format_time(expires_at) if expires_at else None, "secret_hash": _HASHER.hash(secret),
        }  # fmt: skip
        self._append(event, now, actor)
        return self._keys[key_id], f"{PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str, *, actor: dict[str, str] | None = None) -> ApiKey:
        self.refresh()
        key = self._keys.get(key_id)
        if key is None:
            raise KeyRefused(f"no key {key_id!r}")
        if key.revoked_at is None:
            now = self._clock.now()
            self._append({"type": "KeyRevoked", "key_id": key_id, "at": format_time(now)}, now, actor)
        return self._keys[key_id]

    def _append(self, event: dict[str, Any], now: datetime, actor: dict[str, str] | None) -> None:
        payload = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        for _ in range(5):
            self.refresh()
            with self._lock:
                new = NewEvent(
                    event_id=f"key:{event['key_id']}:{self._version + 1}", type=event["type"], schema_version=1,
                    occurred_at=now, recorded_at=now, policy_version=None, idempotency_key=None,
                    correlation_id=None, causation_id=None, actor=actor or {"channel": "operator_console"},
                    payload=payload,
                )  # fmt: skip
                try:
                    self._store.append(AppendBatch([StreamAppend(KEYS_STREAM, self._version, [new])]))
                except WrongExpectedVersion:
                    continue  # another process issued or revoked a key meanwhile: read it, try again
            self.refresh()
            return
        raise KeyRefused("the keys stream kept changing; try again")
