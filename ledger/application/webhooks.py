"""Webhook subscriptions: what an operator registers, what the deliverer keeps, and the rules a new one must meet.

A subscription belongs to one program and names an HTTPS URL, the integration event types it wants (``*``: all of
them, see :data:`EVENT_TYPES`), a secret the ledger signs every delivery with, whether it is enabled, and its
checkpoint: the global log position of the last event it has passed (delivered with a 2xx, skipped because it
does not match, or put on the dead-letter list). A dead letter is one event the endpoint did not accept within the
retry budget, kept with the last status or error until an operator replays it.

The secret is kept in the store as given (the deliverer needs it to compute each HMAC), never printed by ``repr``
and never written to a log, an event or an error message. :func:`new_subscription` checks an operator's request and
refuses it with :class:`SubscriptionRefused`, whose message never holds the secret.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

from ledger.domain.events import MemberEvent
from ledger.domain.program import ProgramEvent

SIGNAL_EVENT_TYPE: Final = "LifecycleSignalRaised"
"""The event type of a lifecycle signal in the log (as ``ledger.feed.signals`` records it)."""


def _types_of(union: object) -> frozenset[str]:
    members = get_args(get_args(union)[0])
    return frozenset(str(cls.model_fields["type"].default) for cls in members)


EVENT_TYPES: Final = _types_of(MemberEvent) | _types_of(ProgramEvent) | {SIGNAL_EVENT_TYPE}
"""Every event type the feed carries (member events, program events, lifecycle signals)."""

ALL_TYPES: Final = "*"

MAX_SUBSCRIPTIONS_PER_PROGRAM: Final = 20
MAX_URL_LENGTH: Final = 2048
MIN_SECRET_LENGTH: Final = 24
MAX_SECRET_LENGTH: Final = 256
SECRET_PREFIX: Final = "whsec_"

LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})

_PROGRAM_ID: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SUBSCRIPTION_ID: Final = re.compile(r"wh_[0-9a-f]{16}")

DeadLetterStatus = Literal["dead", "replaying", "delivered"]


class SubscriptionRefused(ValueError):
    """An operator's request that cannot be met; the message names what is wrong (never the secret)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    program_id: str
    url: str
    event_types: tuple[str, ...]
    """Sorted event types, or ``("*",)`` for all of them."""
    secret: str = field(repr=False)
    enabled: bool
    position: int
    """The checkpoint: the log position of the last event this subscription has passed."""
    created_at: datetime
    previous_secret: str | None = field(default=None, repr=False)
    """The secret before the last rotation: deliveries are signed with it too until ``previous_until``."""
    previous_until: datetime | None = None

    def secrets_at(self, now: datetime) -> tuple[str, ...]:
        """The secrets a delivery made at ``now`` is signed with: the current one, and the previous one while a
        rotation overlaps."""
        if self.previous_secret is not None and self.previous_until is not None and now < self.previous_until:
            return (self.secret, self.previous_secret)
        return (self.secret,)

    def wants(self, program_id: str, event_type: str) -> bool:
        """Whether an event of ``program_id`` and ``event_type`` is delivered to this subscription."""
        if program_id != self.program_id:
            return False
        return ALL_TYPES in self.event_types or event_type in self.event_types

    def public(self) -> dict[str, object]:
        """What ``ledger webhooks list`` shows: everything but the secret."""
        return {
            "subscription_id": self.subscription_id,
            "program_id": self.program_id,
            "url": self.url,
            "event_types": list(self.event_types),
            "enabled": self.enabled,
            "position": self.position,
            "created_at": self.created_at.isoformat(),
            "previous_secret_until": None if self.previous_until is None else self.previous_until.isoformat(),
        }

    def paused(self) -> Subscription:
        return replace(self, enabled=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    letter_id: int
    """Assigned by the store (0 before it is added)."""
    subscription_id: str
    position: int
    event_id: str
    event_type: str
    attempts: int
    last_status: int | None
    """The last HTTP status the endpoint answered, None when no answer came (refused, timed out)."""
    last_error: str
    dead_at: datetime
    status: DeadLetterStatus = "dead"

    def public(self) -> dict[str, object]:
        return {
            "letter_id": self.letter_id,
            "subscription_id": self.subscription_id,
            "position": self.position,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "dead_at": self.dead_at.isoformat(),
            "status": self.status,
        }


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes, URL-safe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def new_subscription_id() -> str:
    return "wh_" + secrets.token_hex(8)


def is_subscription_id(value: str) -> bool:
    return _SUBSCRIPTION_ID.fullmatch(value) is not None


def check_url(url: str, *, allow_loopback_http: bool) -> str:
    """``url`` if deliveries may go there: ``https://``, or ``http://`` to this host when allowed (tests)."""
    if len(url) > MAX_URL_LENGTH:
        raise SubscriptionRefused(f"url: longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise SubscriptionRefused("url: not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise SubscriptionRefused("url: credentials in the URL are refused (the signature authenticates)")
    if not parts.hostname:
        raise SubscriptionRefused("url: no host")
    if parts.fragment:
        raise SubscriptionRefused("url: a fragment is never sent; leave it out")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and is_loopback(parts.hostname):
        if allow_loopback_http:
            return url
        raise SubscriptionRefused(
            "url: http:// is allowed only to this host and only with --allow-http-loopback"
        )
    raise SubscriptionRefused("url: must be https://")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_event_types(types: list[str]) -> tuple[str, ...]:
    """The sorted, distinct event types of a subscription; ``*`` stands alone."""
    chosen = {t.strip() for t in types if t.strip()}
    if not chosen:
        raise SubscriptionRefused("event types: give at least one, or '*' for all")
    if ALL_TYPES in chosen:
        if len(chosen) > 1:
            raise SubscriptionRefused("event types: '*' already means all; give it alone")
        return (ALL_TYPES,)
    unknown = sorted(chosen - EVENT_TYPES)
    if unknown:
        raise SubscriptionRefused(
            f"event types: unknown {', '.join(unknown)} (known: {', '.join(sorted(EVENT_TYPES))})"
        )
    return tuple(sorted(chosen))


def check_secret(secret: str) -> str:
    """A secret given by the operator: printable ASCII, :data:`MIN_SECRET_LENGTH` to :data:`MAX_SECRET_LENGTH`."""
    if not (MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH):
        raise SubscriptionRefused(f"secret: give {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} characters")
    if not all(33 <= ord(c) <= 126 for c in secret):
        raise SubscriptionRefused("secret: printable ASCII only, no spaces")
    return secret


def new_subscription(
    program_id: str,
    url: str,
    event_types: list[str],
    *,
    existing: int,
    position: int,
    now: datetime,
    secret: str | None = None,
    allow_loopback_http: bool = False,
) -> Subscription:
    """A subscription checked against the rules; ``existing`` is how many the program has already."""
    if _PROGRAM_ID.fullmatch(program_id) is None:
        raise SubscriptionRefused("program: not a program id")
    if existing >= MAX_SUBSCRIPTIONS_PER_PROGRAM:
        raise SubscriptionRefused(f"program {program_id} has {existing} subscriptions, the most allowed")
    return Subscription(
        subscription_id=new_subscription_id(),
        program_id=program_id,
        url=check_url(url, allow_loopback_http=allow_loopback_http),
        event_types=check_event_types(event_types),
        secret=new_secret() if secret is None else check_secret(secret),
        enabled=True,
        position=max(0, position),
        created_at=now,
    )
