"""``loyalty.v1.ProgramService``: programs, policy versions and test clocks, over the application facade."""

from __future__ import annotations

import json
from datetime import datetime

import grpc
import yaml

from ledger.application.service import LedgerApp
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.validation import (
    MAX_DOCUMENT,
    Checks,
)
from loyalty.v1 import (
    common_pb2,
    program_pb2,
    program_pb2_grpc,
)
from policies.errors import NoPolicyInForce


def _document_text(document: str, fmt: int) -> str:
    """The document as the ledger parses it: JSON is checked as JSON first so a YAML-only text is refused."""
    if fmt == common_pb2.DOCUMENT_FORMAT_JSON:
        try:
            json.loads(document)
        except (ValueError, RecursionError) as exc:
            raise InvalidCommand("document", f"document: (document): not a valid JSON document: {exc}") from exc
    return document


def _check_document(c: Checks, document: str, fmt: int) -> None:
    if not document:
        c.fail("document", "is required")
    elif len(document.encode()) > MAX_DOCUMENT:
        c.fail("document", "must be at most 1 MiB")
    c.enum("format", fmt, common_pb2.DocumentFormat)


class ProgramService(program_pb2_grpc.ProgramServiceServicer):
    def __init__(self, app: LedgerApp) -> None:
        self.app = app

    def _time_zone(self, program_id: str, at: datetime) -> str:
        try:
            return self.app.program(program_id).policies.in_force_at(at).policy.timezone
        except NoPolicyInForce:
            return self.app.program(program_id).policies.latest.policy.timezone

    @rpc
    def CreateProgram(
        self, request: program_pb2.CreateProgramRequest, context: grpc.ServicerContext
    ) -> program_pb2.CreateProgramResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.text("display_name", request.display_name, required=True)
        _check_document(c, request.document, request.format)
        c.idempotency_key(request.idempotency_key)
        kind = request.clock.kind
        if not request.HasField("clock"):
            c.fail("clock", "is required")
        else:
            c.enum("clock.kind", kind, program_pb2.ClockKind)
            if kind == program_pb2.CLOCK_KIND_TEST:
                c.timestamp("clock.initial_time", request.clock, "initial_time", required=True)
            elif kind == program_pb2.CLOCK_KIND_REAL and request.clock.HasField("initial_time"):
                c.fail("clock.initial_time", "must be unset for the real clock")
        c.context(request)
        c.done()
        existed = request.program_id in self.app.program_ids()
        test_time = cv.optional_datetime(request.clock, "initial_time") if kind == program_pb2.CLOCK_KIND_TEST else None
        state = self.app.create_program(
            request.program_id,
            request.display_name,
            _document_text(request.document, request.format),
            "test" if kind == program_pb2.CLOCK_KIND_TEST else "real",
            test_time,
            request.idempotency_key,
        )
        first = state.policies.versions[0]
        response = program_pb2.CreateProgramResponse(
            program_id=state.program_id,
            display_name=state.name,
            policy_version=first.version,
            clock_kind=program_pb2.CLOCK_KIND_TEST if state.clock == "test" else program_pb2.CLOCK_KIND_REAL,
            time_zone=first.policy.timezone,
            replayed=existed,
        )
        cv.stamp(response.effective_from, first.effective_from)
        cv.stamp(response.now, self.app.now(state.program_id))
        return response

    @rpc
    def PublishPolicy(
        self, request: program_pb2.PublishPolicyRequest, context: grpc.ServicerContext
    ) -> program_pb2.PublishPolicyResponse:
        c = Checks()
        c.program_id(request.program_id)
        _check_document(c, request.document, request.format)
        c.timestamp("effective_from", request, "effective_from")
        c.idempotency_key(request.idempotency_key)
        c.context(request)
        c.done()
        before = self.app.program(request.program_id).policies.latest.version
        published_at = self.app.now(request.program_id)
        pv = self.app.publish_policy(
            request.program_id,
            _document_text(request.document, request.format),
            cv.optional_datetime(request, "effective_from"),
            request.idempotency_key,
        )
        response = program_pb2.PublishPolicyResponse(version=pv.version, replayed=pv.version == before)
        cv.stamp(response.effective_from, pv.effective_from)
        cv.stamp(response.published_at, published_at)
        return response

    @rpc
    def GetPolicy(self, request: program_pb2.GetPolicyRequest, context: grpc.ServicerContext) -> program_pb2.GetPolicyResponse:
        c = Checks()
        c.program_id(request.program_id)
        selector = request.WhichOneof("selector")
        if selector == "version" and request.version < 1:
            c.fail("version", "must be at least 1")
        if selector == "as_of":
            c.timestamp("as_of", request, "as_of")
        c.enum("format", request.format, common_pb2.DocumentFormat, required=False)
        c.done()
        as_of = cv.optional_datetime(request, "as_of") if selector == "as_of" else None
        if as_of is not None:
            first = self.app.program(request.program_id).policies.versions[0]
            if as_of < first.effective_from:
                raise Refusal(
                    "POLICY_NOT_EFFECTIVE_YET",
                    "no policy version was in force at that time",
                    {"occurred_at": cv.rfc3339(as_of), "first_effective_from": cv.rfc3339(first.effective_from)},
                )
        pv, versions = self.app.get_policy(
            request.program_id, request.version if selector == "version" else None, as_of
        )
        document = self.app.policy_document(pv)
        fmt = request.format or common_pb2.DOCUMENT_FORMAT_YAML
        if fmt == common_pb2.DOCUMENT_FORMAT_JSON:
            document = json.dumps(yaml.safe_load(document), ensure_ascii=False, indent=2)
        now = self.app.now(request.program_id)
        try:
            in_force = self.app.program(request.program_id).policies.in_force_at(now).version
        except NoPolicyInForce:
            in_force = 0
        response = program_pb2.GetPolicyResponse(
            program_id=request.program_id, version=pv.version, document=document, format=fmt
        )
        cv.stamp(response.effective_from, pv.effective_from)
        for v in versions:
            info = response.versions.add(version=v.version, in_force=v.version == in_force)
            cv.stamp(info.effective_from, v.effective_from)
        return response

    @rpc
    def AdvanceClock(
        self, request: program_pb2.AdvanceClockRequest, context: grpc.ServicerContext
    ) -> program_pb2.AdvanceClockResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.timestamp("to", request, "to", required=True)
        c.idempotency_key(request.idempotency_key)
        c.context(request)
        c.done()
        to = cv.to_datetime(request.to)
        program = self.app.program(request.program_id)
        if program.clock != "test":
            raise Refusal(
                "NOT_ON_TEST_CLOCK",
                f"program {request.program_id} runs on the real clock",
                {"program_id": request.program_id},
            )
        previous = self.app.now(request.program_id)
        response = program_pb2.AdvanceClockResponse()
        try:
            counts = self.app.advance_clock(request.program_id, to, request.idempotency_key)
        except Refusal as exc:
            if exc.reason == "CLOCK_NOT_FORWARD" and to == previous:
                # Equal to the current time: nothing new falls due.
                cv.stamp(response.previous_time, previous)
                cv.stamp(response.now, previous)
                return response
            raise
        now = counts.get("now") or self.app.now(request.program_id)
        assert isinstance(now, datetime)
        cv.stamp(response.previous_time, previous)
        cv.stamp(response.now, now)

        def n(key: str) -> int:
            value = counts.get(key, 0)
            return value if isinstance(value, int) else 0

        response.activations = n("activations")
        response.expiries = n("expiries")
        response.holds_released = n("holds_released")
        response.reviews = n("reviews")
        # Time-driven tier changes are review downgrades (upgrades happen when growth is recorded).
        response.downgrades = n("tier_changes")
        response.grants = n("grants")
        response.overrides_ended = n("overrides_ended")
        response.memberships_lapsed = n("memberships_lapsed")
        response.members_touched = n("members_ticked")
        response.events_written = n("events_written")
        response.replayed = previous == to
        return response

    @rpc
    def GetClock(self, request: program_pb2.GetClockRequest, context: grpc.ServicerContext) -> program_pb2.GetClockResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.done()
        program = self.app.program(request.program_id)
        now = self.app.now(request.program_id)
        response = program_pb2.GetClockResponse(
            program_id=request.program_id,
            kind=program_pb2.CLOCK_KIND_TEST if program.clock == "test" else program_pb2.CLOCK_KIND_REAL,
            time_zone=self._time_zone(request.program_id, now),
        )
        cv.stamp(response.now, now)
        return response
