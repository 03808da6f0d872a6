"""One OpenTelemetry SERVER span for every ``loyalty.v1`` call: a layer of the call pipeline, in it only when
traces are turned on (:mod:`ledger.entrypoints.traces`), so a server without them pays nothing.

The span is named ``Service/Method`` (``LedgerService/EnrollMember``, as on the access line) and continues the
caller's trace from the W3C ``traceparent`` and ``tracestate`` metadata. It holds ``rpc.system`` (``grpc``),
``rpc.service`` (``loyalty.v1.LedgerService``), ``rpc.method``, ``rpc.grpc.status_code`` (the number) and
``loyalty.program_id`` when the request names one. Nothing else of the request: member ids, phone numbers,
names and amounts never reach a span, and neither do error messages. The span's status is ERROR only for a
server fault (INTERNAL, UNKNOWN, DATA_LOSS); a caller's mistake (NOT_FOUND, INVALID_ARGUMENT, ...) leaves it
unset. Health checks and reflection get no span; an unknown method never reaches a layer.

Inside a call's span, :meth:`Tracing.writer_wait` (the writer's ``on_wait`` hook) adds a child span
``ledger.writer.wait`` around the wait for the one writer (its queue, the decision, the commit), with
``ledger.writer.requests`` and ``ledger.writer.queued`` (requests already waiting). Under it, once the answer is
in, the phases of the group of commands that answered (the writer's :class:`GroupPhases`, plain times): spans
``ledger.writer.decide``, ``ledger.store.append`` and ``ledger.projection.write`` with the times the writer
recorded (``start_time`` / ``end_time``), each with ``ledger.writer.group_size`` and ``ledger.writer.attempt``.
The projection is a child of the append when it ran inside the append's transaction (SQLite, PostgreSQL), a
sibling after it otherwise (KurrentDB, ``memory://``). A group answers many calls: each call's wait gets its own
copy of the group's phase spans (the same times in every trace), so one trace tells the whole story of its call.
The ledger's own writes (the scheduler) have no call span and get none.

While a call's span is current, :data:`ledger.entrypoints.grpc.access.CALL_TRACE_ID` holds its trace id, so the
access line carries it whether the caller sent a ``traceparent`` or the server started the trace.

Only the OpenTelemetry API is used here: the tracer (and so the SDK and the exporter behind it) is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import Any

import grpc
from opentelemetry.context import Context
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    get_current_span,
    set_span_in_context,
    use_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ledger.application.writer import GroupPhases, PhaseSink
from ledger.entrypoints.grpc.access import CALL_TRACE_ID
from ledger.entrypoints.grpc.pipeline import LEDGER_METHODS, Handler, Layer

_PROPAGATOR = TraceContextTextMapPropagator()
_CARRIED = frozenset(_PROPAGATOR.fields)  # traceparent, tracestate
#: Server faults: the only calls whose span is ERROR.
_FAULTS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})


class Tracing(Layer):
    """Puts every ``loyalty.v1`` call in a SERVER span of ``tracer``."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def wrap(self, full: str, handler: Handler) -> Handler:
        if not full.startswith(LEDGER_METHODS):
            return handler
        service, _, rpc_method = full.lstrip("/").partition("/")  # "loyalty.v1.LedgerService", "EnrollMember"
        name = f"{service.rsplit('.', 1)[-1]}/{rpc_method}"
        fixed = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc_method}
        tracer = self._tracer

        def start(request: Any, context: grpc.ServicerContext) -> Span:
            attributes: dict[str, str] = dict(fixed)
            program_id = getattr(request, "program_id", None)
            if isinstance(program_id, str) and program_id:
                attributes["loyalty.program_id"] = program_id
            return tracer.start_span(
                name, context=_caller_context(context), kind=SpanKind.SERVER, attributes=attributes,
                record_exception=False, set_status_on_exception=False,
            )  # fmt: skip

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                span = start(request, context)
                error: BaseException | None = None
                try:
                    with _current(span):
                        return inner_uu(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    _finish(span, context, error)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                span = start(request, context)
                error: BaseException | None = None
                try:
                    with _current(span):
                        yield from inner_us(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    _finish(span, context, error)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:  # ImportMembers: the span has no program (it is in each message)
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                span = start(None, context)
                error: BaseException | None = None
                try:
                    with _current(span):
                        return inner_su(requests, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    _finish(span, context, error)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        return handler

    def writer_wait(self, requests: int, queued: int) -> AbstractContextManager[PhaseSink | None]:
        """A child span of the current call's span around its wait for the writer, entered as what the writer
        tells the phases of the groups that answered; nothing outside a call."""
        if not get_current_span().is_recording():
            return nullcontext()
        return self._waiting(requests, queued)

    @contextmanager
    def _waiting(self, requests: int, queued: int) -> Iterator[PhaseSink]:
        with self._tracer.start_as_current_span(
            "ledger.writer.wait", kind=SpanKind.INTERNAL,
            attributes={"ledger.writer.requests": requests, "ledger.writer.queued": queued},
            record_exception=False, set_status_on_exception=False,
        ) as wait:  # fmt: skip
            yield partial(_phase_spans, self._tracer, wait)


def _phase_spans(tracer: Tracer, wait: Span, phases: GroupPhases) -> None:
    """The group's phases as spans under ``wait``, at the times the writer recorded."""
    under_wait = set_span_in_context(wait)
    attributes = {"ledger.writer.group_size": phases.commands, "ledger.writer.attempt": phases.attempt}

    def span(name: str, times: tuple[int, int], context: Context) -> Span:
        return tracer.start_span(
            name, context=context, kind=SpanKind.INTERNAL, attributes=attributes, start_time=times[0],
            record_exception=False, set_status_on_exception=False,
        )  # fmt: skip

    span("ledger.writer.decide", phases.decide, under_wait).end(end_time=phases.decide[1])
    if phases.append is None:
        return
    append = span("ledger.store.append", phases.append, under_wait)
    if phases.project is not None:
        inside = set_span_in_context(append) if phases.projected_in_append else under_wait
        span("ledger.projection.write", phases.project, inside).end(end_time=phases.project[1])
    append.end(end_time=phases.append[1])


def _caller_context(context: grpc.ServicerContext) -> Context | None:
    """The caller's trace from the call's ``traceparent`` / ``tracestate`` metadata, or None (a new trace)."""
    carrier = {key: value for key, value in context.invocation_metadata() or () if key in _CARRIED}
    return _PROPAGATOR.extract(carrier) if carrier else None


@contextmanager
def _current(span: Span) -> Iterator[Span]:
    """``span`` as the current one (for spans of the call's own work; its trace id for the access line), ended
    by :func:`_finish`, not here."""
    token = CALL_TRACE_ID.set(format(span.get_span_context().trace_id, "032x"))
    try:
        with use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield span
    finally:
        CALL_TRACE_ID.reset(token)


def _finish(span: Span, context: grpc.ServicerContext, error: BaseException | None) -> None:
    code = _code_of(context, error)
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _FAULTS:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def _code_of(context: grpc.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the caller gets: the one the handler set (``abort``), else OK, or UNKNOWN for an exception
    that escaped unhandled, CANCELLED when the caller went away mid-stream."""
    code = getattr(context, "code", lambda: None)()  # grpc's context has code(); its stubs do not say so
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(error, GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN if error is not None else grpc.StatusCode.OK
