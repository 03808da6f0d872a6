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

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    import_pb2,
    import_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    member_pb2,
    query_pb2,
    query_pb2_grpc,
)

T = TypeVar("T")

MAX_RETRY_DELAY = 10.0
"""The longest a client waits before one retry, whatever the server's RetryInfo says."""

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
"""Codes retried always; RESOURCE_EXHAUSTED is retried only with the server's RetryInfo."""


if TYPE_CHECKING:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
    _StreamStream = grpc.StreamStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.StreamUnaryClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor
    _StreamStream = grpc.StreamStreamClientInterceptor
    _StreamUnary = grpc.StreamUnaryClientInterceptor


class BearerKey(_UnaryUnary, _UnaryStream, _StreamStream, _StreamUnary):
    """Adds ``authorization: Bearer <key>`` to every call of a channel (the ledger's API keys)."""

    def __init__(self, key: str) -> None:
        self._metadata = ("authorization", f"Bearer {key}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._metadata]
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass(frozen=True)
class _Details(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


def _pem(value: bytes | str | os.PathLike[str] | None) -> bytes | None:
    """PEM bytes as given, or read from a file path."""
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def tls_credentials(
    root_ca: bytes | str | os.PathLike[str] | None = None,
    client_cert: bytes | str | os.PathLike[str] | None = None,
    client_key: bytes | str | os.PathLike[str] | None = None,
) -> grpc.ChannelCredentials:
    """TLS to the ledger: trust ``root_ca`` (PEM bytes or a file; None: the system's roots) and, for mutual TLS,
    present ``client_cert`` with its ``client_key``."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together")
    return grpc.ssl_channel_credentials(_pem(root_ca), _pem(client_key), _pem(client_cert))


def keyed_channel(
    target: str, key: str | None, options: Sequence[tuple[str, Any]] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.Channel:  # fmt: skip
    """A channel to ``target`` whose calls carry ``key`` (none: no key); TLS with ``credentials``, else plaintext."""
    channel = (
        grpc.secure_channel(target, credentials, options=list(options)) if credentials is not None
        else grpc.insecure_channel(target, options=list(options))
    )  # fmt: skip
    return grpc.intercept_channel(channel, BearerKey(key)) if key else channel


class LedgerRefusal(Exception):
    """The server refused a call: gRPC status code, ErrorInfo reason and metadata, and the message."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        metadata: Mapping[str, str],
        message: str,
        field_violations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.metadata = dict(metadata)
        self.message = message
        self.field_violations = dict(field_violations or {})

    @classmethod
    def from_error(cls, err: grpc.RpcError) -> LedgerRefusal:
        code = _code(err) or grpc.StatusCode.UNKNOWN
        details = getattr(err, "details", None)
        message = str(details() or "") if callable(details) else str(err)
        reason = ""
        metadata: dict[str, str] = {}
        violations: dict[str, str] = {}
        status = (
            rpc_status.from_call(cast(grpc.Call, err))
            if callable(getattr(err, "trailing_metadata", None))
            else None
        )
        for detail in list(status.details) if status is not None else []:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
                metadata.update(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                for v in bad.field_violations:
                    violations[v.field] = v.description
        if not reason and violations:
            reason = "BAD_REQUEST"
        return cls(code, reason, metadata, message, violations)


def _retry_delay(err: grpc.RpcError) -> float:
    """The seconds the server asked the caller to wait (``google.rpc.RetryInfo``, e.g. a rate limit), else 0."""
    status = (
        rpc_status.from_call(cast(grpc.Call, err))
        if callable(getattr(err, "trailing_metadata", None))
        else None
    )
    for detail in list(status.details) if status is not None else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return 0.0


def retry_delay(err: grpc.RpcError, retry: int, backoff: float, jitter: float) -> float | None:
    """Seconds to wait before retry number ``retry`` (0 the first) of a call that failed with ``err``, or None
    when it must not be retried: full jitter (``jitter`` in [0, 1) times ``backoff * 2**retry``), at least the
    server's RetryInfo, at most :data:`MAX_RETRY_DELAY`."""
    code = _code(err)
    asked = _retry_delay(err)
    if code not in RETRYABLE and not (code == grpc.StatusCode.RESOURCE_EXHAUSTED and asked > 0):
        return None
    return float(min(MAX_RETRY_DELAY, max(asked, jitter * backoff * (2**retry))))


def _code(err: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(err, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else None


def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


class LoyaltyClient:
    """Typed wrapper over LedgerService, MemberQueryService and AuditService for one program."""

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

    def __enter__(self) -> LoyaltyClient:
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
            ctx.occurred_at.CopyFrom(_ts(occurred_at))
        return ctx

    # -- members -------------------------------------------------------------------------------------------

    def enroll(
        self, member_id: str = "", *, card_number: str | None = None, idempotency_key: str | None = None
    ) -> ledger_pb2.EnrollMemberResponse:
        identities = (
            [common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value=card_number)]
            if card_number
            else []
        )
        req = ledger_pb2.EnrollMemberRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            member_id=member_id,
            identities=identities,
        )
        return self._call(lambda t: self.ledger.EnrollMember(req, timeout=t))

    def lookup(
        self, value: str, kind: common_pb2.IdentityKind.ValueType = common_pb2.IDENTITY_KIND_CARD_NUMBER
    ) -> query_pb2.LookupMemberResponse:
        req = query_pb2.LookupMemberRequest(
            program_id=self.program_id, identity=common_pb2.ChannelIdentity(kind=kind, value=value)
        )
        return self._call(lambda t: self.query.LookupMember(req, timeout=t))

    def get_balance(
        self,
        member_id: str,
        *,
        min_version: int = 0,
        as_of: datetime | None = None,
        as_known_at: datetime | None = None,
    ) -> member_pb2.Balance:
        """The member's balance now; ``min_version``: at least as new as a write that returned that
        ``member_version``; ``as_of`` / ``as_known_at``: as it was at a business time, as recorded by a time."""
        req = query_pb2.GetBalanceRequest(
            program_id=self.program_id, member_id=member_id, min_version=min_version
        )
        if as_of is not None:
            req.as_of.CopyFrom(_ts(as_of))
        if as_known_at is not None:
            req.as_known_at.CopyFrom(_ts(as_known_at))
        return self._call(lambda t: self.query.GetBalance(req, timeout=t)).balance

    # Each read below takes ``min_version`` as get_balance does: at least as new as a write that returned that
    # ``member_version`` (read-your-writes); 0 = no requirement.

    def list_lots(
        self, member_id: str, *, page_size: int = 0, page_token: str = "", min_version: int = 0
    ) -> query_pb2.ListLotsResponse:
        """One page of the member's lots, in the order debits consume them."""
        req = query_pb2.ListLotsRequest(
            program_id=self.program_id,
            member_id=member_id,
            page_size=page_size,
            page_token=page_token,
            min_version=min_version,
        )
        return self._call(lambda t: self.query.ListLots(req, timeout=t))

    def get_tier_state(self, member_id: str, *, min_version: int = 0) -> member_pb2.TierState:
        """The member's tier, growth in the window, next tier, review, overrides and paid memberships."""
        req = query_pb2.GetTierStateRequest(
            program_id=self.program_id, member_id=member_id, min_version=min_version
        )
        return self._call(lambda t: self.query.GetTierState(req, timeout=t)).tier_state

    def list_entitlements(
        self, member_id: str, *, page_size: int = 0, page_token: str = "", min_version: int = 0
    ) -> query_pb2.ListEntitlementsResponse:
        """One page of the member's entitlements, newest grant first."""
        req = query_pb2.ListEntitlementsRequest(
            program_id=self.program_id,
            member_id=member_id,
            page_size=page_size,
            page_token=page_token,
            min_version=min_version,
        )
        return self._call(lambda t: self.query.ListEntitlements(req, timeout=t))

    def list_history(
        self, member_id: str, *, page_size: int = 0, page_token: str = "", min_version: int = 0
    ) -> query_pb2.ListHistoryResponse:
        """One page of the member's history, newest first (``min_version`` counts on the first page only)."""
        req = query_pb2.ListHistoryRequest(
            program_id=self.program_id,
            member_id=member_id,
            page_size=page_size,
            page_token=page_token,
            min_version=min_version,
        )
        return self._call(lambda t: self.query.ListHistory(req, timeout=t))

    def erase_member(
        self,
        member_id: str,
        reason: str,
        request_reference: str,
        operator_id: str,
        *,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.EraseMemberResponse:
        """Destroy the member's personal data for good (an operator key). ``reason`` must hold no personal data;
        ``request_reference``: the data-subject request it answers. The points and history stay."""
        req = ledger_pb2.EraseMemberRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(common_pb2.CHANNEL_OPERATOR_CONSOLE, None, operator_id=operator_id),
            member_id=member_id,
            reason=reason,
            request_reference=request_reference,
        )
        return self._call(lambda t: self.ledger.EraseMember(req, timeout=t))

    def export_member_data(self, member_id: str) -> dict[str, Any]:
        """The member's personal data, identities and history as one JSON document (a subject-access request)."""
        req = query_pb2.ExportMemberDataRequest(program_id=self.program_id, member_id=member_id)
        document: str = self._call(lambda t: self.query.ExportMemberData(req, timeout=t)).document
        parsed: dict[str, Any] = json.loads(document)
        return parsed

    # -- earning and spending ------------------------------------------------------------------------------

    def record_purchase(
        self,
        member_id: str,
        order_id: str,
        lines: Iterable[ledger_pb2.OrderLine],
        order_total_fen: int = 0,
        occurred_at: datetime | None = None,
        *,
        points_paid: int = 0,
        hold_id: str = "",
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        store_id: str = "",
        terminal_id: str = "",
        idempotency_key: str | None = None,
    ) -> ledger_pb2.RecordPurchaseResponse:
        req = ledger_pb2.RecordPurchaseRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, occurred_at, store_id, terminal_id),
            member_id=member_id,
            order_id=order_id,
            lines=list(lines),
            order_total_fen=order_total_fen,
            points_paid=points_paid,
            hold_id=hold_id,
        )
        return self._call(lambda t: self.ledger.RecordPurchase(req, timeout=t))

    def award(
        self,
        member_id: str,
        behaviour: str,
        reference: str = "",
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_APP,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.AwardPointsResponse:
        req = ledger_pb2.AwardPointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            behaviour=behaviour,
            reference=reference,
        )
        return self._call(lambda t: self.ledger.AwardPoints(req, timeout=t))

    def adjust_points(
        self,
        member_id: str,
        points: int,
        reason_code: str,
        operator_id: str,
        note: str,
        *,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.AdjustPointsResponse:
        """An operator's correction; the server requires a ``note`` saying why (it stays in the member's history)."""
        req = ledger_pb2.AdjustPointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(common_pb2.CHANNEL_OPERATOR_CONSOLE, None, operator_id=operator_id),
            member_id=member_id,
            points=points,
            reason_code=reason_code,
            note=note,
        )
        return self._call(lambda t: self.ledger.AdjustPoints(req, timeout=t))

    def hold_points(
        self,
        member_id: str,
        hold_id: str,
        points: int,
        order_id: str,
        order_total_fen: int,
        *,
        ttl_seconds: int = 0,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        store_id: str = "",
        terminal_id: str = "",
        idempotency_key: str | None = None,
    ) -> ledger_pb2.HoldPointsResponse:
        req = ledger_pb2.HoldPointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None, store_id, terminal_id),
            member_id=member_id,
            hold_id=hold_id,
            points=points,
            order_id=order_id,
            order_total_fen=order_total_fen,
            ttl_seconds=ttl_seconds,
        )
        return self._call(lambda t: self.ledger.HoldPoints(req, timeout=t))

    def commit_hold(
        self,
        member_id: str,
        hold_id: str,
        points: int = 0,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.CommitHoldResponse:
        req = ledger_pb2.CommitHoldRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            hold_id=hold_id,
            points=points,
        )
        return self._call(lambda t: self.ledger.CommitHold(req, timeout=t))

    def release_hold(
        self,
        member_id: str,
        hold_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.ReleaseHoldResponse:
        req = ledger_pb2.ReleaseHoldRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            hold_id=hold_id,
        )
        return self._call(lambda t: self.ledger.ReleaseHold(req, timeout=t))

    def refund_purchase(
        self,
        member_id: str,
        order_id: str,
        refund_id: str,
        *,
        whole_order: bool = True,
        lines: Iterable[ledger_pb2.RefundLine] = (),
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.RefundPurchaseResponse:
        req = ledger_pb2.RefundPurchaseRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            order_id=order_id,
            refund_id=refund_id,
            whole_order=whole_order,
            lines=list(lines),
        )
        return self._call(lambda t: self.ledger.RefundPurchase(req, timeout=t))

    # -- the points mall -----------------------------------------------------------------------------------

    def exchange_points(
        self,
        member_id: str,
        exchange_id: str,
        reward_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.ExchangePointsResponse:
        """Exchange points for one unit of a reward of the points mall; a retry with the same key is answered once."""
        req = ledger_pb2.ExchangePointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            exchange_id=exchange_id,
            reward_id=reward_id,
        )
        return self._call(lambda t: self.ledger.ExchangePoints(req, timeout=t))

    def cancel_exchange(
        self,
        member_id: str,
        exchange_id: str,
        reason: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.CancelExchangeResponse:
        """Cancel an unused exchange: its points back into their lots, its unit back to stock."""
        req = ledger_pb2.CancelExchangeRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            exchange_id=exchange_id,
            reason=reason,
        )
        return self._call(lambda t: self.ledger.CancelExchange(req, timeout=t))

    def adjust_stock(
        self, reward_id: str, units: int, reason: str, operator_id: str, *, idempotency_key: str | None = None
    ) -> ledger_pb2.AdjustStockResponse:
        """An operator adds (positive) or removes (negative) units of a reward's stock, with a reason."""
        req = ledger_pb2.AdjustStockRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(common_pb2.CHANNEL_OPERATOR_CONSOLE, None, operator_id=operator_id),
            reward_id=reward_id,
            units=units,
            reason=reason,
        )
        return self._call(lambda t: self.ledger.AdjustStock(req, timeout=t))

    def list_rewards(self, member_id: str = "") -> list[query_pb2.RewardOffer]:
        """The points mall's catalog with the stock left; with ``member_id``, what that member may exchange now
        (``allowed``) and, when not, why (``refusal_reason``)."""
        req = query_pb2.ListRewardsRequest(program_id=self.program_id, member_id=member_id)
        return list(self._call(lambda t: self.query.ListRewards(req, timeout=t)).rewards)

    def list_exchanges(self, member_id: str, *, min_version: int = 0) -> list[query_pb2.ExchangeRecord]:
        """The member's points-mall exchanges, newest first."""
        req = query_pb2.ListExchangesRequest(
            program_id=self.program_id, member_id=member_id, min_version=min_version
        )
        return list(self._call(lambda t: self.query.ListExchanges(req, timeout=t)).exchanges)

    # -- family accounts -----------------------------------------------------------------------------------

    def create_household(
        self,
        owner_member_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.CreateHouseholdResponse:
        """Open a household owned by ``owner_member_id`` (its id is the owner's member id)."""
        req = ledger_pb2.CreateHouseholdRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=owner_member_id,
        )
        return self._call(lambda t: self.ledger.CreateHousehold(req, timeout=t))

    def join_household(
        self,
        member_id: str,
        owner_member_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.JoinHouseholdResponse:
        """Put ``member_id`` into the household of ``owner_member_id`` (the caller vouches for both members)."""
        req = ledger_pb2.JoinHouseholdRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            owner_member_id=owner_member_id,
        )
        return self._call(lambda t: self.ledger.JoinHousehold(req, timeout=t))

    def leave_household(
        self,
        member_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.LeaveHouseholdResponse:
        """Take ``member_id`` out of its household (it keeps its points); the owner's leave closes an empty one."""
        req = ledger_pb2.LeaveHouseholdRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
        )
        return self._call(lambda t: self.ledger.LeaveHousehold(req, timeout=t))

    def transfer_points(
        self,
        member_id: str,
        to_member_id: str,
        transfer_id: str,
        points: int,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.TransferPointsResponse:
        """Give ``points`` to another member of the household; they keep their expiry. A retry is answered once."""
        req = ledger_pb2.TransferPointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            to_member_id=to_member_id,
            transfer_id=transfer_id,
            points=points,
        )
        return self._call(lambda t: self.ledger.TransferPoints(req, timeout=t))

    def get_household(self, member_id: str, *, min_version: int = 0) -> query_pb2.GetHouseholdResponse:
        """The household ``member_id`` is in: owner, members, seats, and what it may still give this month
        (``min_version``: of ``member_id``)."""
        req = query_pb2.GetHouseholdRequest(
            program_id=self.program_id, member_id=member_id, min_version=min_version
        )
        return self._call(lambda t: self.query.GetHousehold(req, timeout=t))

    # -- moving in -----------------------------------------------------------------------------------------

    def import_members(
        self,
        rows: Iterable[import_pb2.ImportRow],
        source: str,
        *,
        dry_run: bool = False,
        rows_per_message: int = 200,
        timeout: float | None = None,
    ) -> import_pb2.ImportMembersResponse:
        """Stream members from the previous system into the program (``ImportService.ImportMembers``, an
        operator or admin key); at most 100,000 rows a call. Each row's idempotency key is the program, ``source``
        and its member id, so a retry (the whole stream again, on UNAVAILABLE) imports nothing twice.
        ``timeout``: the call's deadline (default: the client's ``timeout``)."""
        batch = list(rows)

        def messages() -> Iterable[import_pb2.ImportMembersRequest]:
            for start in range(0, max(len(batch), 1), rows_per_message):
                yield import_pb2.ImportMembersRequest(
                    program_id=self.program_id, source=source, dry_run=dry_run,
                    rows=batch[start : start + rows_per_message],
                )  # fmt: skip

        saved = self.timeout
        self.timeout = timeout if timeout is not None else saved
        try:
            return self._call(lambda t: self.imports.ImportMembers(iter(messages()), timeout=t))
        finally:
            self.timeout = saved

    # -- audit ---------------------------------------------------------------------------------------------

    def get_liability(
        self, as_of: datetime | None = None, *, as_known_at: datetime | None = None
    ) -> audit_pb2.GetLiabilityResponse:
        """The program's points liability in points and fen as of a business time (unset: now)."""
        req = audit_pb2.GetLiabilityRequest(program_id=self.program_id)
        if as_of is not None:
            req.as_of.CopyFrom(_ts(as_of))
        if as_known_at is not None:
            req.as_known_at.CopyFrom(_ts(as_known_at))
        return self._call(lambda t: self.audit.GetLiability(req, timeout=t))

    def replay_member(
        self, member_id: str, after_version: int = 0, page_size: int = 0
    ) -> list[audit_pb2.ReplayedEvent]:
        """Every event of the member after ``after_version``, oldest first (the streamed pages, concatenated)."""
        req = audit_pb2.ReplayMemberRequest(
            program_id=self.program_id, member_id=member_id, after_version=after_version, page_size=page_size
        )
        return self._call(
            lambda t: [event for page in self.audit.ReplayMember(req, timeout=t) for event in page.events]
        )
