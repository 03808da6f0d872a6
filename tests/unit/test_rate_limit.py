"""Rate limits on a manual clock: token buckets refill at their rate up to their burst, limits parse from the
command line, refusals carry RetryInfo, and a throttled peer gets no slow key check (no Argon2, no log read)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ledger.adapters.memory.store import InMemoryEventStore
from ledger.application.clock import ManualClock
from ledger.application.keys import KeyCheckThrottled, KeyRing
from ledger.entrypoints.grpc.errors import RpcCode
from ledger.entrypoints.grpc.rate_limit import (
    MAX_BUCKETS,
    Buckets,
    Limit,
    TokenBucket,
    limited_status,
    parse_limit,
    peer_address,
)


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(Limit(per_second=2, burst=3), now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token comes every 0.5 s
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert [bucket.take(100.0) for _ in range(4)][-1] > 0  # refilled to the burst, not beyond
    assert bucket.take(99.0) > 0  # a clock going back adds nothing


def test_spent_failures_go_below_zero_and_refill_later() -> None:
    bucket = TokenBucket(Limit(per_second=1, burst=2), now=0.0)
    for _ in range(4):
        bucket.spend(0.0)
    assert bucket.wait(0.0) == pytest.approx(3.0)  # two below zero: three seconds to one token
    assert bucket.wait(3.0) == 0.0
    assert not bucket.full(3.0) and bucket.full(4.0)


def test_buckets_are_per_name_and_off_means_no_limit() -> None:
    clock = Monotonic()
    buckets = Buckets(Limit(1, 1), clock)
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    assert buckets.take("b") == 0.0
    clock.now += 1
    assert buckets.take("a") == 0.0
    off = Buckets(Limit(0, 0), clock)
    assert all(off.take("a") == 0.0 for _ in range(10_000))


def test_idle_buckets_are_forgotten_past_the_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.entrypoints.grpc.rate_limit as module

    monkeypatch.setattr(module, "MAX_BUCKETS", 3)
    clock = Monotonic()
    buckets = Buckets(Limit(1, 1), clock)
    for name in "abc":
        buckets.take(name)
    clock.now += 10  # all full again: idle
    buckets.take("d")
    assert len(buckets._buckets) == 1 and MAX_BUCKETS > 3


@pytest.mark.parametrize(("text", "limit"), [("100", Limit(100, 200)), ("5:50", Limit(5, 50)), ("0", Limit(0, 1)),
                                             ("0.5", Limit(0.5, 1))])  # fmt: skip
def test_limits_parse(text: str, limit: Limit) -> None:
    parsed = parse_limit(text)
    assert parsed.per_second == limit.per_second and (parsed.off or parsed.burst == limit.burst)
    assert parse_limit(str(parsed)) == parsed or parsed.off


@pytest.mark.parametrize("text", ["", "x", "-1", "5:0", "nan", "5:x", "inf"])
def test_bad_limits_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_limit(text)


def test_a_refusal_says_when_to_retry() -> None:
    found = limited_status(0.2501, "slow down", limit="key", key_id="k1")
    assert found.code == RpcCode.RESOURCE_EXHAUSTED
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert found.details[0].Unpack(info) and found.details[1].Unpack(retry)
    assert (info.reason, info.metadata["retry_after_ms"], info.metadata["key_id"]) == (
        "RATE_LIMITED",
        "251",
        "k1",
    )
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (0, 251_000_000)


def test_peer_addresses_lose_their_port() -> None:
    assert peer_address("ipv4:10.0.0.7:5123") == "ipv4:10.0.0.7"
    assert peer_address("ipv6:[::1]:5123") == "ipv6:[::1]"
    assert peer_address("unix:/tmp/s") == "unix:/tmp/s"


def test_a_throttled_caller_gets_no_slow_check_but_a_verified_key_still_works() -> None:
    ring = KeyRing(InMemoryEventStore(), ManualClock(datetime(2026, 3, 10, tzinfo=UTC)))
    _, token = ring.issue("p1", "pos")
    _, fresh = ring.issue("p1", "pos")
    assert ring.authenticate(token) is not None  # verified once with Argon2
    assert ring.authenticate(token, may_work=lambda: False) is not None  # then cheap: never asks
    with pytest.raises(KeyCheckThrottled):
        ring.authenticate(fresh, may_work=lambda: False)  # would need Argon2
    with pytest.raises(KeyCheckThrottled):
        ring.authenticate(token[:-2] + "zz", may_work=lambda: False)  # a wrong secret would need Argon2 too
    for _ in range(2):  # an unknown key id, whether or not the keys were just read
        with pytest.raises(KeyCheckThrottled):
            ring.authenticate("lk_0123456789abcdef_secret", may_work=lambda: False)
    assert ring.authenticate("lk_0123456789abcdef_secret") is None


class _Refused(grpc.RpcError):
    """What a client sees when the server refuses with a rich status."""

    def __init__(self, found: status_pb2.Status) -> None:
        self._status = rpc_status.to_status(found)

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> Any:
        return self._status.trailing_metadata


def test_the_client_waits_as_long_as_retry_info_says() -> None:
    import clients.python.loyalty_client as client_module

    slept: list[float] = []
    client = client_module.LoyaltyClient(
        "127.0.0.1:1", "p1", api_key="", retries=2, backoff=0.01, timeout=60, sleep=slept.append
    )
    answers: list[Any] = [
        _Refused(limited_status(0.75, "slow down")),
        _Refused(limited_status(60, "slow down")),
        "ok",
    ]

    def call(seconds_left: float) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    try:
        assert client._call(call) == "ok"
    finally:
        client.close()
    assert slept == [pytest.approx(0.75), client_module.MAX_RETRY_DELAY]
