"""How a failure becomes a gRPC status: one code, an English message and ``google.rpc`` details.

Every handler is wrapped by :func:`rpc`, which turns the exceptions of the facade into the status described in
``docs/errors.md``:

* ``InvalidCommand`` (and ``policies.PolicyInvalid``) -> ``INVALID_ARGUMENT`` with ``google.rpc.BadRequest``;
* ``Refusal`` -> ``FAILED_PRECONDITION`` with ``google.rpc.ErrorInfo`` (``ALREADY_EXISTS`` for the reasons that
  say a caller-chosen id is taken);
* ``NotFound`` -> ``NOT_FOUND``, reason ``<KIND>_NOT_FOUND``;
* ``Conflict`` -> ``ALREADY_EXISTS``, reason ``IDEMPOTENCY_KEY_REUSED``;
* ``Overloaded`` -> ``RESOURCE_EXHAUSTED`` with ``google.rpc.RetryInfo``; ``StoreUnavailable`` and a ``StoreError``
  (the store could not be reached) -> ``UNAVAILABLE``; ``DeadlineExceeded`` -> ``DEADLINE_EXCEEDED``;
  ``Contended`` -> ``ABORTED``;
* anything else -> ``INTERNAL`` with an error id (``google.rpc.RequestInfo.request_id``), logged with its trace.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar, cast

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ledger.application.writer import Contended, DeadlineExceeded, Overloaded, StoreUnavailable
from ledger.domain.errors import Conflict, InvalidCommand, NotFound, Refusal
from ledger.eventlog.port import DuplicateCommand, DuplicateEventId, StoreError, WrongExpectedVersion
from policies.errors import NoPolicyInForce, PolicyInvalid, UnknownCode, UnknownPolicyVersion

log = structlog.get_logger("ledger.entrypoints.grpc")

class RpcCode:
    """The ``google.rpc.Code`` numbers, from grpc's own table: importing ``google.rpc.code_pb2`` would clash with
    the copy of ``google/rpc/code.proto`` that kurrentdbclient registers in the same descriptor pool."""

    OK = grpc.StatusCode.OK.value[0]
    INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
    ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS.value[0]
    PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED.value[0]
    UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED.value[0]
    RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]
    ABORTED = grpc.StatusCode.ABORTED.value[0]
    INTERNAL = grpc.StatusCode.INTERNAL.value[0]
    UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
    DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


DOMAIN = "loyalty.v1"

#: Refusal reasons that say "a caller-chosen id is already taken": ALREADY_EXISTS, not FAILED_PRECONDITION.
ALREADY_EXISTS_REASONS = frozenset(
    {"PROGRAM_EXISTS", "MEMBER_EXISTS", "HOLD_EXISTS", "REFUND_EXISTS", "MEMBERSHIP_EXISTS", "EXCHANGE_EXISTS",
     "TRANSFER_EXISTS"}
)

#: Field names of domain commands that differ from the request field they come from.
FIELD_ALIASES: Mapping[str, str] = {
    "plan": "plan_code",
    "clock": "clock.kind",
    "clock.test_time": "clock.initial_time",
}

#: Which request field names an unknown policy code, by the kind of code.
_UNKNOWN_CODE_FIELDS: Mapping[str, str] = {
    "tier": "tier",
    "membership plan": "plan_code",
    "behaviour": "behaviour",
    "benefit": "benefit_code",
}


class InvalidFields(InvalidCommand):
    """Several fields of one request are bad: one BadRequest violation each."""

    def __init__(self, violations: Iterable[tuple[str, str]]) -> None:
        self.violations: tuple[tuple[str, str], ...] = tuple(violations)
        field, message = self.violations[0]
        super().__init__(field, message)
        self.args = ("; ".join(f"{f}: {m}" for f, m in self.violations),)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status(code: int, message: str, *details: Any) -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message, details=[_pack(d) for d in details])


def error_info(reason: str, metadata: Mapping[str, str]) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata))


def bad_request(violations: Iterable[tuple[str, str]], message: str | None = None) -> status_pb2.Status:
    items = list(violations)
    body = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=FIELD_ALIASES.get(f, f), description=d) for f, d in items
        ]
    )
    text = message or "; ".join(f"{FIELD_ALIASES.get(f, f)}: {d}" for f, d in items)
    return status(RpcCode.INVALID_ARGUMENT, text, body)


def shed(message: str, reason: str, retry_after: float, **metadata: str) -> status_pb2.Status:
    """RESOURCE_EXHAUSTED for load the ledger sheds: ErrorInfo ``reason`` and RetryInfo saying when to retry."""
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(max(int(retry_after * 1000), 1))
    return status(
        RpcCode.RESOURCE_EXHAUSTED,
        message,
        error_info(reason, {"retry_after_ms": str(delay.ToMilliseconds()), **metadata}),
        error_details_pb2.RetryInfo(retry_delay=delay),
    )


def refusal_status(exc: Refusal) -> status_pb2.Status:
    """A refusal as raised: its reason and metadata are already the public ones (``docs/errors.md``)."""
    code = RpcCode.ALREADY_EXISTS if exc.reason in ALREADY_EXISTS_REASONS else RpcCode.FAILED_PRECONDITION
    return status(code, exc.message, error_info(exc.reason, exc.metadata))


def status_of(exc: BaseException) -> status_pb2.Status:
    """The ``google.rpc.Status`` for an exception raised by a handler or the facade."""
    if isinstance(exc, InvalidFields):
        return bad_request(exc.violations)
    if isinstance(exc, InvalidCommand):
        return bad_request([(exc.field, exc.message)])
    if isinstance(exc, PolicyInvalid):
        return bad_request(
            [("document", f"document: {path or '(document)'}: {message}") for path, message in exc.problems]
            or [("document", "document: is not a valid policy")]
        )
    if isinstance(exc, Refusal):
        return refusal_status(exc)
    if isinstance(exc, NotFound):
        reason = exc.kind.upper().replace(" ", "_") + "_NOT_FOUND"
        return status(RpcCode.NOT_FOUND, str(exc), error_info(reason, {"id": exc.identifier}))
    if isinstance(exc, UnknownPolicyVersion):
        return status(RpcCode.NOT_FOUND, str(exc), error_info("POLICY_VERSION_NOT_FOUND", {}))
    if isinstance(exc, NoPolicyInForce):
        return status(RpcCode.FAILED_PRECONDITION, str(exc), error_info("POLICY_NOT_EFFECTIVE_YET", {}))
    if isinstance(exc, UnknownCode):
        return bad_request([(_UNKNOWN_CODE_FIELDS.get(exc.kind, exc.kind), str(exc))])
    if isinstance(exc, Conflict):
        return status(RpcCode.ALREADY_EXISTS, exc.message, error_info("IDEMPOTENCY_KEY_REUSED", {}))
    if isinstance(exc, Overloaded):
        return shed(str(exc) or "the write queue is full", "WRITE_QUEUE_FULL", exc.retry_after)
    if isinstance(exc, StoreUnavailable):
        return status(RpcCode.UNAVAILABLE, str(exc) or "the store is unavailable")
    if isinstance(exc, DeadlineExceeded):
        return status(RpcCode.DEADLINE_EXCEEDED, str(exc))
    if isinstance(exc, StoreError) and not isinstance(exc, (WrongExpectedVersion, DuplicateCommand, DuplicateEventId)):
        return status(RpcCode.UNAVAILABLE, f"the store is unavailable: {exc}")
    if isinstance(exc, Contended):
        return status(RpcCode.ABORTED, str(exc), error_info("CONCURRENT_MODIFICATION", {}))
    return status(RpcCode.INTERNAL, "internal error")


def abort(context: grpc.ServicerContext, exc: BaseException, *, idempotency_key: str = "") -> NoReturn:
    found = status_of(exc)
    if found.code == RpcCode.INTERNAL:
        # The caller gets an error id (in the message and as RequestInfo.request_id); the log has it with the trace.
        error_id = uuid.uuid4().hex[:16]
        log.error("rpc_failed", error_id=error_id, error=repr(exc), exc_info=exc)
        found = status(
            RpcCode.INTERNAL, f"internal error (error id {error_id})", error_details_pb2.RequestInfo(request_id=error_id)
        )
    if idempotency_key and found.code == RpcCode.ALREADY_EXISTS and isinstance(exc, Conflict):
        info = error_details_pb2.ErrorInfo()
        found.details[0].Unpack(info)
        info.metadata["idempotency_key"] = idempotency_key
        found.details[0].Pack(info)
    context.abort_with_status(rpc_status.to_status(found))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


F = TypeVar("F", bound=Callable[..., Any])


def rpc(handler: F) -> F:
    """Wrap a servicer method (unary or server-streaming) so every failure becomes a proper status.

    Every request first passes :func:`ledger.entrypoints.grpc.validation.check_request` (the limits common to all fields), so
    no control character, overlong string, out-of-range time or number, or unknown enum value reaches a handler.
    """

    from ledger.entrypoints.grpc.validation import (
        check_request,  # validation raises this module's InvalidFields
    )

    def key_of(request: Any) -> str:
        return str(getattr(request, "idempotency_key", "") or "")

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                check_request(request)
                yield from handler(self, request, context)
            except grpc.RpcError:
                raise
            except Exception as exc:
                abort(context, exc, idempotency_key=key_of(request))

        return cast(F, streaming)

    @functools.wraps(handler)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            check_request(request)
            return handler(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:
            abort(context, exc, idempotency_key=key_of(request))

    return cast(F, unary)
