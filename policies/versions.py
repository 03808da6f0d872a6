"""A program's policy versions over time, and which one is in force at a moment."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from policies.calendar import require_aware
from policies.errors import NoPolicyInForce, PolicyVersionRejected, UnknownPolicyVersion
from policies.model import Policy


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """Policy ``version`` (1, 2, ...) in force from ``effective_from`` until the next version's."""

    version: int
    effective_from: datetime
    policy: Policy

    def __post_init__(self) -> None:
        if self.version < 1:
            raise PolicyVersionRejected(f"policy versions are numbered from 1, got {self.version}")
        object.__setattr__(self, "effective_from", require_aware(self.effective_from).astimezone(UTC))


@dataclass(frozen=True, slots=True)
class PolicyHistory:
    """Every published version of a program's policy, oldest first. Immutable: ``with_version`` returns a new
    history. Versions are numbered 1, 2, ... and take effect in that order (two may share a moment, the later
    one then supersedes the earlier)."""

    versions: tuple[PolicyVersion, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions", tuple(self.versions))
        for previous, current in zip((None, *self.versions), self.versions, strict=False):
            _check_follows(previous, current)

    @classmethod
    def starting_with(cls, policy: Policy, effective_from: datetime) -> PolicyHistory:
        """A history holding ``policy`` as version 1."""
        return cls((PolicyVersion(1, effective_from, policy),))

    @property
    def latest(self) -> PolicyVersion:
        """The most recently published version."""
        if not self.versions:
            raise NoPolicyInForce("no policy has been published")
        return self.versions[-1]

    def in_force_at(self, t: datetime) -> PolicyVersion:
        """The version in force at ``t``: the latest whose ``effective_from`` is at or before ``t``."""
        index = bisect_right([v.effective_from for v in self.versions], require_aware(t))
        if index == 0:
            raise NoPolicyInForce(f"no policy was in force at {t.isoformat()}")
        return self.versions[index - 1]

    def get(self, version: int) -> PolicyVersion:
        """Version number ``version`` (what an event records)."""
        if 1 <= version <= len(self.versions):
            return self.versions[version - 1]
        raise UnknownPolicyVersion(f"no policy version {version}")

    def with_version(self, version: PolicyVersion) -> PolicyHistory:
        """This history with ``version`` published after the latest one."""
        _check_follows(self.versions[-1] if self.versions else None, version)
        return PolicyHistory((*self.versions, version))

    def __len__(self) -> int:
        return len(self.versions)

    def __iter__(self) -> Iterator[PolicyVersion]:
        return iter(self.versions)


def _check_follows(previous: PolicyVersion | None, current: PolicyVersion) -> None:
    expected = 1 if previous is None else previous.version + 1
    if current.version != expected:
        raise PolicyVersionRejected(f"the next policy version must be {expected}, got {current.version}")
    if previous is not None and current.effective_from < previous.effective_from:
        raise PolicyVersionRejected(
            f"version {current.version} cannot take effect ({current.effective_from.isoformat()}) before "
            f"version {previous.version} ({previous.effective_from.isoformat()})"
        )
