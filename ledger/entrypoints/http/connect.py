"""The Connect protocol's unary calls, as far as the gateway speaks it: which procedures there are, the request
and response bodies (protobuf JSON or binary protobuf), and a gRPC status as a Connect error.

A procedure is ``/<package>.<Service>/<Method>`` of ``loyalty.v1`` or ``grpc.health.v1.Health``, as over gRPC.
A Connect error is ``{"code": "failed_precondition", "message": "...", "details": [...]}`` with the HTTP status
the protocol gives each code; every ``google.rpc`` detail of the gRPC status (ErrorInfo with its reason,
BadRequest with its field violations, RetryInfo, RequestInfo) is one entry ``{"type": "google.rpc.ErrorInfo",
"value": <base64 of the protobuf>, "debug": <the same as protobuf JSON>}``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf import any_pb2, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2

from loyalty.v1 import audit_pb2, keys_pb2, ledger_pb2, program_pb2, query_pb2

JSON: Final = "application/json"
PROTO: Final = "application/proto"

#: The HTTP status of each Connect code (connectrpc.com/docs/protocol, "Error Codes").
HTTP_STATUS: Final[Mapping[str, int]] = {
    "canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
    "already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
    "aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
    "data_loss": 500, "unauthenticated": 401,
}  # fmt: skip

_DETAIL_TYPES: Final = {
    d.DESCRIPTOR.full_name: d
    for d in (
        error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo,
        error_details_pb2.RequestInfo, error_details_pb2.ResourceInfo, error_details_pb2.PreconditionFailure,
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Procedure:
    path: str
    request: type[Message]
    response: type[Message]
    streaming: bool


def procedures() -> dict[str, Procedure]:
    """Every procedure of the ledger's services and of health checking, by path."""
    found: dict[str, Procedure] = {}
    for module in (program_pb2, ledger_pb2, query_pb2, audit_pb2, keys_pb2, health_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                found[path] = Procedure(
                    path,
                    message_factory.GetMessageClass(method.input_type),
                    message_factory.GetMessageClass(method.output_type),
                    method.server_streaming or method.client_streaming,
                )
    return found


class ConnectError(Exception):
    """A call answered with a Connect error (the gateway's own refusals: the body, the route, the limits)."""

    def __init__(
        self, code: str, message: str, details: Iterable[Message] = (), *, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)
        self.status = status
        """The HTTP status when not the code's (404 for an unknown path, 405 for a method other than POST)."""

    @property
    def http_status(self) -> int:
        return self.status or HTTP_STATUS.get(self.code, 500)

    def body(self) -> bytes:
        return error_body(self.code, self.message, [_packed(d) for d in self.details])


def invalid(message: str, field: str = "") -> ConnectError:
    """``invalid_argument`` with a BadRequest naming ``field`` (empty: the body as a whole)."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
    return ConnectError(
        "invalid_argument", message, [error_details_pb2.BadRequest(field_violations=[violation])]
    )


def decode_request(procedure: Procedure, content_type: str, body: bytes) -> bytes:
    """The request as binary protobuf, checked; :class:`ConnectError` ``invalid_argument`` naming the problem."""
    message = procedure.request()
    name = message.DESCRIPTOR.full_name
    if content_type == PROTO:
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise invalid(f"the body is not a binary {name}: {exc}") from None
        return body
    if not body.strip():
        return b""  # an empty body is the empty message, as in protobuf JSON's "{}"
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise invalid("the body is not UTF-8 text") from None
    except ValueError as exc:
        raise invalid(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise invalid("the body is nested too deeply") from None
    if not isinstance(document, dict):
        raise invalid(f"the body must be a JSON object (a {name}), not {type(document).__name__}")
    try:
        json_format.ParseDict(document, message)
    except json_format.ParseError as exc:
        text = str(exc).split("\n", 1)[0].strip()  # not the list of every field protobuf appends
        raise invalid(f"the body is not a {name} in protobuf JSON: {text}", _field_of(text)) from None
    except RecursionError:
        raise invalid("the body is nested too deeply") from None
    return message.SerializeToString()


def _field_of(problem: str) -> str:
    """The field a protobuf JSON parse error is about, as a path (``lines.paid_fen``), or empty."""
    path = re.findall(r"Failed to parse (\S+) field", problem)
    unknown = re.search(r'has no field named "([^"]+)"', problem)
    return ".".join([*path, *([unknown.group(1)] if unknown else [])])


def encode_response(procedure: Procedure, content_type: str, payload: bytes) -> bytes:
    """The response body: binary protobuf as received, or protobuf JSON with every field, zeros included."""
    if content_type == PROTO:
        return payload
    message = procedure.response.FromString(payload)
    text = json_format.MessageToJson(
        message, indent=None, ensure_ascii=False, always_print_fields_with_no_presence=True
    )
    return text.encode("utf-8")


def from_rpc_error(error: grpc.RpcError) -> tuple[int, bytes, int | None]:
    """The HTTP status and Connect error body of a failed gRPC call, with the details of its status, and the
    seconds its RetryInfo asks the caller to wait (for ``Retry-After``), or None."""
    code_of = getattr(error, "code", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details_of = getattr(error, "details", None)
    message = (details_of() if callable(details_of) else None) or ""
    packed: list[any_pb2.Any] = []
    trailers = getattr(error, "trailing_metadata", None)
    for key, value in (trailers() if callable(trailers) else None) or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                packed = list(status_pb2.Status.FromString(value).details)
            except DecodeError:
                packed = []
    name = connect_code(code)
    return HTTP_STATUS.get(name, 500), error_body(name, message, packed), _retry_after(packed)


def _retry_after(details: Iterable[any_pb2.Any]) -> int | None:
    for packed in details:
        info = error_details_pb2.RetryInfo()
        if packed.Unpack(info):  # False for any other type
            return max(1, math.ceil(info.retry_delay.ToMilliseconds() / 1000))
    return None


def connect_code(code: grpc.StatusCode) -> str:
    """``grpc.StatusCode.FAILED_PRECONDITION`` -> ``failed_precondition`` (Connect spells CANCELLED ``canceled``)."""
    return "canceled" if code == grpc.StatusCode.CANCELLED else code.name.lower()


def error_body(code: str, message: str, details: Iterable[any_pb2.Any]) -> bytes:
    document: dict[str, Any] = {"code": code, "message": message}
    entries = [_detail(d) for d in details]
    if entries:
        document["details"] = entries
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _packed(message: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def _detail(packed: any_pb2.Any) -> dict[str, Any]:
    type_name = packed.type_url.rsplit("/", 1)[-1]
    entry: dict[str, Any] = {
        "type": type_name,
        "value": base64.b64encode(packed.value).decode("ascii").rstrip("="),
    }
    known = _DETAIL_TYPES.get(type_name)
    if known is not None:
        with contextlib.suppress(DecodeError):
            entry["debug"] = json_format.MessageToDict(known.FromString(packed.value))
    return entry
