"""One access line per gRPC call, and the per-call numbers for metrics: a server interceptor, the outermost one.

Each finished call (health checks excepted: load balancers ask every few seconds) writes one ``rpc`` record:
``method`` (``Service/Method``), ``status`` (the gRPC code's name), ``duration_ms``, ``program_id`` when the
request names one, ``key_id`` of the presented API key (the public part of ``lk_<key_id>_<secret>``; never the
secret, and not proof that the key was valid: ``status`` says that), ``error_id`` when the call failed with
INTERNAL (the id the caller got; the record ``rpc_failed`` of :mod:`ledger.entrypoints.grpc.errors` has it
with the stack), ``trace_id`` (the call's trace, :data:`CALL_TRACE_ID`, with traces on, whether the caller
sent a W3C ``traceparent`` or the server started the trace; with traces off, the caller's), and ``transport: http`` for a call
that came as JSON over HTTP (:mod:`ledger.entrypoints.http.gateway`). Nothing else of the request is
written: member ids, phone numbers, names and amounts never reach the log from here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol

import grpc
import structlog

from ledger.application.keys import split_token
from ledger.entrypoints.grpc.forwarded import forwarded
from ledger.entrypoints.grpc.pipeline import Handler, Layer

log = structlog.get_logger("ledger.access")

_HEALTH = "/grpc.health.v1.Health/"
_ERROR_ID = re.compile(r"\berror id ([0-9a-f]{8,64})\b")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
#: Server-side faults: logged at error level (the caller's own mistakes are info).
_FAULTS = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS"})

CALL_TRACE_ID: ContextVar[str] = ContextVar("ledger_call_trace_id", default="")
"""The trace id (32 hex digits) of the call being served, set by the tracing layer (outside this one) while
traces are on; empty otherwise."""

class CallObserver(Protocol):
    """Told of every finished call (metrics): the method (``Service/Method``), the status name, the seconds."""

    def call_finished(self, method: str, status: str, seconds: float) -> None: ...


def caller_of(metadata: Any) -> tuple[str, str]:
    """``(key_id, trace_id)`` from a call's metadata: empty strings for what it does not carry."""
    key_id = trace_id = ""
    for key, value in metadata or ():
        if not isinstance(value, str):
            continue
        if key == "authorization" and value.startswith("Bearer "):
            parts = split_token(value[len("Bearer ") :].strip())
            key_id = parts[0] if parts else "malformed"
        elif key == "traceparent":
            found = _TRACEPARENT.match(value.strip().lower())
            trace_id = found.group(1) if found else ""
    return key_id, trace_id


class AccessLog(Layer):
    """Times every call and writes its access line; hands the same numbers to ``observer`` (None: no metrics)."""

    def __init__(self, observer: CallObserver | None = None, *, write_lines: bool = True) -> None:
        self._observer = observer
        self._write_lines = write_lines

    def wrap(self, full: str, handler: Handler) -> Handler:
        if full.startswith(_HEALTH):
            return handler
        method = full.lstrip("/").rsplit(".", 1)[-1]  # "/loyalty.v1.LedgerService/EnrollMember" -> "LedgerService/EnrollMember"

        def finished(request: Any, context: grpc.ServicerContext, start: float, error: BaseException | None) -> None:
            seconds = time.perf_counter() - start
            code = _code_of(context, error)
            if self._observer is not None:
                self._observer.call_finished(method, code, seconds)
            if not self._write_lines:
                return
            metadata = context.invocation_metadata()
            key_id, trace_id = caller_of(metadata)
            trace_id = CALL_TRACE_ID.get() or trace_id
            fields: dict[str, Any] = {"method": method, "status": code, "duration_ms": round(seconds * 1000, 3)}
            if forwarded(metadata) is not None:
                fields["transport"] = "http"
            program_id = getattr(request, "program_id", None)
            if isinstance(program_id, str) and program_id:
                fields["program_id"] = program_id
            if key_id:
                fields["key_id"] = key_id
            if trace_id:
                fields["trace_id"] = trace_id
            if code in _FAULTS:
                error_id = _error_id(context)
                if error_id:
                    fields["error_id"] = error_id
                log.error("rpc", **fields)
            else:
                log.info("rpc", **fields)

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                error: BaseException | None = None
                try:
                    return inner_uu(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finished(request, context, start, error)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start = time.perf_counter()
                error: BaseException | None = None
                try:
                    yield from inner_us(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finished(request, context, start, error)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:  # ImportMembers
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                error: BaseException | None = None
                try:
                    return inner_su(requests, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finished(None, context, start, error)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None:  # reflection
            inner_ss = handler.stream_stream

            def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                start = time.perf_counter()
                error: BaseException | None = None
                try:
                    yield from inner_ss(requests, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finished(None, context, start, error)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


def _code_of(context: grpc.ServicerContext, error: BaseException | None) -> str:
    """The status the caller gets: the one the handler set (``abort``), else OK, or UNKNOWN for an exception
    that escaped unhandled (grpc answers those UNKNOWN), CANCELLED when the caller went away mid-stream."""
    code = getattr(context, "code", lambda: None)()  # grpc's context has code(); its stubs do not say so
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(error, GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN" if error is not None else "OK"


def _error_id(context: grpc.ServicerContext) -> str:
    details = getattr(context, "details", lambda: "")()
    text = details.decode("utf-8", "replace") if isinstance(details, bytes) else str(details or "")
    found = _ERROR_ID.search(text)
    return found.group(1) if found else ""
