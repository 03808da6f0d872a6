"""A small typed client for the loyalty.v1 gRPC API.

Every write generates one idempotency key (uuid4, the command's id) per call and sends it unchanged on every
attempt, so a retried command is applied at most once. Reads and writes are retried on UNAVAILABLE and ABORTED,
and on RESOURCE_EXHAUSTED only when the server sent ``google.rpc.RetryInfo`` (a rate limit, a full write
queue): at most ``retries`` more attempts, each after a delay drawn with full jitter from ``[0, backoff * 2**n]``
(at least what RetryInfo asks, at most :data:`MAX_RETRY_DELAY`), all within the call's one deadline
(``timeout``): an attempt gets only the time left, and no retry starts that could not finish before it. Any
other failure is raised as :class:`LedgerRefusal`. :func:`tls_credentials` connects with
TLS or mutual TLS.
"""

from __future__ import annotations

from clients.python.audit_calls import AuditCalls
from clients.python.channel import BearerKey, keyed_channel, tls_credentials
from clients.python.household_calls import HouseholdCalls
from clients.python.mall_calls import MallCalls
from clients.python.member_calls import MemberCalls
from clients.python.points_calls import PointsCalls
from clients.python.query_calls import QueryCalls
from clients.python.refusal import MAX_RETRY_DELAY, RETRYABLE, LedgerRefusal, retry_delay

__all__ = [
    "MAX_RETRY_DELAY",
    "RETRYABLE",
    "BearerKey",
    "LedgerRefusal",
    "LoyaltyClient",
    "keyed_channel",
    "retry_delay",
    "tls_credentials",
]


class LoyaltyClient(MemberCalls, QueryCalls, PointsCalls, MallCalls, HouseholdCalls, AuditCalls):
    """Typed wrapper over LedgerService, MemberQueryService, AuditService and ImportService for one program.

    The calls are grouped by what they are about (:mod:`clients.python.member_calls`, ``query_calls``, ``points_calls``,
    ``mall_calls``, ``household_calls``, ``audit_calls``); the channel, deadline and retries are
    :class:`~clients.python.connection.LedgerConnection`'s.
    """
