"""What every group of the client's calls builds on: the channel and its stubs, one deadline per call with
its retries, idempotency keys and the request context."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Self, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from clients.python.channel import keyed_channel
from clients.python.refusal import LedgerRefusal, retry_delay
from loyalty.v1 import audit_pb2_grpc, common_pb2, import_pb2_grpc, ledger_pb2_grpc, query_pb2_grpc

T = TypeVar("T")


def timestamp_of(value: datetime) -> Timestamp:
    """``value`` as a protobuf Timestamp (in UTC)."""
    out = Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


class LedgerConnection:
    """One program's connection to the ledger: the stubs of its services and the plumbing every call shares."""

    def __init__(
        self,
        target: str,
        program_id: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.05,
        channel: grpc.Channel | None = None,
        api_key: str | None = None,
        tls: grpc.ChannelCredentials | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``api_key``: sent as ``authorization: Bearer <key>`` on every call (default ``$LEDGER_API_KEY``).

        ``timeout``: each call's deadline in seconds, for all its attempts together; ``retries``: attempts after
        the first; ``backoff``: the first retry's longest delay, doubled for each next one. ``sleep``, ``jitter``
        (a number in [0, 1)) and ``clock`` (monotonic seconds) are replaceable, e.g. by tests.

        ``tls``: connect with TLS, e.g. ``tls=tls_credentials("ca.pem")`` or, for mutual TLS,
        ``tls_credentials("ca.pem", "till.pem", "till.key")``; default plaintext.
        """
        self.program_id = program_id
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.jitter = jitter
        self.clock = clock
        self.attempts = 0
        """How many attempts the last call made."""
        self._own_channel = channel is None
        key = api_key if api_key is not None else os.environ.get("LEDGER_API_KEY")
        self.channel = channel if channel is not None else keyed_channel(target, key, credentials=tls)
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self.channel)
        self.query = query_pb2_grpc.MemberQueryServiceStub(self.channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channel)
        self.imports = import_pb2_grpc.ImportServiceStub(self.channel)

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[float], T]) -> T:
        """``fn(seconds_left)`` until it answers, retrying what :func:`retry_delay` allows within the deadline."""
        deadline = self.clock() + self.timeout
        self.attempts = 0
        while True:
            self.attempts += 1
            try:
                return fn(max(0.0, deadline - self.clock()))
            except grpc.RpcError as err:
                delay = retry_delay(err, self.attempts - 1, self.backoff, self.jitter())
                left = deadline - self.clock()
                if delay is None or self.attempts > self.retries or delay >= left:
                    raise LedgerRefusal.from_error(err) from err
                self.sleep(delay)

    @staticmethod
    def new_key() -> str:
        return str(uuid.uuid4())

    def _context(
        self,
        channel: common_pb2.Channel.ValueType,
        occurred_at: datetime | None,
        store_id: str = "",
        terminal_id: str = "",
        operator_id: str = "",
    ) -> common_pb2.RequestContext:
        ctx = common_pb2.RequestContext(
            channel=channel, store_id=store_id, terminal_id=terminal_id, operator_id=operator_id
        )
        if occurred_at is not None:
            ctx.occurred_at.CopyFrom(timestamp_of(occurred_at))
        return ctx
