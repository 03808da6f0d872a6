"""The event feed end to end: a real ledger on SQLite, the outbox relay, and a real NATS JetStream server.

The lifecycle signal tests run on both backends (SQLite and PostgreSQL, the ``store_url`` fixture).

Each test publishes into a JetStream stream and subject prefix of its own and deletes the stream afterwards.
The NATS tests skip when 127.0.0.1:4222 is unreachable, unless the environment variable CI is set (then they
fail).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.adapters.sqlite.checkpoint import SqliteCheckpoints
from ledger.application.clock import ManualClock
from ledger.application.service import LedgerApp
from ledger.bootstrap import Settings, Wired, build, build_app, reference_document
from ledger.domain import commands as cmd
from ledger.domain.streams import parse_stream, signal_stream
from ledger.eventlog.chain import format_time
from ledger.eventlog.port import StoredEvent
from ledger.feed.integration import FeedMessage
from ledger.feed.publisher import JetStreamPublisher, PublishError
from ledger.feed.relay import FeedRelay
from ledger.feed.signal_facts import load_member_facts
from ledger.feed.signal_scan import scan
from ledger.feed.signals import SIGNAL_EVENT_TYPE, signal_command_program
from loyalty.v1 import feed_pb2

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
NATS_URL = f"nats://{NATS_HOST}:{NATS_PORT}"
START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


def _nats_reachable() -> str | None:
    try:
        with socket.create_connection((NATS_HOST, NATS_PORT), timeout=2):
            return None
    except OSError as error:
        return str(error)


@pytest.fixture(scope="module", autouse=True)
def _needs_nats() -> None:
    problem = _nats_reachable()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"NATS is not reachable at {NATS_URL} (CI is set, so this fails): {problem}")
        pytest.skip(f"NATS is not reachable at {NATS_URL}: {problem}")


@dataclass(frozen=True)
class Received:
    subject: str
    msg_id: str
    event: feed_pb2.IntegrationEvent


@dataclass
class Feed:
    """A stream name and subject prefix of the test's own, and ways to publish into it and read it back."""

    stream: str
    prefix: str
    db: str

    def publisher(self, **kw: object) -> JetStreamPublisher:
        return JetStreamPublisher(NATS_URL, stream=self.stream, subjects=[f"{self.prefix}.>"], **kw)  # type: ignore[arg-type]

    def relay(self, app: LedgerApp, publisher: JetStreamPublisher, **kw: object) -> FeedRelay:
        checkpoints = SqliteCheckpoints.at(self.db)
        return FeedRelay(app.store, checkpoints, publisher, subject_prefix=self.prefix, **kw)  # type: ignore[arg-type]

    def received(self) -> list[Received]:
        """Every message the stream holds, in stream order (what a consumer from the start would see)."""
        return asyncio.run(self._received())

    async def _received(self) -> list[Received]:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            info = await js.stream_info(self.stream)
            total = info.state.messages
            sub = await js.pull_subscribe(
                f"{self.prefix}.>",
                stream=self.stream,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
            )
            out: list[Received] = []
            while len(out) < total:
                for msg in await sub.fetch(min(total - len(out), 256), timeout=5):
                    await msg.ack()
                    out.append(
                        Received(
                            msg.subject,
                            (msg.headers or {})["Nats-Msg-Id"],
                            feed_pb2.IntegrationEvent.FromString(msg.data),
                        )
                    )
            await sub.unsubscribe()
            return out
        finally:
            await nc.close()

    def delete(self) -> None:
        async def go() -> None:
            import nats
            import nats.js.errors

            nc = await nats.connect(NATS_URL)
            try:
                await nc.jetstream().delete_stream(self.stream)
            except nats.js.errors.NotFoundError:
                pass
            finally:
                await nc.close()

        asyncio.run(go())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app(tmp_path: Path, clock: ManualClock) -> Iterator[LedgerApp]:
    app = build_app(Settings(store_url=f"sqlite:///{tmp_path / 'l.db'}", reference_program=False), clock=clock)
    app.create_program("real", "Real", reference_document(), "real", None, "c")
    yield app
    app.close()


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feed]:
    tag = uuid.uuid4().hex[:12]
    feed = Feed(stream=f"FEED_TEST_{tag}", prefix=f"feedtest{tag}.v1", db=str(tmp_path / "l.db"))
    yield feed
    feed.delete()


