"""The program stream: a program's creation, its policy versions and its test clock.

A program runs on the real clock or on a test clock. A test clock starts at any chosen moment and moves only
forward, by ``AdvanceClock``; a real-clock program refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ledger.domain.errors import InvalidCommand, Refusal
from policies import PolicyHistory, PolicyVersion, dump_policy, load_policy


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    at: datetime


class ProgramCreated(_Event):
    type: Literal["ProgramCreated"] = "ProgramCreated"
    program_id: str
    name: str
    clock: Literal["real", "test"]
    test_time: datetime | None
    document: str


class PolicyPublished(_Event):
    type: Literal["PolicyPublished"] = "PolicyPublished"
    version: int
    effective_from: datetime
    document: str


class ClockAdvanced(_Event):
    type: Literal["ClockAdvanced"] = "ClockAdvanced"
    to: datetime


ProgramEvent = Annotated[ProgramCreated | PolicyPublished | ClockAdvanced, Field(discriminator="type")]
PROGRAM_EVENT: TypeAdapter[ProgramEvent] = TypeAdapter(ProgramEvent)


def encode(event: ProgramEvent) -> bytes:
    return event.model_dump_json().encode()


def decode(payload: bytes) -> ProgramEvent:
    return PROGRAM_EVENT.validate_json(payload)


@dataclass(slots=True)
class ProgramState:
    program_id: str
    name: str = ""
    clock: str = "real"
    test_time: datetime | None = None
    policies: PolicyHistory = field(default_factory=PolicyHistory)
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0


def evolve_program(state: ProgramState, event: ProgramEvent) -> ProgramState:
    if isinstance(event, ProgramCreated):
        state.name = event.name
        state.clock = event.clock
        state.test_time = event.test_time
        state.policies = PolicyHistory().with_version(PolicyVersion(1, event.at, load_policy(event.document)))
    elif isinstance(event, PolicyPublished):
        state.policies = state.policies.with_version(
            PolicyVersion(event.version, event.effective_from, load_policy(event.document))
        )
    else:
        assert state.test_time is not None and event.to > state.test_time, "a test clock only moves forward"
        state.test_time = event.to
    state.version += 1
    return state


def create_program(
    state: ProgramState, *, name: str, document: str, clock: str, test_time: datetime | None, now: datetime
) -> list[ProgramEvent]:
    if state.exists:
        raise Refusal("PROGRAM_EXISTS", f"program {state.program_id} already exists", {"id": state.program_id})
    if clock not in ("real", "test"):
        raise InvalidCommand("clock", "must be real or test")
    if clock == "test" and test_time is None:
        raise InvalidCommand("clock.test_time", "a test clock needs its starting time")
    policy = load_policy(document)  # raises PolicyInvalid naming the field
    at = test_time if clock == "test" and test_time is not None else now
    return [
        ProgramCreated(
            at=at,
            program_id=state.program_id,
            name=name,
            clock="test" if clock == "test" else "real",
            test_time=test_time if clock == "test" else None,
            document=dump_policy(policy),
        )
    ]


def publish_policy(state: ProgramState, *, document: str, effective_from: datetime | None, now: datetime) -> list[ProgramEvent]:
    effective = effective_from or now
    earliest = max(now, state.policies.latest.effective_from) if state.policies.versions else now
    if effective < earliest:
        raise Refusal(
            "EFFECTIVE_FROM_TOO_EARLY",
            "a policy version applies from its effective time, not before now or before the latest version's;"
            " it cannot re-judge the past",
            {"effective_from": effective, "earliest_allowed": earliest},
        )
    policy = load_policy(document)
    return [
        PolicyPublished(at=now, version=state.policies.latest.version + 1, effective_from=effective, document=dump_policy(policy))
    ]


def advance_clock(state: ProgramState, *, to: datetime) -> list[ProgramEvent]:
    if state.clock != "test" or state.test_time is None:
        raise Refusal(
            "NOT_ON_TEST_CLOCK", f"program {state.program_id} runs on the real clock", {"program_id": state.program_id}
        )
    if to <= state.test_time:
        raise Refusal(
            "CLOCK_NOT_FORWARD",
            "a test clock only moves forward",
            {"now": state.test_time, "requested": to},
        )
    return [ClockAdvanced(at=to, to=to)]
