"""Publishing the feed to NATS JetStream from ordinary (non-asyncio) code.

:class:`JetStreamPublisher` runs nats-py on its own event loop in a daemon thread; :meth:`~JetStreamPublisher.publish`
is a blocking call from any thread. It makes sure the stream exists (``LOYALTY_FEED`` on ``loyalty.v1.>``
unless told otherwise), publishes each message with ``Nats-Msg-Id`` so JetStream drops re-publishes within its
duplicate window, and returns only when JetStream acknowledged every message (or raises
:class:`PublishError`, in which case any of them may or may not be stored: the caller publishes them again).

Order: acks are pipelined (up to ``max_in_flight`` messages in flight) over one connection, and JetStream stores
the messages of one connection in the order it receives them. The connection does not reconnect by itself: a
client that reconnects would send the messages it buffered while disconnected after some sent before the drop
were lost, storing a later event before an earlier one. Instead, a lost connection (or any failed or missing
ack) fails the whole call and drops the connection; what the server stored is then a prefix of the messages in
order, the caller publishes them all again on a new connection, and JetStream's de-duplication drops the prefix.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Final, Protocol, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig

from ledger.feed.integration import FeedMessage

DEFAULT_SERVERS: Final = "nats://127.0.0.1:4222"
DEFAULT_STREAM: Final = "LOYALTY_FEED"
DEFAULT_SUBJECTS: Final = ("loyalty.v1.>",)

T = TypeVar("T")


class PublishError(Exception):
    """Publishing failed; some of the messages may have been stored. Publish them again (same msg ids)."""


class Publisher(Protocol):
    def publish(self, messages: Sequence[FeedMessage]) -> None:
        """Publish ``messages`` in order and return once every one is acknowledged; raise otherwise."""
        ...


class JetStreamPublisher:
    """A blocking JetStream publisher with its own asyncio loop thread. Thread-safe; close it when done."""

    def __init__(
        self,
        servers: str | Sequence[str] = DEFAULT_SERVERS,
        *,
        stream: str = DEFAULT_STREAM,
        subjects: Sequence[str] = DEFAULT_SUBJECTS,
        duplicate_window: timedelta = timedelta(minutes=2),
        max_age: timedelta = timedelta(days=7),
        replicas: int = 1,
        ack_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        max_in_flight: int = 256,
        ensure_stream: bool = True,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.stream = stream
        self.subjects = list(subjects)
        self.duplicate_window = duplicate_window
        self.max_age = max_age
        self.replicas = replicas
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.max_in_flight = max_in_flight
        self._ensure_stream = ensure_stream
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._call_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"nats-{stream}", daemon=True)
        self._thread.start()
        self._closed = False

    def __enter__(self) -> JetStreamPublisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- blocking API -----------------------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise PublishError("the publisher is closed")
        with self._call_lock:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(self) -> None:
        """Connect and make sure the stream exists (``publish`` does it too when needed)."""
        self._call(self._connected())

    def publish(self, messages: Sequence[FeedMessage]) -> None:
        if messages:
            self._call(self._publish(messages))

    def close(self) -> None:
        """Drain and close the connection and stop the loop thread. Idempotent."""
        if self._closed:
            return
        with self._call_lock:
            self._closed = True
            with contextlib.suppress(Exception):  # closing anyway
                asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    # -- on the loop --------------------------------------------------------------------------------------------

    async def _connected(self) -> JetStreamContext:
        if self._js is not None and self._nc is not None and not self._nc.is_closed:
            return self._js
        try:
            nc = await nats.connect(
                servers=self.servers,
                connect_timeout=self.connect_timeout,
                allow_reconnect=False,  # see the module docstring: ordering over a lost connection
            )
        except Exception as error:
            raise PublishError(f"cannot connect to NATS at {self.servers}: {error}") from error
        js = nc.jetstream(timeout=self.ack_timeout)
        try:
            if self._ensure_stream:
                await self._ensure(js)
        except Exception as error:
            await nc.close()
            raise PublishError(f"cannot set up the JetStream stream {self.stream!r}: {error}") from error
        self._nc, self._js = nc, js
        return js

    async def _ensure(self, js: JetStreamContext) -> None:
        try:
            await js.stream_info(self.stream)
            return
        except nats.js.errors.NotFoundError:
            pass
        config = StreamConfig(
            name=self.stream,
            subjects=self.subjects,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.max_age.total_seconds(),
            duplicate_window=self.duplicate_window.total_seconds(),
            num_replicas=self.replicas,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.stream_info(self.stream)  # created concurrently by another publisher

    async def _publish(self, messages: Sequence[FeedMessage]) -> None:
        js = await self._connected()
        in_flight: collections.deque[tuple[FeedMessage, asyncio.Future[PubAck]]] = collections.deque()
        try:
            for message in messages:
                while len(in_flight) >= self.max_in_flight:
                    await self._acked(*in_flight.popleft())
                future = await js.publish_async(
                    message.subject,
                    message.data,
                    wait_stall=self.ack_timeout,
                    headers=dict(message.headers),
                )
                in_flight.append((message, future))
            while in_flight:
                await self._acked(*in_flight.popleft())
        except Exception as error:
            for _, future in in_flight:
                future.cancel()
            await self._disconnect(drain=False)  # start the retry on a fresh connection
            if isinstance(error, PublishError):
                raise
            raise PublishError(f"publishing to {self.stream!r} failed: {error!r}") from error

    async def _acked(self, message: FeedMessage, future: asyncio.Future[PubAck]) -> PubAck:
        try:
            ack = await asyncio.wait_for(future, self.ack_timeout)
        except TimeoutError as error:
            raise PublishError(f"no JetStream ack for {message.msg_id!r} within {self.ack_timeout}s") from error
        except nats.errors.Error as error:
            raise PublishError(f"JetStream refused {message.msg_id!r} ({message.subject}): {error!r}") from error
        if ack.stream != self.stream:
            raise PublishError(f"{message.subject} was stored in stream {ack.stream!r}, not {self.stream!r}")
        return ack

    async def _disconnect(self, *, drain: bool = True) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is None or nc.is_closed:
            return
        try:
            if drain:
                await nc.drain()
            else:
                await nc.close()
        except Exception:
            with contextlib.suppress(Exception):
                await nc.close()