def activity(app: LedgerApp, members: list[str], rounds: int, tag: str) -> None:
    """Interleaved writes: enrol ``members``, then ``rounds`` adjustments each, member by member in turn."""
    for m in members:
        if app.store.stream_version(f"member-real-{m}") == 0:
            app.enroll("real", m, [("card_number", f"card-{m}")], None, f"enrol-{m}")
    for r in range(rounds):
        for m in members:
            app.execute(cmd.Envelope("real", cmd.AdjustPoints(m, 10 + r, "GOODWILL", "a note", "op-1"), f"{tag}-{m}-{r}"))


def log(app: LedgerApp) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    while page := app.store.read_all(after_position=events[-1].position if events else 0, limit=1000):
        events.extend(page)
    return events


def test_every_event_is_published_once_in_position_order(app: LedgerApp, feed: Feed) -> None:
    activity(app, ["m1", "m2", "m3"], 4, "a")
    with feed.publisher() as publisher:
        relay = feed.relay(app, publisher, batch=7)
        passed = relay.catch_up()
        assert relay.run_once() == 0
    events = log(app)
    assert passed == len(events)
    got = feed.received()
    assert [r.msg_id for r in got] == [e.event_id for e in events]
    assert [r.event.event_id for r in got] == [e.event_id for e in events]
    assert [r.event.position for r in got] == [e.position for e in events]
    assert got[0].subject == f"{feed.prefix}.real.program.ProgramCreated"
    assert {r.subject for r in got[1:]} == {
        f"{feed.prefix}.real.member.MemberEnrolled",
        f"{feed.prefix}.real.member.PointsAdjusted",
    }
    for r in got[1:]:
        assert r.event.kind == feed_pb2.INTEGRATION_EVENT_KIND_MEMBER_EVENT
        assert r.event.member_id in {"m1", "m2", "m3"} and r.event.program_id == "real"
        raw = r.event.SerializeToString()
        assert b"card-" not in raw and b"card_number" not in raw and b"a note" not in raw, "no personal data"


def test_per_member_order(app: LedgerApp, feed: Feed) -> None:
    activity(app, ["m1", "m2"], 5, "a")
    with feed.publisher(max_in_flight=3) as publisher:
        feed.relay(app, publisher, batch=4).catch_up()
    by_member: dict[str, list[int]] = {}
    for r in feed.received():
        if r.event.member_id:
            by_member.setdefault(r.event.member_id, []).append(r.event.stream_version)
    assert set(by_member) == {"m1", "m2"}
    for member, versions in by_member.items():
        assert versions == list(range(1, app.store.stream_version(f"member-real-{member}") + 1)), member


def test_a_restart_resumes_from_the_checkpoint(app: LedgerApp, feed: Feed) -> None:
    activity(app, ["m1"], 3, "a")
    with feed.publisher() as publisher:
        first = feed.relay(app, publisher).catch_up()
    assert first == len(log(app))
    activity(app, ["m1", "m2"], 2, "b")
    with feed.publisher() as publisher:  # a new process: new connection, new relay, the checkpoint on disk
        relay = feed.relay(app, publisher)
        assert relay.checkpoints.load("nats") == log(app)[first - 1].position
        second = relay.catch_up()
    events = log(app)
    assert second == len(events) - first
    got = feed.received()
    assert [r.msg_id for r in got] == [e.event_id for e in events], "nothing published twice, nothing missed"


class CrashingCheckpoints(SqliteCheckpoints):
    """Dies the first time it is asked to save: the process crashed after publishing, before checkpointing."""

    crashed = False

    def save(self, name: str, position: int) -> None:
        if not self.crashed:
            self.crashed = True
            raise SystemExit("crash between publish and checkpoint")
        super().save(name, position)


def test_a_crash_before_the_checkpoint_republishes_and_jetstream_drops_the_repeats(
    app: LedgerApp, feed: Feed
) -> None:
    activity(app, ["m1", "m2"], 3, "a")
    events = log(app)
    with feed.publisher() as publisher:
        crashing = FeedRelay(
            app.store, CrashingCheckpoints.at(feed.db), publisher, subject_prefix=feed.prefix, batch=1000
        )
        with pytest.raises(SystemExit):
            crashing.run_once()
        assert crashing.checkpoints.load("nats") == 0, "the checkpoint did not move"
    assert [r.msg_id for r in feed.received()] == [e.event_id for e in events], "published before the crash"
    with feed.publisher() as publisher:  # the restarted process publishes the same events again
        assert feed.relay(app, publisher).catch_up() == len(events)
    got = feed.received()
    assert [r.msg_id for r in got] == [e.event_id for e in events], "JetStream de-duplicated by Nats-Msg-Id"
    assert len({r.event.event_id for r in got}) == len(got)


