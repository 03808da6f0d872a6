"""What the policy package raises."""

from __future__ import annotations

from collections.abc import Iterable


class PolicyError(Exception):
    """Base of every error raised by the policy package."""


def _describe(path: str) -> str:
    return path or "(document)"


class PolicyInvalid(PolicyError, ValueError):
    """A policy document that cannot be accepted; ``problems`` lists ``(field_path, message)`` pairs.

    A field path is dotted (``tiers.levels.2.min_growth``); the empty path is the document itself.
    """

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        super().__init__("; ".join(f"{_describe(path)}: {message}" for path, message in self.problems))

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for path, _ in self.problems)


class FieldProblems(ValueError):
    """Raised from a model validator: problems with paths relative to the model that found them.

    ``documents.load_policy`` joins these paths to the model's own location in the document.
    """

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        super().__init__("; ".join(f"{_describe(path)}: {message}" for path, message in self.problems))


class NoPolicyInForce(PolicyError, LookupError):
    """No policy version was in force at the time asked about."""


class UnknownPolicyVersion(PolicyError, LookupError):
    """The program has no policy version with that number."""


class PolicyVersionRejected(PolicyError, ValueError):
    """A new policy version that does not follow the latest one."""


class UnknownCode(PolicyError, LookupError):
    """A code (tier, plan, behaviour, benefit) that the policy does not define."""

    kind = "code"

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"unknown {self.kind} {code!r}")


class UnknownTier(UnknownCode):
    kind = "tier"


class UnknownPlan(UnknownCode):
    kind = "membership plan"


class UnknownBehaviour(UnknownCode):
    kind = "behaviour"


class UnknownBenefit(UnknownCode):
    kind = "benefit"
