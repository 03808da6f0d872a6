"""The rules of a webhook subscription, the signature scheme and the retry schedule (pure, no I/O)."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime

import pytest

from ledger.application.webhooks import (
    EVENT_TYPES,
    MAX_SUBSCRIPTIONS_PER_PROGRAM,
    SubscriptionRefused,
    check_event_types,
    check_url,
    new_subscription,
)
from ledger.webhooks.deliverer import RetryPolicy
from ledger.webhooks.signing import signature, signature_header, verify

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
SECRET = "whsec_0123456789abcdefghijklmnopqrstuvwxyz"


def test_the_signature_is_the_hmac_of_the_timestamp_a_dot_and_the_body() -> None:
    body = b'{"event_id":"e1"}'
    expected = hmac.new(SECRET.encode(), b"1764748800." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1764748800, body) == expected
    assert signature_header(SECRET, 1764748800, body) == f"v1={expected}"


def test_verify_needs_the_right_secret_body_and_timestamp_within_the_tolerance() -> None:
    body, ts = b'{"event_id":"e1"}', 1764748800
    header = signature_header(SECRET, ts, body)
    assert verify(SECRET, body, str(ts), header, now=ts + 300)
    assert not verify(SECRET, body, str(ts), header, now=ts + 301)
    assert not verify(SECRET, body, str(ts), header, now=ts - 301)
    assert not verify(SECRET + "x", body, str(ts), header, now=ts)
    assert not verify(SECRET, body + b"\n", str(ts), header, now=ts)
    assert not verify(SECRET, body, str(ts + 1), header, now=ts)
    assert not verify(SECRET, body, None, header, now=ts)
    assert not verify(SECRET, body, "-5", header, now=ts)
    assert not verify(SECRET, body, str(ts), None, now=ts)
    assert not verify(SECRET, body, str(ts), header.replace("v1=", "v0="), now=ts)
    assert verify(SECRET, body, str(ts), f"v1=deadbeef, {header}", now=ts)  # one of several matches


@pytest.mark.parametrize(
    ("url", "loopback", "problem"),
    [
        ("http://crm.example.com/h", True, "must be https://"),
        ("ftp://crm.example.com/h", False, "must be https://"),
        ("http://127.0.0.1:8080/h", False, "--allow-http-loopback"),
        ("https://user:pw@crm.example.com/h", False, "credentials"),
        ("https:///h", False, "no host"),
        ("https://crm.example.com/h#x", False, "fragment"),
        ("https://crm.example.com:99999/h", False, "not a valid URL"),
        ("https://crm.example.com/" + "a" * 2100, False, "longer than"),
    ],
)
def test_a_url_that_is_not_https_is_refused(url: str, loopback: bool, problem: str) -> None:
    with pytest.raises(SubscriptionRefused, match=problem):
        check_url(url, allow_loopback_http=loopback)


def test_https_anywhere_and_http_to_this_host_only_when_allowed() -> None:
    assert check_url("https://crm.example.com/h?x=1", allow_loopback_http=False)
    for url in ("http://127.0.0.1:8080/h", "http://localhost/h", "http://[::1]:9/h", "http://127.0.0.2/h"):
        assert check_url(url, allow_loopback_http=True) == url


def test_event_types_are_known_sorted_distinct_or_the_star_alone() -> None:
    assert check_event_types(["TierChanged", "PurchaseRecorded", "TierChanged"]) == (
        "PurchaseRecorded",
        "TierChanged",
    )
    assert check_event_types([" * "]) == ("*",)
    assert {"MemberEnrolled", "PolicyPublished", "LifecycleSignalRaised", "MemberErased"} <= EVENT_TYPES
    for wrong, problem in (
        (["Nope"], "unknown Nope"),
        (["*", "TierChanged"], "alone"),
        ([" "], "at least one"),
    ):
        with pytest.raises(SubscriptionRefused, match=problem):
            check_event_types(wrong)


def test_a_new_subscription_gets_a_fresh_secret_hidden_from_repr_and_public() -> None:
    a = new_subscription("little_sprout", "https://crm.example.com/h", ["*"], existing=0, position=7, now=NOW)
    b = new_subscription("little_sprout", "https://crm.example.com/h", ["*"], existing=0, position=7, now=NOW)
    assert a.secret.startswith("whsec_") and len(a.secret) >= 40 and a.secret != b.secret
    assert a.subscription_id != b.subscription_id and a.position == 7 and a.enabled
    assert a.secret not in repr(a) and a.secret not in str(a.public())
    assert a.wants("little_sprout", "TierChanged") and not a.wants("other", "TierChanged")


def test_limits_and_a_given_secret() -> None:
    with pytest.raises(SubscriptionRefused, match="the most allowed"):
        new_subscription(
            "p", "https://x.example/h", ["*"], existing=MAX_SUBSCRIPTIONS_PER_PROGRAM, position=0, now=NOW
        )
    with pytest.raises(SubscriptionRefused, match="program"):
        new_subscription("Bad-Id", "https://x.example/h", ["*"], existing=0, position=0, now=NOW)
    for short in ("too-short", "has a space in it, which is refused"):
        with pytest.raises(SubscriptionRefused, match="secret") as refused:
            new_subscription("p", "https://x.example/h", ["*"], existing=0, position=0, now=NOW, secret=short)
        assert short not in str(refused.value)
    given = new_subscription(
        "p", "https://x.example/h", ["*"], existing=0, position=0, now=NOW, secret=SECRET
    )
    assert given.secret == SECRET


def test_the_retry_schedule_doubles_within_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, first_delay_seconds=30, factor=2, max_delay_seconds=3600)
    rng = random.Random(3)
    for attempt in range(1, 12):
        ceiling = min(3600, 30 * 2 ** (attempt - 1))
        waits = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 10  # jittered, not one value
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