@pytest.fixture
def wired(store_url: str, clock: ManualClock) -> Iterator[Wired]:
    """A ledger on each backend (SQLite file, PostgreSQL schema) with the program ``real``."""
    wired = build(Settings(store_url=store_url, reference_program=False), clock=clock)
    wired.app.create_program("real", "Real", reference_document(), "real", None, "c")
    yield wired
    wired.app.close()


def scan_all(wired: Wired) -> int:
    """One signal scan of every program, each at its own now (what a periodic scan does)."""
    return scan(wired.app.store, wired.backend.read_connection, wired.app.now)


def signal_payloads(app: LedgerApp, program_id: str) -> list[dict[str, Any]]:
    return [json.loads(e.payload) for e in log(app) if e.stream_id == signal_stream(program_id)]


# One story from the first scan to the published message, so longer than most tests.
def test_signals_are_raised_once_and_published_in_the_feed(
    wired: Wired, clock: ManualClock, feed: Feed
) -> None:
    app = wired.app
    activity(app, ["m1", "m2"], 1, "a")
    expiries = {lot.expires_at for m in ("m1", "m2") for lot in app.view("real", m).state.lots.values()}
    [lot_expiry] = expiries
    clock.set(lot_expiry - timedelta(days=10))  # > 90 days after enrolment, lots expire in 10 days
    now = clock.now()
    with wired.backend.read_connection() as conn:
        facts = load_member_facts(conn, "real", now)
    assert [(f.member_id, len(f.lots), f.enrolled_at, f.last_activity_at) for f in facts] == [
        ("m1", 1, START, None),
        ("m2", 1, START, None),
    ], "adjustments are not activity; inactivity counts from the enrolment"
    before = len(log(app))
    assert scan_all(wired) == 4
    assert len(log(app)) == before + 4
    assert scan_all(wired) == 0, "a second scan writes nothing"
    clock.set(now + timedelta(days=1))
    assert scan_all(wired) == 0, "a later scan finds the same occurrences"
    assert len(log(app)) == before + 4
    got_payloads = {(p["member_id"], p["kind"]): p for p in signal_payloads(app, "real")}
    assert set(got_payloads) == {
        ("m1", "POINTS_EXPIRING"),
        ("m2", "POINTS_EXPIRING"),
        ("m1", "INACTIVE_90_DAYS"),
        ("m2", "INACTIVE_90_DAYS"),
    }
    for member in ("m1", "m2"):
        expiring = got_payloads[(member, "POINTS_EXPIRING")]
        assert (expiring["points"], expiring["expires_at"]) == (10, format_time(lot_expiry))
        inactive = got_payloads[(member, "INACTIVE_90_DAYS")]
        assert inactive["reference_at"] == inactive["last_activity_at"] == format_time(START)
        assert inactive["inactive_days"] == (now - START).days
    for event in log(app)[before:]:
        assert event.event_id == event.idempotency_key and event.event_id.startswith("signal:real:")
        assert app.store.find_command(signal_command_program("real"), event.event_id) is not None
        assert app.store.find_command("real", event.event_id) is None, "outside the clients' key space"

    activity(app, ["m1"], 1, "b")  # a member event after the signals: order is still the log's
    with feed.publisher() as publisher:
        feed.relay(app, publisher).catch_up()
    events = log(app)
    got = feed.received()
    assert [r.msg_id for r in got] == [e.event_id for e in events]
    signals = [r for r in got if r.event.kind == feed_pb2.INTEGRATION_EVENT_KIND_LIFECYCLE_SIGNAL]
    assert len(signals) == 4
    assert {(r.event.member_id, r.subject.rsplit(".", 1)[1]) for r in signals} == {
        ("m1", "points_expiring"),
        ("m2", "points_expiring"),
        ("m1", "inactive_90_days"),
        ("m2", "inactive_90_days"),
    }
    for r in signals:
        assert r.event.event_type == SIGNAL_EVENT_TYPE
        assert r.event.stream_id == "signal-real"
        assert r.event.event_id == r.event.signal.signal_id and r.event.event_id.startswith("signal:real:")
        if r.event.signal.kind == feed_pb2.LIFECYCLE_SIGNAL_KIND_POINTS_EXPIRING:
            assert r.event.signal.points == 10
            assert r.event.signal.expires_at.ToDatetime(tzinfo=UTC) == lot_expiry
    assert all(parse_stream(e.stream_id) is not None for e in events)


def test_test_clock_programs_are_scanned_at_their_own_time(wired: Wired, clock: ManualClock) -> None:
    app = wired.app
    sandbox_start = START + timedelta(days=1000)
    app.create_program("sandbox", "Sandbox", reference_document(), "test", sandbox_start, "s")
    app.enroll("real", "m1", [("card_number", "card-m1")], None, "enrol-m1")
    app.enroll("sandbox", "s1", [("card_number", "card-s1")], None, "enrol-s1")
    assert scan_all(wired) == 0, "both members were just enrolled, each at its program's now"

    app.advance_clock("sandbox", sandbox_start + timedelta(days=95))
    assert scan_all(wired) == 1, "the sandbox's time moved 95 days; the real program's did not"
    [inactive] = signal_payloads(app, "sandbox")
    assert (inactive["member_id"], inactive["kind"]) == ("s1", "INACTIVE_90_DAYS")
    assert inactive["last_activity_at"] == format_time(sandbox_start) and inactive["inactive_days"] == 95
    assert signal_payloads(app, "real") == []
    assert scan_all(wired) == 0

    clock.set(START + timedelta(days=31))
    assert scan_all(wired) == 1, "the wall clock moved: the real member is 31 days quiet, the sandbox did not"
    [quiet] = signal_payloads(app, "real")
    assert (quiet["member_id"], quiet["kind"], quiet["inactive_days"]) == ("m1", "INACTIVE_30_DAYS", 31)
    assert quiet["reference_at"] == format_time(START)
    assert len(signal_payloads(app, "sandbox")) == 1
    assert scan_all(wired) == 0


def test_a_scan_of_chosen_programs_leaves_the_others(wired: Wired, clock: ManualClock) -> None:
    app = wired.app
    app.create_program("other", "Other", reference_document(), "real", None, "o")
    app.enroll("real", "m1", [("card_number", "card-m1")], None, "enrol-m1")
    app.enroll("other", "m1", [("card_number", "card-m1")], None, "enrol-o-m1")
    clock.set(START + timedelta(days=40))
    assert scan(app.store, wired.backend.read_connection, app.now, program_ids=["other"]) == 1
    assert signal_payloads(app, "real") == [] and len(signal_payloads(app, "other")) == 1
    assert scan_all(wired) == 1, "now the real program's member"
    assert scan_all(wired) == 0


class WatchingPublisher:
    """Passes messages on and remembers the acknowledged ids, notifying waiters."""

    def __init__(self, inner: JetStreamPublisher) -> None:
        self.inner = inner
        self.published: set[str] = set()
        self.changed = threading.Condition()

    def publish(self, messages: Sequence[FeedMessage]) -> None:
        self.inner.publish(messages)
        with self.changed:
            self.published.update(m.msg_id for m in messages)
            self.changed.notify_all()

    def wait_for(self, msg_id: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: msg_id in self.published, timeout=timeout)


def test_the_background_loop_publishes_new_events_until_stopped(app: LedgerApp, feed: Feed) -> None:
    with feed.publisher() as publisher:
        watching = WatchingPublisher(publisher)
        relay = FeedRelay(app.store, SqliteCheckpoints.at(feed.db), watching, subject_prefix=feed.prefix)
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop, 0.05), daemon=True)
        thread.start()
        try:
            activity(app, ["m1"], 2, "a")
            assert watching.wait_for(log(app)[-1].event_id, timeout=30), "the loop published the new events"
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
    assert [r.msg_id for r in feed.received()] == [e.event_id for e in log(app)]


def test_without_an_ack_the_checkpoint_stays(app: LedgerApp, feed: Feed) -> None:
    activity(app, ["m1"], 1, "a")
    with feed.publisher(ack_timeout=2.0) as publisher:
        publisher.start()  # the stream exists, but captures only feed.prefix
        stray = FeedRelay(app.store, SqliteCheckpoints.at(feed.db), publisher, subject_prefix=f"{feed.prefix}x")
        with pytest.raises(PublishError):
            stray.run_once()
        assert stray.checkpoints.load("nats") == 0
        assert feed.relay(app, publisher).catch_up() == len(log(app)), "the publisher recovers"
    assert [r.msg_id for r in feed.received()] == [e.event_id for e in log(app)]


def test_the_publisher_reconnects_after_losing_its_connection(app: LedgerApp, feed: Feed) -> None:
    activity(app, ["m1"], 1, "a")
    with feed.publisher() as publisher:
        relay = feed.relay(app, publisher)
        relay.catch_up()
        nc = publisher._nc
        assert nc is not None
        asyncio.run_coroutine_threadsafe(nc.close(), publisher._loop).result(timeout=10)
        activity(app, ["m2"], 1, "b")
        assert relay.catch_up() > 0
    assert [r.msg_id for r in feed.received()] == [e.event_id for e in log(app)]
