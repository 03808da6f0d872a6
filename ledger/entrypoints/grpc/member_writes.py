"""The member writes of ``loyalty.v1.LedgerService``: enrolment (with identities and consented personal data),
merging two members, erasing a member's personal data."""

from __future__ import annotations

import hashlib
import re

import grpc

from ledger.application.personal import PersonalProfile
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.household_writes import HouseholdWrites
from ledger.entrypoints.grpc.validation import MAX_IDENTITIES, MAX_NOTE, Checks
from loyalty.v1 import common_pb2, ledger_pb2

_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")


_E164 = re.compile(r"\+[1-9]\d{6,14}")


class MemberWrites(HouseholdWrites):
    """Handlers :class:`~ledger.entrypoints.grpc.ledger_service.LedgerService` inherits."""

    @rpc
    def EnrollMember(
        self, request: ledger_pb2.EnrollMemberRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.EnrollMemberResponse:
        c = Checks()
        profile = _enrolment_checks(c, request)
        c.done()
        member_id = request.member_id or (
            "m-"
            + hashlib.sha256(f"{request.program_id}\x1f{request.idempotency_key}".encode()).hexdigest()[:24]
        )
        identities = [(cv.IDENTITY_KINDS[i.kind], i.value) for i in request.identities]
        result = self.app.enroll(
            request.program_id,
            member_id,
            identities,
            profile,
            request.idempotency_key,
            cv.optional_datetime(request.context, "occurred_at"),
            cv.actor_of(request.context),
        )
        enrolled = cv.first(result.events, ev.MemberEnrolled)
        response = ledger_pb2.EnrollMemberResponse(
            member_id=result.member_id,
            profile_stored=profile is not None,
            replayed=result.replayed,
            member_version=result.version,
        )
        if enrolled is not None:
            response.tier = enrolled.tier
            response.policy_version = enrolled.policy_version
            cv.stamp(response.enrolled_at, enrolled.at)
        return response

    @rpc
    def MergeMembers(
        self, request: ledger_pb2.MergeMembersRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.MergeMembersResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("source_member_id", request.source_member_id)
        if request.member_id and request.member_id == request.source_member_id:
            c.fail("source_member_id", "must differ from member_id")
        c.text("reason", request.reason, required=True, max_len=MAX_NOTE)
        c.done()
        result = self._run(
            request,
            cmd.MergeMembers(
                member_id=request.member_id, source_member_id=request.source_member_id, reason=request.reason
            ),
            with_state=True,
        )
        absorbed = cv.first(result.events, ev.MemberAbsorbed)
        response = ledger_pb2.MergeMembersResponse(
            member_id=request.member_id,
            source_member_id=request.source_member_id,
            tier_after=self._tier_after(result),
            replayed=result.replayed,
            member_version=result.version,
        )
        if absorbed is not None:
            response.points_moved = sum(t.points for t in absorbed.lots)
            response.lots_moved = len(absorbed.lots)
            response.arrears_moved = absorbed.arrears
            response.growth_moved = sum(g.amount for g in absorbed.growth)
            response.entitlements_moved = len(absorbed.entitlement_ids)
            response.identities_moved = len(absorbed.identities)
        return response

    @rpc
    def EraseMember(
        self, request: ledger_pb2.EraseMemberRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.EraseMemberResponse:
        c = Checks()
        self._common(c, request)
        c.text("reason", request.reason, required=True, max_len=MAX_NOTE)
        c.text("request_reference", request.request_reference, required=True)
        c.done()
        result = self._run(
            request,
            cmd.EraseMember(
                member_id=request.member_id,
                reason=request.reason,
                request_reference=request.request_reference,
            ),
            business_time=False,
        )
        response = ledger_pb2.EraseMemberResponse(
            member_id=request.member_id, replayed=result.replayed, member_version=result.version
        )
        erased = cv.first(result.events, ev.MemberErased)
        if erased is not None:
            response.identities_removed = erased.identities_removed
            cv.stamp(response.erased_at, erased.at)
        return response


def _enrolment_checks(c: Checks, request: ledger_pb2.EnrollMemberRequest) -> PersonalProfile | None:
    """The checks of an enrolment (its identities, its personal data and consent); the profile to store, if any."""
    c.program_id(request.program_id)
    c.idempotency_key(request.idempotency_key)
    c.caller_id("member_id", request.member_id, required=False)
    c.context(request)
    if len(request.identities) > MAX_IDENTITIES:
        c.fail("identities", f"at most {MAX_IDENTITIES} identities")
    seen: set[tuple[int, str]] = set()
    for i, identity in enumerate(request.identities):
        c.enum(f"identities[{i}].kind", identity.kind, common_pb2.IdentityKind)
        c.text(f"identities[{i}].value", identity.value, required=True)
        if (identity.kind, identity.value) in seen:
            c.fail(f"identities[{i}]", "the same identity is listed twice")
        seen.add((identity.kind, identity.value))
    profile = None
    if request.HasField("profile"):
        p = request.profile
        given = bool(p.birth_month or p.baby_birth_date or p.phone)
        if given and not p.consent:
            c.fail("profile.consent", "must be true when personal data is given")
        c.between("profile.birth_month", p.birth_month, 0, 12)
        if p.baby_birth_date and not _DATE.fullmatch(p.baby_birth_date):
            c.fail("profile.baby_birth_date", "must be a date YYYY-MM-DD")
        if p.phone and not _E164.fullmatch(p.phone):
            c.fail("profile.phone", "must be an E.164 number such as +8613800138000")
        if given:
            profile = PersonalProfile(
                birth_month=p.birth_month or None,
                baby_birth_date=p.baby_birth_date or None,
                phone=p.phone or None,
                consent=p.consent,
            )
    return profile
