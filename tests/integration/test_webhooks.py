"""Webhook delivery end to end: a real ledger on SQLite and on PostgreSQL (the ``wired`` fixture), the deliverer, and a real HTTP receiver on 127.0.0.1 that
fails on purpose (5xx, a hanging request that times out, a closed port) and then recovers.

The clock is a :class:`ManualClock` and the jitter a seeded ``random.Random``: retries are due when the test moves
the clock, never after a sleep.
"""

from __future__ import annotations

import json
import random
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ledger.application.clock import ManualClock
from ledger.application.ports import WebhookStore
from ledger.application.webhooks import Subscription, new_subscription
from ledger.bootstrap import Settings, Wired, build, reference_document, webhook_store
from ledger.domain import commands as cmd
from ledger.eventlog.port import StoredEvent
from ledger.testing.certs import TestCA
from ledger.testing.postgres import fresh_schema, require_postgres
from ledger.testing.webhook_receiver import Receiver, Request
from ledger.webhooks.deliverer import RetryPolicy, WebhookDeliverer
from ledger.webhooks.runner import WebhookRunner
from ledger.webhooks.signing import verify
from ledger.webhooks.transport import Answer, HttpTransport

START = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, first_delay_seconds=10, factor=2, max_delay_seconds=3600)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'l.db'}"
        return
    require_postgres()
    with fresh_schema() as url:
        yield url


@pytest.fixture
def wired(store_url: str, clock: ManualClock) -> Iterator[Wired]:
    wired = build(Settings(store_url=store_url, reference_program=False), clock=clock)
    wired.app.create_program("real", "Real", reference_document(), "real", None, "c")
    wired.app.create_program("other", "Other", reference_document(), "real", None, "c2")
    yield wired
    wired.app.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def activity(wired: Wired, program: str, members: list[str], rounds: int, tag: str) -> None:
    app = wired.app
    for m in members:
        if app.store.stream_version(f"member-{program}-{m}") == 0:
            app.enroll(program, m, [("card_number", f"card-{program}-{m}")], None, f"enrol-{program}-{m}")
    for r in range(rounds):
        for m in members:
            app.execute(cmd.Envelope(program, cmd.AdjustPoints(m, 10 + r, "GOODWILL", "a note", "op-1"),
                                     f"{tag}-{m}-{r}"))  # fmt: skip


def log_of(wired: Wired, program: str, types: set[str] | None = None) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    while page := wired.app.store.read_all(after_position=events[-1].position if events else 0, limit=1000):
        events.extend(page)
    wanted = (f"member-{program}-", f"program-{program}", f"signal-{program}")
    return [e for e in events if e.stream_id.startswith(wanted) and (types is None or e.type in types)]


def subscribe(
    store: WebhookStore, url: str, program: str = "real", types: tuple[str, ...] = ("*",)
) -> Subscription:
    s = new_subscription(
        program, url, list(types), existing=0, position=0, now=START, allow_loopback_http=True
    )
    store.add(s)
    return s


def deliverer(wired: Wired, clock: ManualClock, *, timeout: float = 2.0, **options: Any) -> WebhookDeliverer:
    return WebhookDeliverer(
        wired.app.store, webhook_store(wired.backend),
        HttpTransport(timeout_seconds=timeout, allow_loopback_http=True), clock,
        rng=random.Random(7), policy=options.pop("policy", POLICY), **options,
    )  # fmt: skip


def ids(requests: list[Request]) -> list[str]:
    return [r.headers["Ledger-Webhook-Id"] for r in requests]


def drain(d: WebhookDeliverer) -> None:
    while d.run_once():
        pass


