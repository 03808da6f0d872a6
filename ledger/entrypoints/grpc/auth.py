"""Who may call what: API keys (``authorization: Bearer <key>``), roles, program and store scopes.

:class:`Authenticator` is a server interceptor. Health checking needs no key; reflection needs one unless the
server runs with ``--reflection``. Every ``loyalty.v1`` call needs a key whose role grants the method's
permission (PERMISSION_DENIED names the missing one), scoped to the request's program (a key of program A
gets NOT_FOUND for program B, exactly as for a program that does not exist) and, for a key bound to a store,
to that store (a request naming another store is refused; one naming none acts for the key's store). With
``--tls-store-from-cn`` a pos or checkout key acts for the store its client certificate's common name names.
Keys are rate limited (:mod:`ledger.entrypoints.grpc.rate_limit`). The proven principal is handed to the handlers in :data:`ledger.application.principal.CURRENT`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, Final

import grpc
from grpc_status import rpc_status

from ledger.application.keys import ALL_PROGRAMS, KeyCheckThrottled, KeyRing, Principal, Role
from ledger.application.principal import CURRENT
from ledger.domain.errors import NotFound
from ledger.entrypoints.grpc.errors import RpcCode, abort, error_info, status
from ledger.entrypoints.grpc.forwarded import CN_HEADER, PEER_HEADER, forwarded
from ledger.entrypoints.grpc.pipeline import Handler, Layer
from ledger.entrypoints.grpc.rate_limit import Limit, RateLimits, limited_status, peer_address

PERMISSIONS: Final[Mapping[str, str]] = {
    **{m: "member.read" for m in (
        "LookupMember", "QuotePurchase", "GetBalance", "ListLots", "GetTierState", "ListEntitlements", "ListHistory",
        "ListRewards", "ListExchanges", "GetHousehold",
    )},
    **{m: "member.write" for m in (
        "EnrollMember", "RecordPurchase", "AwardPoints", "HoldPoints", "CommitHold", "ReleaseHold",
        "RefundPurchase", "ConsumeEntitlement", "PurchaseMembership",
        "ExchangePoints", "CancelExchange", "CreateHousehold", "JoinHousehold", "LeaveHousehold", "TransferPoints",
    )},
    **{m: "member.manage" for m in (
        "AdjustPoints", "OverrideTier", "MergeMembers", "CancelMembership", "EraseMember", "ExportMemberData",
        "AdjustStock",
    )},
    **{m: "audit.read" for m in ("ReplayMember", "VerifyMember", "VerifyProgram")},
    "GetLiability": "finance.read",
    "ImportMembers": "member.manage",
    **{m: "program.read" for m in ("GetPolicy", "GetClock")},
    **{m: "program.manage" for m in ("PublishPolicy", "AdvanceClock")},
    "CreateProgram": "deployment.manage",
    **{m: "keys.manage" for m in ("CreateKey", "ListKeys", "RevokeKey")},
}  # fmt: skip
"""The permission each ``loyalty.v1`` method needs, by method name."""

ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[str]]] = {
    "pos": frozenset({"member.read", "member.write", "program.read"}),
    "checkout": frozenset({"member.read", "member.write", "program.read"}),
    "operator": frozenset({"member.read", "member.write", "member.manage", "program.read", "finance.read"}),
    "auditor": frozenset({"member.read", "audit.read", "program.read", "finance.read"}),
    "admin": frozenset({"member.read", "member.write", "member.manage", "audit.read", "program.read", "finance.read",
                        "program.manage", "deployment.manage", "keys.manage"}),
}  # fmt: skip

_HEALTH: Final = "/grpc.health.v1.Health/"
_REFLECTION: Final = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")

Behaviour = Callable[[Any, grpc.ServicerContext], Any]


def bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


def _deny(context: grpc.ServicerContext, code: int, message: str, reason: str, **metadata: str) -> None:
    context.abort_with_status(rpc_status.to_status(status(code, message, error_info(reason, metadata))))


class Authenticator(Layer):
    def __init__(
        self, keys: KeyRing, *, public_reflection: bool = False, limits: RateLimits | None = None,
        store_from_cn: bool = False,
    ) -> None:  # fmt: skip
        self._keys = keys
        self._public_reflection = public_reflection
        self._limits = limits or RateLimits(Limit(0, 0), Limit(0, 0))
        self._store_from_cn = store_from_cn

    def wrap(self, method: str, handler: Handler) -> Handler:
        if method.startswith(_HEALTH):
            return handler
        if method.startswith(_REFLECTION):
            if self._public_reflection:
                return handler
            return _wrap(handler, lambda request, context: self._principal(context))
        permission = PERMISSIONS.get(method.rsplit("/", 1)[-1])

        def check(request: Any, context: grpc.ServicerContext) -> Principal:
            principal = self._principal(context)
            if self._store_from_cn and principal.role in STORE_ROLES:
                principal = _store_of_certificate(context, principal)
            if permission is None or permission not in ROLE_PERMISSIONS[principal.role]:
                _deny(
                    context, RpcCode.PERMISSION_DENIED,
                    f"a {principal.role} key may not call {method.rsplit('/', 1)[-1]}: it needs {permission}",
                    "PERMISSION_DENIED", permission=permission or "unknown", role=principal.role,
                )  # fmt: skip
            program_id = getattr(request, "program_id", None)
            if permission == "keys.manage" and program_id in ("", ALL_PROGRAMS) and principal.program_id != ALL_PROGRAMS:
                _deny(context, RpcCode.PERMISSION_DENIED, "deployment-wide keys ('*') need a deployment admin key",
                      "PERMISSION_DENIED", permission=permission, role=principal.role)
            if isinstance(program_id, str) and not principal.sees(program_id):
                abort(context, NotFound("program", program_id))
            if permission == "deployment.manage" and principal.program_id != ALL_PROGRAMS:
                _deny(context, RpcCode.PERMISSION_DENIED, "creating programs needs a deployment admin key ('*')",
                      "PERMISSION_DENIED", permission=permission, role=principal.role)
            if principal.store_id and hasattr(request, "context"):
                named = request.context.store_id
                if named and named != principal.store_id:
                    _deny(context, RpcCode.PERMISSION_DENIED, f"this key acts for store {principal.store_id!r} only",
                          "STORE_NOT_ALLOWED", store_id=named)
                request.context.store_id = principal.store_id
            return principal

        return _wrap(handler, check)

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        metadata = context.invocation_metadata()
        token = bearer(metadata)
        via_gateway = forwarded(metadata)  # an HTTP call: its caller's address, not the gateway's socket
        peer = (via_gateway or {}).get(PEER_HEADER) or peer_address(context.peer() or "")
        failures = self._limits.failures

        def may_work() -> bool:  # slow work for a key not verified yet: not while this peer keeps failing
            return failures.wait(peer) == 0.0

        try:
            principal = self._keys.authenticate(token, may_work=may_work) if token else None
        except KeyCheckThrottled:
            context.abort_with_status(rpc_status.to_status(limited_status(
                failures.wait(peer), "too many failed key checks from this address; retry later", limit="failed_key_checks"
            )))  # fmt: skip
            raise AssertionError("abort returned") from None  # pragma: no cover
        if principal is None:
            if token is not None:
                failures.spend(peer)
            _deny(
                context, RpcCode.UNAUTHENTICATED,
                "a valid API key is required: send 'authorization: Bearer <key>' (keys: ledger keys create)"
                if token is None else "the API key is unknown, revoked or expired",
                "UNAUTHENTICATED",
            )
            raise AssertionError("abort returned")  # pragma: no cover
        waiting = self._limits.keys.take(principal.key_id)
        if waiting:
            context.abort_with_status(rpc_status.to_status(limited_status(
                waiting, f"key {principal.key_id} is over its rate limit ({self._limits.keys.limit} per second:burst)",
                limit="key", key_id=principal.key_id,
            )))  # fmt: skip
        return principal


STORE_ROLES: Final = ("pos", "checkout")
"""The roles a client certificate's common name binds to a store (``ledger serve --tls-store-from-cn``)."""


