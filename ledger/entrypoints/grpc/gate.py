"""The door of a stopping server: once closed, new calls are refused with UNAVAILABLE before anything of them
runs, while the calls already inside are counted until they have all finished.

grpc's own ``server.stop(grace)`` kills the calls that reached the server but were not yet handed to a handler
when it began (their callers see CANCELLED and cannot tell whether anything happened). So a stopping server
first closes this gate (callers get a clean UNAVAILABLE, safe to retry elsewhere with the same idempotency key),
waits for :meth:`Gate.wait_idle` (nothing inside, nothing knocking for a moment), and only then stops grpc.
A call that arrives in the instant grpc stops can still be cancelled before it ran (nothing of it is done).
Health checks pass the gate: they must still say NOT_SERVING.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
from grpc_status import rpc_status

from ledger.entrypoints.grpc.errors import RpcCode, error_info, status
from ledger.entrypoints.grpc.pipeline import Handler, Layer

_HEALTH = "/grpc.health.v1.Health/"

#: How long no call must knock on a closed gate before grpc is stopped.
QUIET_SECONDS = 0.2

class Gate(Layer):
    def __init__(self) -> None:
        self._closed = False
        self._inside = 0
        self._idle = threading.Condition()
        self._last_knock = time.monotonic()

    @property
    def inside(self) -> int:
        return self._inside

    def close(self) -> None:
        with self._idle:
            self._closed = True

    def wait_idle(self, timeout: float, quiet: float = QUIET_SECONDS) -> bool:
        """Wait until no call is inside and none has knocked for ``quiet`` seconds (True), or ``timeout`` (False).

        The quiet spell lets the callers whose last call just finished have their next one refused here, rather
        than arrive while grpc stops (which would kill it with CANCELLED)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while True:
                now = time.monotonic()
                calm_at = self._last_knock + quiet
                if not self._inside and now >= calm_at:
                    return True
                if now >= deadline:
                    return False
                self._idle.wait(min(deadline, calm_at if not self._inside else deadline) - now)

    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._idle:
            self._last_knock = time.monotonic()
            if not self._closed:
                self._inside += 1
                return
        context.abort_with_status(rpc_status.to_status(status(
            RpcCode.UNAVAILABLE, "the server is shutting down; retry on another server",
            error_info("SHUTTING_DOWN", {}),
        )))  # fmt: skip

    def _leave(self) -> None:
        with self._idle:
            self._inside -= 1
            if not self._inside:
                self._idle.notify_all()

    def wrap(self, method: str, handler: Handler) -> Handler:
        if method.startswith(_HEALTH):
            return handler
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                self._enter(context)
                try:
                    return inner_uu(request, context)
                finally:
                    self._leave()

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                self._enter(context)
                try:
                    yield from inner_us(request, context)
                finally:
                    self._leave()

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:  # ImportMembers
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                self._enter(context)
                try:
                    return inner_su(requests, context)
                finally:
                    self._leave()

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None:  # reflection
            inner_ss = handler.stream_stream

            def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                self._enter(context)
                try:
                    yield from inner_ss(requests, context)
                finally:
                    self._leave()

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler
