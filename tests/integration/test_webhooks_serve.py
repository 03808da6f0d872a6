"""``ledger webhooks ...`` on a real SQLite store, and ``ledger serve --webhooks`` delivering what the API writes
to a real HTTP receiver; the Prometheus numbers of the deliverer."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.application.clock import ManualClock
from ledger.application.webhooks import new_subscription
from ledger.bootstrap import Settings, build, reference_document, webhook_store
from ledger.entrypoints.cli import main
from ledger.entrypoints.metrics import Metrics
from ledger.testing.server import start_server, stop_server
from ledger.testing.webhook_receiver import Receiver
from ledger.webhooks.deliverer import RetryPolicy, WebhookDeliverer
from ledger.webhooks.signing import verify
from ledger.webhooks.transport import HttpTransport
from loyalty.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc, program_pb2, program_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """``main`` points the log at the captured stderr; later tests log with the defaults again."""
    yield
    structlog.reset_defaults()


def cli(capsys: pytest.CaptureFixture[str], store: str, *args: str) -> tuple[int, list[str], str]:
    code = main(["--store", store, "webhooks", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_add_list_pause_resume_replay_and_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'l.db'}"
    code, out, _ = cli(capsys, store, "add", "--program", "little_sprout", "--url", "https://crm.example.com/h",
                       "--events", "PurchaseRecorded,TierChanged")  # fmt: skip
    assert code == 0 and len(out) == 2
    record, secret = json.loads(out[0]), out[1]
    assert secret.startswith("whsec_") and len(secret) > 40 and secret not in out[0]
    assert record["event_types"] == ["PurchaseRecorded", "TierChanged"] and record["enabled"] is True
    sid = record["subscription_id"]

    code, out, _ = cli(capsys, store, "list")
    assert code == 0 and [json.loads(line)["subscription_id"] for line in out] == [sid]
    assert secret not in "\n".join(out)
    assert cli(capsys, store, "pause", sid)[0] == 0
    assert json.loads(cli(capsys, store, "list", "--program", "little_sprout")[1][0])["enabled"] is False
    assert cli(capsys, store, "resume", sid)[0] == 0
    assert json.loads(cli(capsys, store, "list")[1][0])["enabled"] is True
    code, out, _ = cli(capsys, store, "rotate-secret", sid, "--overlap", "2h")
    assert code == 0 and len(out) == 2 and out[1].startswith("whsec_") and out[1] != secret
    assert json.loads(out[0])["previous_secret_until"]
    assert (
        json.loads(cli(capsys, store, "list")[1][0])["previous_secret_until"]
        == json.loads(out[0])["previous_secret_until"]
    )
    code, out, _ = cli(capsys, store, "dead-letters", sid)
    assert (code, out) == (0, [])
    code, out, _ = cli(capsys, store, "replay", sid)
    assert json.loads(out[0]) == {"subscription_id": sid, "replaying": 0}
    assert cli(capsys, store, "remove", sid)[0] == 0
    code, _, err = cli(capsys, store, "remove", sid)
    assert code == 2 and "no subscription" in err


def test_refusals_name_the_problem_and_never_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'l.db'}"
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t-given-by-the-operator-0123456789\n")
    base = ["add", "--program", "little_sprout", "--events", "*"]
    code, _, err = cli(capsys, store, *base, "--url", "http://crm.example.com/h")
    assert code == 2 and "must be https://" in err
    code, _, err = cli(capsys, store, *base, "--url", "http://127.0.0.1:9/h")
    assert code == 2 and "--allow-http-loopback" in err
    code, _, err = cli(capsys, store, "add", "--program", "little_sprout", "--events", "Nope",
                       "--url", "https://crm.example.com/h", "--secret-file", str(secret_file))  # fmt: skip
    assert code == 2 and "unknown Nope" in err and "s3cr3t" not in err
    code, out, _ = cli(
        capsys, store, *base, "--url", "https://crm.example.com/h", "--secret-file", str(secret_file)
    )
    assert code == 0 and len(out) == 1 and "s3cr3t" not in out[0]  # a given secret is not printed back
    wired = build(Settings(store_url=store, reference_program=False))
    [kept] = webhook_store(wired.backend).listed()
    wired.app.close()
    assert kept.secret == "s3cr3t-given-by-the-operator-0123456789"
    for _ in range(19):
        cli(capsys, store, *base, "--url", "https://crm.example.com/h")
    code, _, err = cli(capsys, store, *base, "--url", "https://crm.example.com/h")
    assert code == 2 and "the most allowed" in err


def test_a_new_subscription_starts_at_the_end_of_the_log_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'l.db'}"
    wired = build(Settings(store_url=store, reference_program=False))
    wired.app.create_program("real", "Real", reference_document(), "real", None, "c")
    wired.app.enroll("real", "m1", [("card_number", "c1")], None, "e1")
    end = wired.app.store.read_all(0, 1000)[-1].position
    wired.app.close()
    base = ["add", "--program", "real", "--events", "*", "--url", "https://crm.example.com/h"]
    assert json.loads(cli(capsys, store, *base)[1][0])["position"] == end
    assert json.loads(cli(capsys, store, *base, "--from-start")[1][0])["position"] == 0
    assert json.loads(cli(capsys, store, *base, "--from-position", "1")[1][0])["position"] == 1


def test_serve_with_webhooks_delivers_what_the_api_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = Receiver()
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    try:
        code, out, _ = cli(capsys, store, "add", "--program", "hooks", "--url", receiver.url, "--events",
                           "MemberEnrolled,PurchaseRecorded", "--allow-http-loopback", "--from-start")  # fmt: skip
        assert code == 0
        secret = out[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        running = start_server(tmp_path, store_url=store, env=env, cwd=ROOT,
                               extra_args=["--no-reference-program", "--sandbox", "--webhooks"])  # fmt: skip
        try:
            with running.channel() as channel:
                start = Timestamp()
                start.FromDatetime(datetime(2026, 3, 10, 2, 0, tzinfo=UTC))
                program_pb2_grpc.ProgramServiceStub(channel).CreateProgram(program_pb2.CreateProgramRequest(
                    program_id="hooks", display_name="Hooks", document=(ROOT / "policies" / "little_sprout.yaml").read_text(),
                    format=common_pb2.DOCUMENT_FORMAT_YAML, idempotency_key="create",
                    clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=start),
                ))  # fmt: skip
                ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
                ledger.EnrollMember(
                    ledger_pb2.EnrollMemberRequest(program_id="hooks", idempotency_key="e", member_id="m1")
                )
                ledger.RecordPurchase(ledger_pb2.RecordPurchaseRequest(
                    program_id="hooks", idempotency_key="b", member_id="m1", order_id="O-1",
                    context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1"),
                    lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-DIAPER-M", category="diapers", quantity=1,
                                                paid_fen=10_000)],
                ))  # fmt: skip
            assert receiver.wait_for(2, timeout=30)
        finally:
            stop_server(running.process)
        got = receiver.accepted()
        assert [r.headers["Ledger-Webhook-Event-Type"] for r in got] == ["MemberEnrolled", "PurchaseRecorded"]
        for r in got:
            assert verify(secret, r.body, r.headers["Ledger-Webhook-Timestamp"], r.headers["Ledger-Webhook-Signature"],
                          tolerance_seconds=3600)  # fmt: skip
        assert secret not in (tmp_path / "server.log").read_text()
    finally:
        receiver.stop()


def test_metrics_count_outcomes_and_report_lag_and_dead_letters(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
    wired = build(Settings(store_url=f"sqlite:///{tmp_path / 'l.db'}", reference_program=False), clock=clock)
    receiver = Receiver()
    try:
        wired.app.create_program("real", "Real", reference_document(), "real", None, "c")
        s = new_subscription(
            "real", receiver.url, ["*"], existing=0, position=0, now=clock.now(), allow_loopback_http=True
        )
        webhook_store(wired.backend).add(s)
        wired.app.enroll("real", "m1", [("card_number", "c1")], None, "e1")
        receiver.script.append(500)
        deliverer = WebhookDeliverer(wired.app.store, webhook_store(wired.backend),
                                     HttpTransport(timeout_seconds=2, allow_loopback_http=True), clock,
                                     rng=random.Random(1), policy=RetryPolicy(max_attempts=1))  # fmt: skip
        metrics = Metrics()
        metrics.watch_webhooks(deliverer)
        while deliverer.run_once():
            pass
        r = metrics.registry
        assert r.get_sample_value("ledger_webhook_deliveries_total", {"outcome": "failed"}) == 1
        assert r.get_sample_value("ledger_webhook_deliveries_total", {"outcome": "dead_lettered"}) == 1
        assert r.get_sample_value("ledger_webhook_deliveries_total", {"outcome": "delivered"}) == 1
        assert r.get_sample_value("ledger_webhook_dead_letters", {"subscription_id": s.subscription_id}) == 1
        assert r.get_sample_value("ledger_webhook_lag_seconds", {"subscription_id": s.subscription_id}) == 0
    finally:
        receiver.stop()
        wired.app.close()