def test_every_event_arrives_once_in_log_order_signed_with_the_subscriptions_secret(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url)
    activity(wired, "real", ["m1", "m2"], 3, "a")
    activity(wired, "other", ["m9"], 2, "b")
    d = deliverer(wired, clock, batch=4)
    drain(d)
    expected = log_of(wired, "real")
    assert ids(receiver.requests) == [e.event_id for e in expected]
    assert store.get(s.subscription_id).position == log_of(wired, "other")[-1].position  # type: ignore[union-attr]
    for request, stored in zip(receiver.requests, expected, strict=True):
        h = request.headers
        assert request.path == "/hooks/ledger" and h["Content-Type"] == "application/json"
        assert verify(s.secret, request.body, h["Ledger-Webhook-Timestamp"], h["Ledger-Webhook-Signature"],
                      now=clock.now().timestamp())  # fmt: skip
        assert not verify("whsec_" + "x" * 40, request.body, h["Ledger-Webhook-Timestamp"],
                          h["Ledger-Webhook-Signature"], now=clock.now().timestamp())  # fmt: skip
        assert not verify(s.secret, request.body + b" ", h["Ledger-Webhook-Timestamp"],
                          h["Ledger-Webhook-Signature"], now=clock.now().timestamp())  # fmt: skip
        assert h["Ledger-Webhook-Timestamp"] == str(int(START.timestamp()))
        body = json.loads(request.body)
        assert body["event_id"] == stored.event_id == h["Ledger-Webhook-Id"]
        assert (body["event_type"], int(body["position"]), body["program_id"]) == (
            stored.type,
            stored.position,
            "real",
        )
        assert h["Ledger-Webhook-Subscription"] == s.subscription_id and h["Ledger-Webhook-Attempt"] == "1"
        if stored.type == "PointsAdjusted":
            assert "note" not in json.loads(
                body["payload_json"]
            )  # what the feed leaves out, webhooks leave out
    assert d.run_once() == 0


