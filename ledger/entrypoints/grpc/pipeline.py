"""The layers every call passes (access log, shutdown gate, authentication, limits), wrapped around each method's
handler once, not on every call.

grpc runs each server interceptor's ``intercept_service`` for every call, and an interceptor that adds
behaviour must build a new handler each time: with four layers that was the largest part of the server's own
cost per call after the request's work. A :class:`Layer` instead says once per method how that method's
handler is wrapped (:meth:`Layer.wrap`); everything that differs between calls (the metadata, the peer, the
deadline) is read from the call's context inside the wrapped behaviour. :class:`CallPipeline`, the server's
one interceptor, composes the layers for a method the first time it is called and hands the same composed
handler to every later call.

What must be seen as the call arrives, on the server's polling thread before the call waits for a worker
thread, goes through :meth:`Layer.arrive`: :class:`~ledger.entrypoints.grpc.limits.CallLimits` notes the time
there (a call that waited too long for a worker is refused without doing its work), and its reading reaches
the wrapped behaviour in :data:`ARRIVED`.

A layer is still a plain grpc interceptor too (wrapping on every call), for a server built with it alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    _Interceptor = grpc.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.ServerInterceptor
    Handler = grpc.RpcMethodHandler

Continuation = Callable[[grpc.HandlerCallDetails], "Handler | None"]

ARRIVED: ContextVar[float | None] = ContextVar("ledger_call_arrived", default=None)
"""While a ``loyalty.v1`` call's behaviour runs: the reading :meth:`Layer.arrive` took as it arrived."""

LEDGER_METHODS = "/loyalty."


class Layer(_Interceptor):
    """One concern of every call, wrapped around a method's handler once."""

    def wrap(self, method: str, handler: Handler) -> Handler:
        """``handler`` of ``method`` (``/package.Service/Method``) with this layer's behaviour around it."""
        raise NotImplementedError

    def arrive(self, method: str) -> float | None:
        """Called for every call as it arrives, before it waits for a worker thread: a clock reading to hand to
        the behaviour in :data:`ARRIVED`, or None. Most layers need nothing here."""
        return None

    def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        handler = continuation(details)
        if handler is None:
            return None
        arrived = self.arrive(details.method)
        return on_arrival(self.wrap(details.method, handler), arrived)


class CallPipeline(_Interceptor):
    """The server's one interceptor: ``layers`` (the first outermost) composed once per method."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self._layers = tuple(layers)
        self._arriving = tuple(layer for layer in self._layers if type(layer).arrive is not Layer.arrive)
        self._composed: dict[str, Handler] = {}

    def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler | None:
        method: str = details.method
        arrived: float | None = None
        for layer in self._arriving:
            reading = layer.arrive(method)
            if reading is not None:
                arrived = reading
        composed = self._composed.get(method)
        if composed is None:
            handler = continuation(details)
            if handler is None:
                return None  # not cached: an unknown method must not grow the table
            composed = handler
            for layer in reversed(self._layers):
                composed = layer.wrap(method, composed)
            self._composed[method] = composed
        return on_arrival(composed, arrived)


def on_arrival(handler: Handler, arrived: float | None) -> Handler:
    """``handler`` for one call, its behaviour running with :data:`ARRIVED` set to ``arrived``."""
    if arrived is None:
        return handler
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            token = ARRIVED.set(arrived)
            try:
                return inner_uu(request, context)
            finally:
                ARRIVED.reset(token)

        return grpc.unary_unary_rpc_method_handler(unary_unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            token = ARRIVED.set(arrived)
            try:
                yield from inner_us(request, context)
            finally:
                ARRIVED.reset(token)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            token = ARRIVED.set(arrived)
            try:
                return inner_su(requests, context)
            finally:
                ARRIVED.reset(token)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    return handler
