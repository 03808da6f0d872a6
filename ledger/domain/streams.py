"""Stream names: the one place that builds and parses the ids of member, program and signal streams.

``member-{program_id}-{member_id}``, ``program-{program_id}``, ``signal-{program_id}``,
``stock-{program_id}-{reward_id}`` (a reward's stock; no member's, never projected or fed). Program ids match
``[a-z][a-z0-9_]{0,63}`` and so never contain ``-``: the first ``-`` after the prefix ends the program id.
"""

from __future__ import annotations

from typing import Final, Literal

MEMBER_PREFIX: Final = "member-"
PROGRAM_PREFIX: Final = "program-"
SIGNAL_PREFIX: Final = "signal-"
STOCK_PREFIX: Final = "stock-"
"""``stock-{program_id}-{reward_id}``: the units of one points-mall reward taken, returned and adjusted."""
KEYS_STREAM: Final = "keys"
"""The deployment's API keys (issued, revoked): no program's stream, never projected or fed."""
PEPPER_STREAM: Final = "identity-pepper"
"""The fingerprint of the identity pepper the store was first served with: no program's stream either."""

StreamKind = Literal["member", "program", "signal"]


def member_stream(program_id: str, member_id: str) -> str:
    return f"{MEMBER_PREFIX}{program_id}-{member_id}"


def member_streams_of(program_id: str) -> str:
    """The prefix every member stream of ``program_id`` starts with (and no other program's)."""
    return f"{MEMBER_PREFIX}{program_id}-"


def program_stream(program_id: str) -> str:
    return f"{PROGRAM_PREFIX}{program_id}"


def signal_stream(program_id: str) -> str:
    """The stream of a program's lifecycle signals."""
    return f"{SIGNAL_PREFIX}{program_id}"


def stock_stream(program_id: str, reward_id: str) -> str:
    """The stock stream of one reward of the points mall (written in the same append as the member's events)."""
    return f"{STOCK_PREFIX}{program_id}-{reward_id}"


def stock_streams_of(program_id: str) -> str:
    """The prefix every stock stream of ``program_id`` starts with (and no other program's)."""
    return f"{STOCK_PREFIX}{program_id}-"


_PARSED_MEMBERS: dict[str, tuple[str, str]] = {}
_PARSED_MEMBERS_MAX: Final = 65536


def parse_member_stream(stream_id: str) -> tuple[str, str]:
    """``(program_id, member_id)`` of a member stream; ValueError for any other stream id."""
    parsed = _PARSED_MEMBERS.get(stream_id)
    if parsed is not None:
        return parsed
    found = parse_stream(stream_id)
    if found is None or found[0] != "member":
        raise ValueError(f"{stream_id!r} is not a member stream")
    if len(_PARSED_MEMBERS) >= _PARSED_MEMBERS_MAX:
        _PARSED_MEMBERS.clear()
    parsed = _PARSED_MEMBERS[stream_id] = (found[1], found[2])
    return parsed


def parse_stream(stream_id: str) -> tuple[StreamKind, str, str] | None:
    """``(kind, program_id, member_id)`` of a stream id (member id ``""`` for program and signal streams);
    None for a stream id that is none of the three."""
    if stream_id.startswith(MEMBER_PREFIX):
        program_id, sep, member_id = stream_id[len(MEMBER_PREFIX) :].partition("-")
        if sep and program_id and member_id:
            return "member", program_id, member_id
        return None
    kind: StreamKind
    for kind, prefix in (("program", PROGRAM_PREFIX), ("signal", SIGNAL_PREFIX)):
        if stream_id.startswith(prefix):
            program_id = stream_id[len(prefix) :]
            if program_id and "-" not in program_id:
                return kind, program_id, ""
            return None
    return None


def program_ids_of(stream_ids: list[str]) -> list[str]:
    """The program ids of the program streams among ``stream_ids`` (a ``list_streams(PROGRAM_PREFIX)`` answer)."""
    return [s[len(PROGRAM_PREFIX) :] for s in stream_ids if s.startswith(PROGRAM_PREFIX)]