def test_a_signature_without_the_timestamp_or_with_another_timestamp_does_not_verify(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    s = subscribe(webhook_store(wired.backend), receiver.url)
    drain(deliverer(wired, clock))
    request = receiver.requests[0]
    stamp, signature = (
        request.headers["Ledger-Webhook-Timestamp"],
        request.headers["Ledger-Webhook-Signature"],
    )
    now = clock.now().timestamp()
    later = str(int(stamp) + 60)
    assert verify(s.secret, request.body, stamp, signature, now=now)
    assert not verify(s.secret, request.body, later, signature, now=now)  # the timestamp is signed
    assert not verify(s.secret, request.body, stamp, signature, now=now + 301)  # too old: a replayed capture


def test_while_a_rotation_overlaps_deliveries_verify_with_the_old_secret_and_the_new(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url, types=("MemberEnrolled",))
    new = "whsec_rotated-0123456789abcdefghijklmnop"
    store.rotate_secret(s.subscription_id, new, START + timedelta(hours=1))
    d = deliverer(wired, clock)
    activity(wired, "real", ["m1"], 0, "a")
    drain(d)
    clock.set(START + timedelta(hours=1))
    activity(wired, "real", ["m2"], 0, "b")
    drain(d)
    during, after = receiver.accepted()
    for request, now in ((during, START), (after, START + timedelta(hours=1))):
        h = request.headers
        check = [verify(secret, request.body, h["Ledger-Webhook-Timestamp"], h["Ledger-Webhook-Signature"],
                        now=now.timestamp()) for secret in (new, s.secret)]  # fmt: skip
        assert check == ([True, True] if request is during else [True, False])
    assert during.headers["Ledger-Webhook-Signature"].count("v1=") == 2


def test_failures_are_retried_with_backoff_and_the_checkpoint_moves_only_after_a_2xx(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url, types=("PointsAdjusted",))
    activity(wired, "real", ["m1"], 2, "a")
    adjusted = log_of(wired, "real", {"PointsAdjusted"})
    receiver.script.extend([500, 503])
    d = deliverer(wired, clock)
    jitter = random.Random(7)
    assert d.run_once() == adjusted[0].position - 1  # the events before the first adjustment pass; it fails
    assert store.get(s.subscription_id).position == adjusted[0].position - 1  # type: ignore[union-attr]
    first_wait = POLICY.delay(1, jitter)
    assert 5 <= first_wait <= 10
    clock.set(START + timedelta(seconds=first_wait - 0.5))
    assert d.run_once() == 0 and len(receiver.requests) == 1  # not due yet: no attempt
    clock.set(START + timedelta(seconds=first_wait))
    assert d.run_once() == 0 and len(receiver.requests) == 2  # the second attempt, 503
    second_wait = POLICY.delay(2, jitter)
    assert 10 <= second_wait <= 20
    due = clock.now() + timedelta(seconds=second_wait)
    clock.set(due - timedelta(seconds=0.5))
    assert d.run_once() == 0 and len(receiver.requests) == 2
    clock.set(due)
    drain(d)
    assert [r.answered for r in receiver.requests] == [500, 503, 200, 200]
    assert [r.headers["Ledger-Webhook-Attempt"] for r in receiver.requests] == ["1", "2", "3", "1"]
    assert ids(receiver.accepted()) == [e.event_id for e in adjusted]  # each once, in order
    assert set(ids(receiver.requests)) == {e.event_id for e in adjusted}  # repeats only by the same id
    assert store.get(s.subscription_id).position == adjusted[-1].position  # type: ignore[union-attr]
    assert store.dead_letters(s.subscription_id) == []


def test_a_timeout_and_a_refused_connection_are_failed_attempts_and_delivery_resumes(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url, types=("MemberEnrolled",))
    activity(wired, "real", ["m1", "m2"], 0, "a")
    receiver.script.append("hang")
    d = deliverer(wired, clock, timeout=0.3, policy=replace(POLICY, max_attempts=5))
    outcomes: list[str] = []
    d.on_outcome = outcomes.append
    d.run_once()
    receiver.release()
    receiver.stop()  # the port closes: the next attempt is refused
    clock.set(START + timedelta(hours=1))
    d.run_once()
    assert outcomes == ["failed", "failed"]
    assert store.get(s.subscription_id).position < log_of(wired, "real", {"MemberEnrolled"})[0].position  # type: ignore[union-attr]
    receiver.restart()
    clock.set(START + timedelta(hours=2))
    drain(d)
    assert ids(receiver.accepted()) == [e.event_id for e in log_of(wired, "real", {"MemberEnrolled"})]
    assert outcomes == ["failed", "failed", "delivered", "delivered"]


def test_after_the_last_attempt_the_event_is_dead_lettered_delivery_moves_on_and_a_replay_delivers_it(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url, types=("PointsAdjusted",))
    activity(wired, "real", ["m1"], 3, "a")
    adjusted = log_of(wired, "real", {"PointsAdjusted"})
    receiver.script.extend([500, 502, 503])
    d = deliverer(wired, clock)
    for hours in range(3):
        clock.set(START + timedelta(hours=hours))
        d.run_once()
    letters = store.dead_letters(s.subscription_id)
    assert [(x.event_id, x.attempts, x.last_status, x.last_error, x.status) for x in letters] == [
        (adjusted[0].event_id, 3, 503, "HTTP 503", "dead")
    ]
    assert ids(receiver.accepted()) == [e.event_id for e in adjusted[1:]]  # the others went on
    assert store.get(s.subscription_id).position == adjusted[-1].position  # type: ignore[union-attr]

    assert store.request_replay(s.subscription_id) == 1
    wired.app.execute(cmd.Envelope("real", cmd.AdjustPoints("m1", 5, "GOODWILL", "late", "op-1"), "later"))
    drain(d)
    assert ids(receiver.accepted())[-2:] == [
        adjusted[0].event_id,
        log_of(wired, "real", {"PointsAdjusted"})[-1].event_id,
    ]
    assert [x.status for x in store.dead_letters(s.subscription_id)] == ["delivered"]
    assert receiver.accepted()[-2].headers["Ledger-Webhook-Position"] == str(adjusted[0].position)


def test_a_replay_that_fails_again_goes_back_on_the_list_with_its_attempts(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url, types=("MemberEnrolled",))
    activity(wired, "real", ["m1"], 0, "a")
    receiver.default = 500
    d = deliverer(wired, clock, policy=replace(POLICY, max_attempts=1))
    drain(d)
    store.request_replay(s.subscription_id)
    drain(d)
    [letter] = store.dead_letters(s.subscription_id)
    assert (letter.status, letter.attempts, letter.last_status) == ("dead", 2, 500)


def test_a_failing_subscription_does_not_hold_back_another(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    failing = Receiver()
    try:
        failing.default = 500
        bad = subscribe(store, failing.url)
        good = subscribe(store, receiver.url)
        activity(wired, "real", ["m1", "m2"], 2, "a")
        d = deliverer(wired, clock)
        drain(d)
        assert ids(receiver.accepted()) == [e.event_id for e in log_of(wired, "real")]
        assert len(failing.requests) == 1
        assert store.get(bad.subscription_id).position < store.get(good.subscription_id).position  # type: ignore[union-attr]
    finally:
        failing.stop()


def test_a_hanging_endpoint_holds_one_lane_of_the_runner_not_the_others(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    hanging = Receiver()
    hanging.default = "hang"  # type: ignore[assignment]
    subscribe(store, hanging.url)
    subscribe(store, receiver.url)
    activity(wired, "real", ["m1", "m2"], 2, "a")
    expected = [e.event_id for e in log_of(wired, "real")]
    runner = WebhookRunner(
        deliverer(wired, clock, timeout=20), wired.backend.lease("webhooks"), idle_wait_seconds=0.05
    )
    runner.start()
    try:
        assert receiver.wait_for(len(expected))
        assert ids(receiver.accepted()) == expected
        assert hanging.accepted() == []
    finally:
        hanging.stop()
        runner.stop()


class Crash(Exception):
    pass


class CrashingTransport:
    """Sends for real, then dies after the ``after``-th request reached the endpoint (before the checkpoint)."""

    def __init__(self, real: HttpTransport, after: int) -> None:
        self.real, self.after, self.sent = real, after, 0

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        answer = self.real.post(url, body, headers)
        self.sent += 1
        if self.sent == self.after:
            raise Crash
        return answer


def test_a_crash_after_sending_resends_only_that_event_after_the_restart(
    store_url: str, wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    s = subscribe(webhook_store(wired.backend), receiver.url)
    activity(wired, "real", ["m1", "m2"], 2, "a")
    expected = [e.event_id for e in log_of(wired, "real")]
    first = deliverer(wired, clock)
    first.transport = CrashingTransport(HttpTransport(timeout_seconds=2, allow_loopback_http=True), after=4)
    with pytest.raises(Crash):
        drain(first)
    wired.app.close()

    again = build(Settings(store_url=store_url, reference_program=False), clock=clock)
    try:
        assert webhook_store(again.backend).get(s.subscription_id).position > 0  # type: ignore[union-attr]
        drain(deliverer(again, clock))
    finally:
        again.app.close()
    got = ids(receiver.accepted())
    assert list(dict.fromkeys(got)) == expected  # nothing lost, in order
    assert [i for i in got if got.count(i) > 1] == [
        expected[3],
        expected[3],
    ]  # only the one in flight, same id


def test_paused_subscriptions_and_other_programs_get_nothing(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url, program="other")
    store.set_enabled(s.subscription_id, False)
    activity(wired, "real", ["m1"], 1, "a")
    activity(wired, "other", ["m1"], 1, "a")
    d = deliverer(wired, clock)
    drain(d)
    assert receiver.requests == []
    store.set_enabled(s.subscription_id, True)
    drain(d)
    assert ids(receiver.accepted()) == [e.event_id for e in log_of(wired, "other")]


def test_a_body_above_the_limit_is_never_sent_and_is_dead_lettered(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url, types=("MemberEnrolled",))
    activity(wired, "real", ["m1"], 0, "a")
    drain(deliverer(wired, clock, max_body_bytes=64))
    assert receiver.requests == []
    [letter] = store.dead_letters(s.subscription_id)
    assert letter.last_status is None and "above the limit of 64" in letter.last_error


def test_the_secret_is_never_logged_nor_kept_with_an_error(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url)
    activity(wired, "real", ["m1"], 1, "a")
    receiver.default = 500
    with capture_logs() as records:
        d = deliverer(wired, clock, policy=replace(POLICY, max_attempts=2))
        for hours in range(4):
            clock.set(START + timedelta(hours=hours))
            d.run_once()
    assert any(r["event"] == "webhook_attempt_failed" for r in records)
    assert any(r["event"] == "webhook_dead_lettered" for r in records)
    assert s.secret not in repr(records)
    signatures = {r.headers["Ledger-Webhook-Signature"] for r in receiver.requests}
    assert not any(sig in repr(records) for sig in signatures)
    assert s.secret not in repr(store.dead_letters(s.subscription_id))
    assert s.secret not in repr(store.get(s.subscription_id))


def test_lag_is_reported_per_subscription(wired: Wired, clock: ManualClock, receiver: Receiver) -> None:
    store = webhook_store(wired.backend)
    s = subscribe(store, receiver.url, types=("MemberEnrolled",))
    activity(wired, "real", ["m1"], 0, "a")
    receiver.script.append(500)
    d = deliverer(wired, clock)
    clock.set(START + timedelta(minutes=3))
    d.run_once()
    assert d.lag_seconds[s.subscription_id] == 180
    clock.set(START + timedelta(hours=1))
    drain(d)
    assert d.lag_seconds[s.subscription_id] == 0


def test_deliveries_run_from_threads_without_losing_events(
    wired: Wired, clock: ManualClock, receiver: Receiver
) -> None:
    """Writes while the runner delivers: every event arrives, in log order."""
    store = webhook_store(wired.backend)
    subscribe(store, receiver.url, types=("PointsAdjusted",))
    runner = WebhookRunner(deliverer(wired, clock), wired.backend.lease("webhooks"), idle_wait_seconds=0.01)
    runner.start()
    try:
        writer = threading.Thread(target=activity, args=(wired, "real", ["m1", "m2", "m3"], 4, "w"))
        writer.start()
        writer.join()
        expected = [e.event_id for e in log_of(wired, "real", {"PointsAdjusted"})]
        assert receiver.wait_for(len(expected))
        assert ids(receiver.accepted()) == expected
    finally:
        runner.stop()


def test_two_replicas_on_one_postgresql_database_deliver_each_event_once(
    clock: ManualClock, receiver: Receiver
) -> None:
    """Both replicas run the deliverer; the one holding the lease delivers, the other waits."""
    require_postgres()
    lease_name = (
        f"webhooks-{uuid.uuid4().hex[:12]}"  # advisory locks are per database: a name of this test's own
    )
    with fresh_schema() as url:
        first = build(Settings(store_url=url, reference_program=False), clock=clock)
        second = build(Settings(store_url=url, reference_program=False), clock=clock)
        runners = [
            WebhookRunner(deliverer(w, clock), w.backend.lease(lease_name), idle_wait_seconds=0.02)
            for w in (first, second)
        ]
        try:
            first.app.create_program("real", "Real", reference_document(), "real", None, "c")
            subscribe(webhook_store(first.backend), receiver.url, types=("PointsAdjusted",))
            for runner in runners:
                runner.start()
            activity(first, "real", ["m1", "m2"], 3, "a")
            expected = [e.event_id for e in log_of(first, "real", {"PointsAdjusted"})]
            assert receiver.wait_for(len(expected))
            assert ids(receiver.requests) == expected  # once each, in order
        finally:
            for runner in runners:
                runner.stop()
            first.app.close()
            second.app.close()


def test_https_checks_the_endpoints_certificate(tmp_path: Path, wired: Wired, clock: ManualClock) -> None:
    ca = TestCA("webhook test CA")
    secure = Receiver(tls=ca.issue("localhost", server=True).write(tmp_path, "receiver"))
    try:
        store = webhook_store(wired.backend)
        s = new_subscription("real", secure.url, ["MemberEnrolled"], existing=0, position=0, now=START)
        store.add(s)
        activity(wired, "real", ["m1"], 0, "a")
        untrusting = deliverer(wired, clock)  # the system's CAs only: the test CA is not one of them
        untrusting.transport = HttpTransport(timeout_seconds=2)
        drain(untrusting)
        assert secure.accepted() == []
        assert "TLS" in untrusting._retrying[(s.subscription_id, 0)].last.error
        trusting = deliverer(wired, clock)
        trusting.transport = HttpTransport(
            timeout_seconds=2, tls=ssl.create_default_context(cadata=ca.pem.decode())
        )
        drain(trusting)
        assert ids(secure.accepted()) == [e.event_id for e in log_of(wired, "real", {"MemberEnrolled"})]
    finally:
        secure.stop()
