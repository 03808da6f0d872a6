"""What a gRPC call may claim about an HTTP caller: only this process's gateway is believed; and the CORS setting."""

from __future__ import annotations

import pytest

from ledger import settings as configuration
from ledger.entrypoints.grpc import forwarded


def test_the_gateway_is_believed_with_its_token_only() -> None:
    claims = [(forwarded.PEER_HEADER, "ipv4:10.0.0.7"), (forwarded.CN_HEADER, "store-9")]
    assert forwarded.forwarded([(forwarded.TOKEN_HEADER, forwarded.TOKEN), *claims]) == dict(claims)
    assert forwarded.forwarded(claims) is None  # a gRPC caller claiming to be an HTTP caller
    assert forwarded.forwarded([(forwarded.TOKEN_HEADER, "0" * len(forwarded.TOKEN)), *claims]) is None
    assert forwarded.forwarded([(forwarded.TOKEN_HEADER, ""), *claims]) is None


def test_cors_origins_are_origins() -> None:
    given = configuration.load({"http_cors_origins": "https://mall.example.com, http://localhost:8080"})
    assert given.cors_origins == ("https://mall.example.com", "http://localhost:8080")
    assert configuration.load({}).cors_origins == ()
    assert configuration.load({"http_cors_origins": "*"}).cors_origins == ("*",)
    with pytest.raises(SystemExit, match="--http-cors-origins"):
        configuration.load({"http_cors_origins": "https://mall.example.com/shop"})


def test_http_listen_is_host_and_port() -> None:
    assert configuration.load({"http_listen": "0.0.0.0:8080"}).http_listen == "0.0.0.0:8080"
    assert configuration.load({}).http_listen is None
    with pytest.raises(SystemExit, match="--http-listen"):
        configuration.load({"http_listen": "8080"})
