"""``loyalty.v1.KeyService``: API keys issued, listed and revoked over gRPC by an admin key.

The interceptor (:mod:`ledger.entrypoints.grpc.auth`) lets only admin keys in and refuses deployment-wide
(``*``) requests from a program admin; here each key a request names is checked against the caller's program
too (a key of another program is KEY_NOT_FOUND, as for a key that does not exist). The secret is in the
CreateKey response only: never logged, never in an error message, never in an event (the log keeps its hash).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

import grpc

from ledger.application.keys import ALL_PROGRAMS, ApiKey, KeyRefused, KeyRing, Principal, Role
from ledger.application.principal import CURRENT
from ledger.domain.errors import InvalidCommand, NotFound
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.validation import Checks
from loyalty.v1 import keys_pb2, keys_pb2_grpc

ROLE_OF: Final[dict[keys_pb2.KeyRole.ValueType, Role]] = {
    keys_pb2.KEY_ROLE_POS: "pos",
    keys_pb2.KEY_ROLE_CHECKOUT: "checkout",
    keys_pb2.KEY_ROLE_OPERATOR: "operator",
    keys_pb2.KEY_ROLE_AUDITOR: "auditor",
    keys_pb2.KEY_ROLE_ADMIN: "admin",
}
ROLE_ENUM: Final = {role: value for value, role in ROLE_OF.items()}
_KEY_ID: Final = re.compile(r"[0-9a-f]{16}")

#: Who acts when the server runs without authentication (``--insecure-no-auth``): anyone, as a deployment admin.
_NOBODY: Final = Principal(key_id="", program_id=ALL_PROGRAMS, role="admin")


def _stamp(target: object, value: datetime | None) -> None:
    if value is not None:
        target.FromDatetime(value.astimezone(UTC))  # type: ignore[attr-defined]


def key_info(key: ApiKey) -> keys_pb2.ApiKeyInfo:
    info = keys_pb2.ApiKeyInfo(
        key_id=key.key_id, program_id=key.program_id, role=ROLE_ENUM[key.role], store_id=key.store_id, name=key.name
    )
    _stamp(info.created_at, key.created_at)
    _stamp(info.expires_at, key.expires_at)
    _stamp(info.revoked_at, key.revoked_at)
    return info


class KeyService(keys_pb2_grpc.KeyServiceServicer):
    """Key management for admin keys; each call acts as the authenticated admin (recorded on the key's event)."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    @staticmethod
    def _caller() -> Principal:
        return CURRENT.get() or _NOBODY

    @staticmethod
    def _actor(caller: Principal) -> dict[str, str]:
        actor = {"channel": "api"}
        if caller.key_id:
            actor.update(key_id=caller.key_id, role=caller.role)
        return actor

    def _visible(self, caller: Principal, key_id: str) -> ApiKey:
        """The key ``key_id`` if the caller's program covers it; else KEY_NOT_FOUND (never a hint it exists)."""
        key = next((k for k in self.keys.listed() if k.key_id == key_id), None)
        if key is None or not caller.sees(key.program_id):
            raise NotFound("key", key_id)
        return key

    @rpc
    def CreateKey(self, request: keys_pb2.CreateKeyRequest, context: grpc.ServicerContext) -> keys_pb2.CreateKeyResponse:
        c = Checks()
        if request.program_id != ALL_PROGRAMS:
            c.program_id(request.program_id)
        c.enum("role", request.role, keys_pb2.KeyRole)
        c.caller_id("store_id", request.store_id, required=False)
        c.timestamp("expires_at", request, "expires_at")
        c.done()
        expires_at = request.expires_at.ToDatetime(tzinfo=UTC) if request.HasField("expires_at") else None
        caller = self._caller()
        try:
            key, token = self.keys.issue(
                request.program_id, ROLE_OF[request.role], store_id=request.store_id, name=request.name,
                expires_at=expires_at, actor=self._actor(caller),
            )  # fmt: skip
        except KeyRefused as exc:
            raise InvalidCommand(_field_of(str(exc)), str(exc)) from None
        return keys_pb2.CreateKeyResponse(key=key_info(key), secret=token)

    @rpc
    def ListKeys(self, request: keys_pb2.ListKeysRequest, context: grpc.ServicerContext) -> keys_pb2.ListKeysResponse:
        if request.program_id not in ("", ALL_PROGRAMS):
            c = Checks()
            c.program_id(request.program_id)
            c.done()
        caller = self._caller()
        listed = [k for k in self.keys.listed() if caller.sees(k.program_id)]
        if request.program_id:
            listed = [k for k in listed if k.program_id == request.program_id]
        return keys_pb2.ListKeysResponse(keys=[key_info(k) for k in listed])

    @rpc
    def RevokeKey(self, request: keys_pb2.RevokeKeyRequest, context: grpc.ServicerContext) -> keys_pb2.RevokeKeyResponse:
        c = Checks()
        if not request.key_id:
            c.fail("key_id", "is required")
        elif not _KEY_ID.fullmatch(request.key_id):
            c.fail("key_id", "must be 16 hex characters (the part after lk_ of a key)")
        c.done()
        caller = self._caller()
        key = self._visible(caller, request.key_id)
        return keys_pb2.RevokeKeyResponse(key=key_info(self.keys.revoke(key.key_id, actor=self._actor(caller))))


def _field_of(message: str) -> str:
    """The request field a refusal of :meth:`KeyRing.issue` is about."""
    if "store" in message:
        return "store_id"
    if "expiry" in message:
        return "expires_at"
    if "'*'" in message:
        return "program_id"
    return "role"
