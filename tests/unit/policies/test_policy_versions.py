"""Policy versions: which one is in force at a moment, and what may follow the latest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies import (
    NoPolicyInForce,
    Policy,
    PolicyHistory,
    PolicyVersion,
    PolicyVersionRejected,
    UnknownPolicyVersion,
)

T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 7, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def renamed(policy: Policy, name: str) -> Policy:
    return policy.model_copy(update={"name": name})


def two_versions(policy: Policy) -> PolicyHistory:
    return PolicyHistory.starting_with(policy, T1).with_version(PolicyVersion(2, T2, renamed(policy, "v2")))


def test_the_version_in_force_changes_exactly_at_effective_from(policy: Policy) -> None:
    history = two_versions(policy)
    assert history.in_force_at(T1).version == 1
    assert history.in_force_at(T2 - TICK).version == 1
    assert history.in_force_at(T2).version == 2
    assert history.in_force_at(T2 + timedelta(days=3650)).policy.name == "v2"


def test_nothing_is_in_force_before_the_first_version(policy: Policy) -> None:
    history = two_versions(policy)
    with pytest.raises(NoPolicyInForce):
        history.in_force_at(T1 - TICK)
    with pytest.raises(NoPolicyInForce):
        PolicyHistory().in_force_at(T2)
    with pytest.raises(NoPolicyInForce):
        _ = PolicyHistory().latest


def test_in_force_at_compares_instants_not_wall_clocks(policy: Policy, sh) -> None:
    history = two_versions(policy)
    assert history.in_force_at(sh(2026, 7, 1, 7, 59, 59)).version == 1  # 2026-06-30T23:59:59Z
    assert history.in_force_at(sh(2026, 7, 1, 8, 0)).version == 2


def test_a_later_version_at_the_same_moment_supersedes(policy: Policy) -> None:
    history = two_versions(policy).with_version(PolicyVersion(3, T2, renamed(policy, "v3")))
    assert history.in_force_at(T2).version == 3
    assert history.latest.version == 3


def test_versions_follow_one_another(policy: Policy) -> None:
    history = two_versions(policy)
    with pytest.raises(PolicyVersionRejected):
        history.with_version(PolicyVersion(4, T2, policy))
    with pytest.raises(PolicyVersionRejected):
        history.with_version(PolicyVersion(2, T2, policy))
    with pytest.raises(PolicyVersionRejected):
        history.with_version(PolicyVersion(3, T2 - TICK, policy))
    with pytest.raises(PolicyVersionRejected):
        PolicyHistory().with_version(PolicyVersion(2, T1, policy))
    with pytest.raises(PolicyVersionRejected):
        PolicyHistory((PolicyVersion(1, T2, policy), PolicyVersion(2, T1, policy)))


def test_with_version_leaves_the_history_unchanged(policy: Policy) -> None:
    first = PolicyHistory.starting_with(policy, T1)
    second = first.with_version(PolicyVersion(2, T2, policy))
    assert len(first) == 1
    assert len(second) == 2
    assert [v.version for v in second] == [1, 2]


def test_a_version_is_found_by_its_number(policy: Policy) -> None:
    history = two_versions(policy)
    assert history.get(2).policy.name == "v2"
    with pytest.raises(UnknownPolicyVersion):
        history.get(3)
    with pytest.raises(UnknownPolicyVersion):
        history.get(0)


def test_a_version_needs_an_aware_time(policy: Policy) -> None:
    with pytest.raises(ValueError):
        PolicyVersion(1, datetime(2026, 1, 1), policy)
    assert PolicyVersion(1, T1.astimezone(), policy).effective_from.tzinfo == UTC