def _store_of_certificate(context: grpc.ServicerContext, principal: Principal) -> Principal:
    """The principal acting for the store its client certificate names (CN); refused when its key names another."""
    via_gateway = forwarded(context.invocation_metadata())
    if via_gateway is not None:  # over HTTP: the certificate the gateway's TLS handshake verified
        store = via_gateway.get(CN_HEADER, "")
    else:
        names: Any = context.auth_context().get("x509_common_name") or []
        first = names[0] if isinstance(names, list) and names else b""
        store = first.decode(errors="replace") if isinstance(first, bytes) else ""
    if not store:
        _deny(context, RpcCode.PERMISSION_DENIED, "a pos or checkout key needs a client certificate naming its store",
              "CLIENT_CERTIFICATE_REQUIRED")
    if principal.store_id and principal.store_id != store:
        _deny(context, RpcCode.PERMISSION_DENIED,
              f"this key acts for store {principal.store_id!r}, the client certificate is for another store",
              "STORE_NOT_ALLOWED", store_id=store)
    return replace(principal, store_id=store)


def _in_scope(requests: Iterator[Any], principal: Principal, context: grpc.ServicerContext) -> Iterator[Any]:
    """The messages of a client stream; one naming a program the key does not see raises NotFound in the handler
    reading it (which answers NOT_FOUND, as for a program that does not exist)."""
    for request in requests:
        program_id = getattr(request, "program_id", None)
        if isinstance(program_id, str) and not principal.sees(program_id):
            raise NotFound("program", program_id)
        yield request


def _wrap(handler: Handler, check: Callable[[Any, grpc.ServicerContext], Principal]) -> Handler:
    """The same handler, ``check`` first (it aborts the call or returns the principal the call runs as)."""
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            token = CURRENT.set(check(request, context))
            try:
                return inner_uu(request, context)
            finally:
                CURRENT.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            principal = check(request, context)
            token = CURRENT.set(principal)
            try:
                yield from inner_us(request, context)
            finally:
                CURRENT.reset(token)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary is not None:  # ImportMembers: every message is checked for the key's program
        inner_su = handler.stream_unary

        def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            principal = check(None, context)
            token = CURRENT.set(principal)
            try:
                return inner_su(_in_scope(requests, principal, context), context)
            finally:
                CURRENT.reset(token)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_stream is not None:  # reflection
        inner_ss = handler.stream_stream

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            check(None, context)
            yield from inner_ss(requests, context)

        return grpc.stream_stream_rpc_method_handler(
            stream_stream, handler.request_deserializer, handler.response_serializer
        )
    # A handler of no kind above would be served without its key checked: refused here (fail closed), never passed on.
    raise AssertionError("a method handler of no known kind cannot be wrapped by the key check")
