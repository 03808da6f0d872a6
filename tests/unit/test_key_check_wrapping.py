"""The key check wraps every kind of gRPC method handler, and refuses one it does not know rather than letting it
through unchecked (a client-streaming method once went through without its key checked)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from ledger.entrypoints.grpc.auth import _wrap


def _checked(calls: list[str]) -> Any:
    def check(request: Any, context: Any) -> Any:
        calls.append("checked")
        raise PermissionError("no key")

    return check


def _echo(request: Any, context: Any) -> Any:
    return request


KINDS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler(_echo),
    "unary_stream": grpc.unary_stream_rpc_method_handler(lambda r, c: iter([r])),
    "stream_unary": grpc.stream_unary_rpc_method_handler(lambda rs, c: list(rs)),
    "stream_stream": grpc.stream_stream_rpc_method_handler(lambda rs, c: iter(rs)),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_handler_runs_the_key_check_before_the_method(kind: str) -> None:
    calls: list[str] = []
    wrapped = _wrap(KINDS[kind], _checked(calls))
    behaviour = getattr(wrapped, kind)
    assert behaviour is not None and behaviour is not getattr(KINDS[kind], kind)
    with pytest.raises(PermissionError):
        result = behaviour(iter(["m"]) if kind.startswith("stream") else "m", None)
        if kind.endswith("stream"):
            list(result)
    assert calls == ["checked"]


def test_a_handler_of_no_known_kind_is_refused_not_passed_through() -> None:
    nothing = KINDS["unary_unary"]._replace(unary_unary=None)  # type: ignore[attr-defined]
    with pytest.raises(AssertionError):
        _wrap(nothing, _checked([]))
