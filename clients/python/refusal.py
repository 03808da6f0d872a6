"""What a refused call raises (:class:`LedgerRefusal`, with the server's reason), and which failures a client
retries after how long (:func:`retry_delay`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

MAX_RETRY_DELAY = 10.0
"""The longest a client waits before one retry, whatever the server's RetryInfo says."""

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
"""Codes retried always; RESOURCE_EXHAUSTED is retried only with the server's RetryInfo."""


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
