"""What a rule answers when it may refuse: allowed, or the first rule that stops it with its reason code and numbers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Verdict:
    """``reason`` None: allowed; else the reason code of the first rule that stops it, with its numbers."""

    reason: str | None
    message: str = ""
    details: dict[str, object] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.reason is None
