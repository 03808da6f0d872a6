"""Channels to the ledger: TLS or mutual TLS credentials, and the API key every call of a channel carries."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
    _StreamStream = grpc.StreamStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.StreamUnaryClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor
    _StreamStream = grpc.StreamStreamClientInterceptor
    _StreamUnary = grpc.StreamUnaryClientInterceptor


class BearerKey(_UnaryUnary, _UnaryStream, _StreamStream, _StreamUnary):
    """Adds ``authorization: Bearer <key>`` to every call of a channel (the ledger's API keys)."""

    def __init__(self, key: str) -> None:
        self._metadata = ("authorization", f"Bearer {key}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._metadata]
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass(frozen=True)
class _Details(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


def _pem(value: bytes | str | os.PathLike[str] | None) -> bytes | None:
    """PEM bytes as given, or read from a file path."""
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def tls_credentials(
    root_ca: bytes | str | os.PathLike[str] | None = None,
    client_cert: bytes | str | os.PathLike[str] | None = None,
    client_key: bytes | str | os.PathLike[str] | None = None,
) -> grpc.ChannelCredentials:
    """TLS to the ledger: trust ``root_ca`` (PEM bytes or a file; None: the system's roots) and, for mutual TLS,
    present ``client_cert`` with its ``client_key``."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together")
    return grpc.ssl_channel_credentials(_pem(root_ca), _pem(client_key), _pem(client_cert))


def keyed_channel(
    target: str, key: str | None, options: Sequence[tuple[str, Any]] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.Channel:  # fmt: skip
    """A channel to ``target`` whose calls carry ``key`` (none: no key); TLS with ``credentials``, else plaintext."""
    channel = (
        grpc.secure_channel(target, credentials, options=list(options)) if credentials is not None
        else grpc.insecure_channel(target, options=list(options))
    )  # fmt: skip
    return grpc.intercept_channel(channel, BearerKey(key)) if key else channel
