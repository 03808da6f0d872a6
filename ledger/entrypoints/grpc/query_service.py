"""``loyalty.v1.MemberQueryService``: balances, lots, tier state, entitlements, history, lookups and quotes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import grpc

from ledger.application.as_of import lot_page, member_as_of
from ledger.application.member_export import export_document
from ledger.application.service import MemberView
from ledger.domain import commands as cmd
from ledger.domain import queries
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.common import line_earning, order_lines, page_bounds
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.household_queries import HouseholdQueries
from ledger.entrypoints.grpc.validation import (
    Checks,
    check_purchase_shape,
)
from loyalty.v1 import (
    common_pb2,
    member_pb2,
    query_pb2,
    query_pb2_grpc,
)


def _times(request: Any) -> tuple[datetime | None, datetime | None] | None:
    """The request's ``as_of`` and ``as_known_at`` (None: neither is set, the live answer is asked for)."""
    as_of = cv.optional_datetime(request, "as_of")
    as_known_at = cv.optional_datetime(request, "as_known_at")
    return None if as_of is None and as_known_at is None else (as_of, as_known_at)


class MemberQueryService(HouseholdQueries, query_pb2_grpc.MemberQueryServiceServicer):
    def _standing_at(self, request: Any) -> MemberView:
        """The member now for its tier state and entitlements (the read models when they are current and have
        reached the request's ``min_version``, else the writer), or folded from the log as of ``as_of`` as known
        at ``as_known_at`` when either is set."""
        times = _times(request)
        if times is None:
            return self.app.standing_view(request.program_id, request.member_id, request.min_version)
        return member_as_of(self.app, request.program_id, request.member_id, *times)

    @staticmethod
    def _member(request: Any) -> None:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        if hasattr(request, "min_version"):
            c.min_version(request.min_version)
        c.done()

    @rpc
    def ExportMemberData(
        self, request: query_pb2.ExportMemberDataRequest, context: grpc.ServicerContext
    ) -> query_pb2.ExportMemberDataResponse:
        self._member(request)
        return query_pb2.ExportMemberDataResponse(
            document=export_document(self.app, request.program_id, request.member_id)
        )

    @rpc
    def LookupMember(
        self, request: query_pb2.LookupMemberRequest, context: grpc.ServicerContext
    ) -> query_pb2.LookupMemberResponse:
        c = Checks()
        c.program_id(request.program_id)
        if not request.HasField("identity"):
            c.fail("identity", "is required")
        else:
            c.enum("identity.kind", request.identity.kind, common_pb2.IdentityKind)
            c.text("identity.value", request.identity.value, required=True)
        c.done()
        found = self.app.look_up(
            request.program_id, cv.IDENTITY_KINDS[request.identity.kind], request.identity.value
        )
        response = query_pb2.LookupMemberResponse(
            member_id=found.member_id,
            status=query_pb2.MEMBER_STATUS_MERGED if found.merged_into else query_pb2.MEMBER_STATUS_ACTIVE,
            tier=found.tier,
            balance=cv.balance_message(found.balance),
        )
        cv.stamp(response.enrolled_at, found.enrolled_at)
        return response

    @rpc
    def QuotePurchase(
        self, request: query_pb2.QuotePurchaseRequest, context: grpc.ServicerContext
    ) -> query_pb2.QuotePurchaseResponse:
        c = Checks()
        check_purchase_shape(c, request, order_required=False)
        c.done()
        occurred_at = cv.optional_datetime(request.context, "occurred_at")
        command = cmd.RecordPurchase(
            member_id=request.member_id,
            order_id=request.order_id,
            lines=order_lines(request),
            order_total_fen=request.order_total_fen,
            points_paid=request.points_paid,
        )
        view = self._view(request.program_id, request.member_id)
        at = occurred_at or view.now
        policies = self.app.program(request.program_id).policies
        if at < policies.versions[0].effective_from:
            raise Refusal(
                "POLICY_NOT_EFFECTIVE_YET",
                "no policy version was in force at the business time",
                {
                    "occurred_at": cv.rfc3339(at),
                    "first_effective_from": cv.rfc3339(policies.versions[0].effective_from),
                },
            )
        pv = policies.in_force_at(at)
        if view.state.merged_into:
            raise Refusal(
                "MEMBER_MERGED",
                f"member {request.member_id} was merged into {view.state.merged_into}",
                {"member_id": request.member_id, "merged_into": view.state.merged_into},
            )
        window = (
            self.app.program(request.program_id).policies.in_force_at(view.now).policy.offline_window_days
        )
        earliest = view.now - timedelta(days=window)
        if at < earliest:
            raise Refusal(
                "OUTSIDE_OFFLINE_WINDOW",
                f"business time is more than {window} days before now",
                {
                    "occurred_at": cv.rfc3339(at),
                    "now": cv.rfc3339(view.now),
                    "window_days": window,
                    "earliest_allowed": cv.rfc3339(earliest),
                },
            )
        earning = self.app.quote(request.program_id, command, occurred_at)
        tier_at_sale = queries.tier_in_effect(view.state, pv.policy, at)
        response = query_pb2.QuotePurchaseResponse(
            member_id=request.member_id,
            points_earned=earning.points,
            growth_earned=earning.growth,
            applied_multiplier=cv.ratio(earning.multiplier),
            applied_multiplier_rule=earning.multiplier_rule,
            policy_version=pv.version,
            tier_at_sale=tier_at_sale,
            tier_after=tier_at_sale,
            already_recorded=bool(request.order_id) and request.order_id in view.state.orders,
        )
        for line, src in zip(earning.lines, request.lines, strict=True):
            response.lines.append(line_earning(line, src.sku, src.category))
        response.candidates.extend(
            common_pb2.MultiplierCandidate(rule=r, multiplier=cv.ratio(f)) for r, f in earning.candidates
        )
        cv.stamp(response.active_at, earning.active_at)
        cv.stamp(response.expires_at, earning.expires_at)
        return response

    @rpc
    def GetBalance(
        self, request: query_pb2.GetBalanceRequest, context: grpc.ServicerContext
    ) -> query_pb2.GetBalanceResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        c.min_version(request.min_version)
        c.done()
        times = _times(request)
        if times is not None:
            view = member_as_of(self.app, request.program_id, request.member_id, *times)
            return query_pb2.GetBalanceResponse(
                balance=cv.balance_message(queries.balance_figures(view.state, view.now))
            )
        figures = self.app.balance(request.program_id, request.member_id, request.min_version)
        return query_pb2.GetBalanceResponse(balance=cv.balance_message(figures))

    @rpc
    def ListLots(
        self, request: query_pb2.ListLotsRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListLotsResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        size = c.page_size(request.page_size)
        for i, s in enumerate(request.statuses):
            c.enum(f"statuses[{i}]", s, member_pb2.LotStatus)
        c.min_version(request.min_version)
        c.done()
        token = request.page_token
        if token and not (token.isdigit() and len(token) <= 18 and int(token) > 0):
            raise InvalidCommand("page_token", "is not a token this listing returned")
        start = int(token) if token else 0
        statuses = sorted({cv.LOT_STATUS_NAMES[s] for s in request.statuses if s in cv.LOT_STATUS_NAMES})
        times = _times(request)
        if times is not None:
            view = member_as_of(self.app, request.program_id, request.member_id, *times)
            lots, total, version = lot_page(view, statuses, start, size)
        else:
            lots, total, version = self.app.lots(
                request.program_id, request.member_id, statuses, start, size, request.min_version
            )
        if start > total:
            raise InvalidCommand("page_token", "is not a token this listing returned")
        end = start + len(lots)
        return query_pb2.ListLotsResponse(
            lots=[cv.lot_of_row(lot) for lot in lots],
            next_page_token=str(end) if end < total else "",
            version=version,
        )

    @rpc
    def GetTierState(
        self, request: query_pb2.GetTierStateRequest, context: grpc.ServicerContext
    ) -> query_pb2.GetTierStateResponse:
        self._member(request)
        view = self._standing_at(request)
        return query_pb2.GetTierStateResponse(
            tier_state=cv.tier_state(view.state, view.policy.policy, view.now)
        )

    @rpc
    def ListEntitlements(
        self, request: query_pb2.ListEntitlementsRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListEntitlementsResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        size = c.page_size(request.page_size)
        for i, s in enumerate(request.statuses):
            c.enum(f"statuses[{i}]", s, member_pb2.EntitlementStatus)
        c.min_version(request.min_version)
        c.done()
        view = self._standing_at(request)
        wanted = set(request.statuses)
        items = [
            cv.entitlement(ent, view.policy.policy, view.now)
            for ent in sorted(
                view.state.entitlements.values(), key=lambda e: (e.granted_at, e.entitlement_id), reverse=True
            )
        ]
        items = [e for e in items if not wanted or e.status in wanted]
        start, end, token = page_bounds(request.page_token, len(items), size)
        return query_pb2.ListEntitlementsResponse(entitlements=items[start:end], next_page_token=token)

    @rpc
    def ListHistory(
        self, request: query_pb2.ListHistoryRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListHistoryResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        size = c.page_size(request.page_size)
        c.min_version(request.min_version)
        c.done()
        # The token is the newest version of the next (older) page: it continues at versions <= token, so events
        # written meanwhile never shift later pages.
        token = request.page_token
        if token and not (token.isdigit() and len(token) <= 18):
            raise InvalidCommand("page_token", "is not a token this listing returned")
        page = self.app.history(
            request.program_id, request.member_id, int(token) if token else None, size, request.min_version
        )
        response = query_pb2.ListHistoryResponse(
            next_page_token=str(page.next_through) if page.next_through else ""
        )
        for e in page.entries:
            entry = response.entries.add(
                version=e.version,
                event_id=e.event_id,
                event_type=e.event_type,
                summary=e.summary,
                points_delta=e.points_delta,
                growth_delta=e.growth_delta,
                balance_after=cv.snapshot(e.after),
                tier_after=e.tier_after,
                order_id=e.order_id,
                policy_version=e.policy_version,
                actor=cv.actor_message(e.actor),
            )
            cv.stamp(entry.occurred_at, e.occurred_at)
            cv.stamp(entry.recorded_at, e.recorded_at)
        return response
