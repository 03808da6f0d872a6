"""A generic tool that knows only the server's reflection service can read the error details it gets.

grpcurl and buf curl decode `grpc-status-details-bin` by asking reflection for the types its `Any`s name
(`google.rpc.ErrorInfo`, `google.rpc.BadRequest`, ...). This test is such a tool: it builds every message
type it needs from reflection alone, never from the generated modules.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.e2e.conftest import Program

pytestmark = pytest.mark.e2e

DETAILS = ("google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.RetryInfo", "google.rpc.RequestInfo")


def test_reflection_serves_the_error_detail_types_and_a_refusal_decodes_with_them(program: Program) -> None:
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(program.server.channel))
    for name in DETAILS:
        assert pool.FindMessageTypeByName(name).full_name == name
    status_type: Any = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))
    request_type: Any = message_factory.GetMessageClass(pool.FindMessageTypeByName("loyalty.v1.GetBalanceRequest"))
    response_type = message_factory.GetMessageClass(pool.FindMessageTypeByName("loyalty.v1.GetBalanceResponse"))

    get_balance = program.server.channel.unary_unary(
        "/loyalty.v1.MemberQueryService/GetBalance",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        get_balance(request_type(program_id=program.program_id, member_id="nobody"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    error: Any = caught.value
    trailers = {str(key): value for key, value in error.trailing_metadata() or ()}
    status = status_type.FromString(trailers["grpc-status-details-bin"])
    [detail] = [d for d in status.details if d.type_url.endswith("/google.rpc.ErrorInfo")]
    info: Any = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.ErrorInfo"))()
    assert detail.Unpack(info)
    assert (info.reason, info.domain) == ("MEMBER_NOT_FOUND", "loyalty.v1")
