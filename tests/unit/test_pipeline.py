"""The server's layers are wrapped around a method once, and still see every call (a real server on a real port)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from ledger.entrypoints.grpc.pipeline import ARRIVED, CallPipeline, Handler, Layer

METHOD = "/loyalty.v1.Probe/Echo"


class Recording(Layer):
    """Counts its wraps and arrivals; its behaviour records the call's arrival reading and its own name."""

    def __init__(self, name: str, readings: Iterator[float] | None = None) -> None:
        self.name = name
        self.readings = readings
        self.wraps: list[str] = []
        self.arrivals = 0
        self.seen: list[tuple[str, float | None]] = []

    def arrive(self, method: str) -> float | None:
        self.arrivals += 1
        return next(self.readings) if self.readings is not None else None

    def wrap(self, method: str, handler: Handler) -> Handler:
        self.wraps.append(method)
        inner = handler.unary_unary
        assert inner is not None

        def unary_unary(request: bytes, context: grpc.ServicerContext) -> Any:
            self.seen.append((self.name, ARRIVED.get()))
            return inner(request + self.name.encode(), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary)


@pytest.fixture
def layers() -> Iterator[tuple[Recording, Recording, grpc.Channel]]:
    outer, inner = Recording("a", itertools.count(100.0)), Recording("b")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[CallPipeline([outer, inner])])
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("loyalty.v1.Probe", {"Echo": echo}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield outer, inner, channel
    finally:
        channel.close()
        server.stop(None)


def test_each_layer_wraps_a_method_once_and_sees_every_call_in_order(
    layers: tuple[Recording, Recording, grpc.Channel],
) -> None:
    outer, inner, channel = layers
    call = channel.unary_unary(METHOD, None, None)
    answers = [call(b"x", timeout=10) for _ in range(3)]
    assert answers == [b"xab"] * 3  # the first layer is the outermost
    assert (outer.wraps, inner.wraps) == ([METHOD], [METHOD])
    assert (outer.arrivals, inner.arrivals) == (3, 3)
    # each call's behaviour sees the reading taken as that call arrived
    assert outer.seen == [("a", 100.0), ("a", 101.0), ("a", 102.0)]
    assert inner.seen == [("b", 100.0), ("b", 101.0), ("b", 102.0)]


def test_an_unknown_method_is_unimplemented_and_not_remembered(
    layers: tuple[Recording, Recording, grpc.Channel],
) -> None:
    outer, _, channel = layers
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/loyalty.v1.Probe/Nothing", None, None)(b"x", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert outer.wraps == []
