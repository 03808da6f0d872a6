"""Limits on calls, so that no caller can tie the server up: a deadline on every call, and bounded streams.

:class:`CallLimits` is a server interceptor placed after the authenticator (it reads the proven key id):

* **Deadline.** Every ``loyalty.v1`` call runs with :data:`~ledger.application.deadline.CALL_DEADLINE` set to
  the earlier of the client's deadline and ``call_timeout`` seconds (default 30) from its start. A write waits
  for the writer until then and is answered DEADLINE_EXCEEDED after it; the writer drops a write whose deadline
  passed before it was decided, so nothing queues forever.
* **Waiting for a worker.** A call that arrives while every worker thread is busy waits in the server's queue.
  One that waited longer than ``max_worker_wait`` seconds (default 2) by the time a worker takes it is refused at
  once with RESOURCE_EXHAUSTED (reason ``SERVER_BUSY``, RetryInfo), without doing its work: under overload the
  backlog drains quickly instead of every caller waiting for seconds for work its client may have given up on.
* **Streams.** A streaming call (ReplayMember, VerifyProgram) holds a worker thread for as long as the client
  reads. At most ``max_streams`` of them run at once in the process and ``max_streams_per_key`` per API key (per
  peer without authentication); one more is refused at once with RESOURCE_EXHAUSTED, ErrorInfo reason
  ``TOO_MANY_STREAMS`` and a ``google.rpc.RetryInfo``. The other worker threads stay free for unary calls.
* **Page work.** Building a ReplayMember page (at most 1,000 events) is CPU work under the GIL; at most
  ``stream_workers`` streams (by default one per CPU) build a page at a time, the others wait without taking
  the GIL, so health checks and checkout calls keep getting their share of the interpreter while many streams
  run. (VerifyProgram is not paged this way: one of its messages may take a whole verification to come, so it
  is bounded by the stream limits alone.)
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_status import rpc_status

from ledger.application.deadline import CALL_DEADLINE
from ledger.application.principal import CURRENT
from ledger.entrypoints.grpc.errors import shed
from ledger.entrypoints.grpc.pipeline import ARRIVED, LEDGER_METHODS, Handler, Layer

DEFAULT_CALL_TIMEOUT = 30.0
DEFAULT_MAX_STREAMS = 16
DEFAULT_MAX_STREAMS_PER_KEY = 4
DEFAULT_MAX_WORKER_WAIT = 2.0
BUSY_RETRY_AFTER = 0.5
"""Seconds a call refused for waiting too long for a worker is told to wait (RetryInfo)."""
PAGED_METHODS = frozenset({"/loyalty.v1.AuditService/ReplayMember"})
"""Streams whose every message is a bounded page of work: built under the page-work tokens."""
STREAM_RETRY_AFTER = 1.0
"""Seconds a refused stream is told to wait (RetryInfo) before trying again."""


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CallLimits(Layer):
    def __init__(
        self,
        *,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_streams_per_key: int = DEFAULT_MAX_STREAMS_PER_KEY,
        stream_workers: int | None = None,
        max_worker_wait: float = DEFAULT_MAX_WORKER_WAIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.call_timeout = call_timeout
        self.max_worker_wait = max_worker_wait
        self._monotonic = monotonic  # measures only the wait for a worker (deadlines use time.monotonic)
        self.arrived = 0
        """``loyalty.v1`` calls that arrived so far (counted before they wait for a worker)."""
        self.max_streams = max_streams
        self.max_streams_per_key = max_streams_per_key
        self._lock = threading.Lock()
        self._streams = 0
        self._by_caller: dict[str, int] = {}
        self._work = threading.BoundedSemaphore(stream_workers or _cpus())

    @property
    def streams(self) -> int:
        """Streaming calls running now."""
        return self._streams

    def arrive(self, method: str) -> float | None:
        # This runs on the server's polling thread as the call arrives; the handler runs when a worker is free.
        if not method.startswith(LEDGER_METHODS):
            return None
        with self._lock:
            self.arrived += 1
        return self._monotonic()

    def wrap(self, method: str, handler: Handler) -> Handler:
        if not method.startswith(LEDGER_METHODS):
            return handler
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                self._started(context)
                token = CALL_DEADLINE.set(self._deadline(context))
                try:
                    return inner_uu(request, context)
                finally:
                    CALL_DEADLINE.reset(token)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream
            work = self._work if method in PAGED_METHODS else contextlib.nullcontext()

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                self._started(context)
                caller = self._caller(context)
                self._admit(caller, context)
                token = CALL_DEADLINE.set(self._deadline(context))
                pages = inner_us(request, context)
                try:
                    while True:
                        with work:  # build one page; wait for the client's reading without the token
                            try:
                                page = next(pages)
                            except StopIteration:
                                return
                        yield page
                finally:
                    CALL_DEADLINE.reset(token)
                    self._release(caller)
                    close = getattr(pages, "close", None)
                    if close is not None:
                        close()

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:  # ImportMembers: a stream (counted per key), under the call's deadline
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                self._started(context)
                caller = self._caller(context)
                self._admit(caller, context)
                token = CALL_DEADLINE.set(self._deadline(context))
                try:
                    return inner_su(requests, context)
                finally:
                    CALL_DEADLINE.reset(token)
                    self._release(caller)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        return handler

    def _started(self, context: grpc.ServicerContext) -> None:
        """A worker took the call: refuse it if it waited too long for one."""
        arrived = ARRIVED.get()
        if arrived is None:
            return
        waited = self._monotonic() - arrived
        if waited > self.max_worker_wait:
            found = shed(
                f"the server is busy: the call waited {waited:.1f} s for a worker; nothing was done",
                "SERVER_BUSY", BUSY_RETRY_AFTER,
            )  # fmt: skip
            context.abort_with_status(rpc_status.to_status(found))

    def _deadline(self, context: grpc.ServicerContext) -> float:
        remaining = context.time_remaining()
        limit = self.call_timeout if remaining is None else min(remaining, self.call_timeout)
        return time.monotonic() + limit

    @staticmethod
    def _caller(context: grpc.ServicerContext) -> str:
        principal = CURRENT.get()
        return f"key:{principal.key_id}" if principal is not None else f"peer:{context.peer()}"

    def _admit(self, caller: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            mine = self._by_caller.get(caller, 0)
            if self._streams < self.max_streams and mine < self.max_streams_per_key:
                self._streams += 1
                self._by_caller[caller] = mine + 1
                return
            per_key = mine >= self.max_streams_per_key
        limit = self.max_streams_per_key if per_key else self.max_streams
        message = (
            f"this key already has {limit} streams open; close one or retry later"
            if per_key
            else f"the server is serving {limit} streams; retry later"
        )
        found = shed(message, "TOO_MANY_STREAMS", STREAM_RETRY_AFTER, limit=str(limit),
                     scope="KEY" if per_key else "SERVER")  # fmt: skip
        context.abort_with_status(rpc_status.to_status(found))

    def _release(self, caller: str) -> None:
        with self._lock:
            self._streams -= 1
            left = self._by_caller.get(caller, 1) - 1
            if left > 0:
                self._by_caller[caller] = left
            else:
                self._by_caller.pop(caller, None)
