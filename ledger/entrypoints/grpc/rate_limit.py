"""Rate limits: a token bucket per API key, and one per peer address for failed key checks.

A call whose key's bucket is empty is refused with RESOURCE_EXHAUSTED, ErrorInfo reason ``RATE_LIMITED`` and a
``google.rpc.RetryInfo`` saying when a token will be there. Failed key checks (an unknown key id, a wrong
secret) take a token of the caller's peer address; while that bucket is empty the server does no slow work for
that address (no Argon2 check, no read of the keys): keys it has verified before still work, others are
refused the same way. Buckets are per server process (``--processes N`` multiplies the limits by N).

Defaults (:data:`DEFAULT_KEY_LIMIT`, :data:`DEFAULT_FAILURE_LIMIT`) are changed with ``--rate-limit`` and
``--failed-auth-limit`` (or ``$LEDGER_RATE_LIMIT``, ``$LEDGER_FAILED_AUTH_LIMIT``) as ``PER_SECOND[:BURST]``;
``0`` turns a limit off.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from ledger.entrypoints.grpc.errors import RpcCode, error_info, status


@dataclass(frozen=True, slots=True)
class Limit:
    """``per_second`` tokens added each second up to ``burst``; ``per_second`` 0 means no limit."""

    per_second: float
    burst: float

    @property
    def off(self) -> bool:
        return self.per_second <= 0

    def __str__(self) -> str:
        return "0" if self.off else f"{self.per_second:g}:{self.burst:g}"


DEFAULT_KEY_LIMIT: Final = Limit(1000, 2000)
"""Calls per second (and burst) of one API key on one server process."""

DEFAULT_FAILURE_LIMIT: Final = Limit(10, 100)
"""Failed key checks per second (and burst) of one peer address on one server process."""

MAX_BUCKETS: Final = 100_000
"""Buckets kept per kind; past this, full (idle) ones are forgotten first, so many peers cannot grow memory."""


def parse_limit(text: str) -> Limit:
    """``PER_SECOND`` or ``PER_SECOND:BURST`` (burst defaults to twice the rate, at least 1); ``0`` = off."""
    rate_text, _, burst_text = text.strip().partition(":")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else max(1.0, 2 * rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give PER_SECOND[:BURST], e.g. 100:200, or 0 for no limit") from None
    if not (math.isfinite(rate) and math.isfinite(burst)) or rate < 0 or (rate > 0 and burst < 1):
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be 0 or more and the burst at least 1")
    return Limit(rate, burst)


class TokenBucket:
    """Tokens refilled continuously at ``limit.per_second`` up to ``limit.burst``; the clock is injectable."""

    __slots__ = ("_at", "_limit", "_tokens")

    def __init__(self, limit: Limit, now: float) -> None:
        self._limit = limit
        self._tokens = limit.burst
        self._at = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        self._tokens = min(self._limit.burst, self._tokens + elapsed * self._limit.per_second)
        self._at = max(self._at, now)

    def wait(self, now: float) -> float:
        """Seconds until one token is there (0: there is one now); takes nothing."""
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._limit.per_second

    def take(self, now: float) -> float:
        """Take one token if there is one and return 0; otherwise take nothing and return the seconds to wait."""
        waiting = self.wait(now)
        if waiting == 0.0:
            self._tokens -= 1
        return waiting

    def spend(self, now: float) -> None:
        """Take one token, going below zero if need be (a failure already paid for counts in full)."""
        self._refill(now)
        self._tokens = max(self._tokens - 1, -self._limit.burst)

    def full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self._limit.burst


class Buckets:
    """One :class:`TokenBucket` per name (a key id or a peer address), made on first use, thread-safe."""

    def __init__(self, limit: Limit, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, name: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                for idle in [n for n, b in self._buckets.items() if b.full(now)]:
                    del self._buckets[idle]
            bucket = self._buckets[name] = TokenBucket(self.limit, now)
        return bucket

    def take(self, name: str) -> float:
        """0 when a call of ``name`` may go ahead (a token taken), else the seconds until it may."""
        if self.limit.off:
            return 0.0
        with self._lock:
            now = self._monotonic()
            return self._bucket(name, now).take(now)

    def wait(self, name: str) -> float:
        if self.limit.off:
            return 0.0
        with self._lock:
            now = self._monotonic()
            return self._bucket(name, now).wait(now)

    def spend(self, name: str) -> None:
        if self.limit.off:
            return
        with self._lock:
            now = self._monotonic()
            self._bucket(name, now).spend(now)


class RateLimits:
    """The limits an :class:`~ledger.entrypoints.grpc.auth.Authenticator` applies."""

    def __init__(
        self, per_key: Limit = DEFAULT_KEY_LIMIT, failures: Limit = DEFAULT_FAILURE_LIMIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.keys = Buckets(per_key, monotonic)
        self.failures = Buckets(failures, monotonic)


def peer_address(peer: str) -> str:
    """The address of a gRPC peer string without its port: ``ipv4:10.0.0.7:5123`` -> ``ipv4:10.0.0.7``."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


def limited_status(seconds: float, message: str, **metadata: str) -> status_pb2.Status:
    """RESOURCE_EXHAUSTED with ErrorInfo ``RATE_LIMITED`` and RetryInfo (at least 1 ms)."""
    millis = max(1, math.ceil(seconds * 1000))
    delay = Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)
    return status(
        RpcCode.RESOURCE_EXHAUSTED, message,
        error_info("RATE_LIMITED", {**metadata, "retry_after_ms": str(millis)}),
        error_details_pb2.RetryInfo(retry_delay=delay),
    )  # fmt: skip


# -- command line -------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate-limit", type=parse_limit, metavar="PER_SECOND[:BURST]",
        help=f"calls per second of one API key per server process, and its burst (default {DEFAULT_KEY_LIMIT};"
        " $LEDGER_RATE_LIMIT; 0: no limit); over it: RESOURCE_EXHAUSTED with RetryInfo",
    )  # fmt: skip
    parser.add_argument(
        "--failed-auth-limit", type=parse_limit, metavar="PER_SECOND[:BURST]",
        help=f"failed key checks per second of one peer address, and the burst (default {DEFAULT_FAILURE_LIMIT};"
        " $LEDGER_FAILED_AUTH_LIMIT; 0: no limit); over it, keys not verified before are refused unchecked",
    )  # fmt: skip


def worker_arguments(args: argparse.Namespace) -> list[str]:
    """The same limits for the worker processes of ``--processes N``."""
    return ["--rate-limit", str(args.rate_limit), "--failed-auth-limit", str(args.failed_auth_limit)]


def from_arguments(args: argparse.Namespace) -> RateLimits:
    return RateLimits(args.rate_limit, args.failed_auth_limit)
