"""The TLS files of ``ledger serve``: read again only when they change, a half-done rotation is not served, and
flags that do not fit together are refused before the server starts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from ledger.entrypoints.grpc import tls
from ledger.testing.certs import TestCA


def files(tmp_path: Path, ca: TestCA, name: str = "server") -> tls.TlsSettings:
    cert, key = ca.issue("ledger", server=True).write(tmp_path, name)
    return tls.TlsSettings(cert, key)


def touch(path: Path, data: bytes) -> None:
    """Replace ``path`` as a rotation does, with a modification time surely different from before."""
    before = path.stat().st_mtime_ns
    path.with_suffix(".tmp").write_bytes(data)
    os.replace(path.with_suffix(".tmp"), path)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_files_are_read_again_only_when_they_change(tmp_path: Path) -> None:
    ca = TestCA("ca")
    settings = files(tmp_path, ca)
    fetcher = tls.CertificateFiles(settings)
    assert fetcher() is None and fetcher() is None  # unchanged: keep the current certificate
    fresh = ca.issue("ledger", server=True)
    touch(settings.key, fresh.key_pem)
    assert fetcher() is None  # the key alone belongs to no certificate yet: not served, asked again later
    touch(settings.cert, fresh.cert_pem)
    assert fetcher() is not None  # both rotated: the new pair
    assert fetcher() is None


def test_broken_files_keep_the_previous_certificate(tmp_path: Path) -> None:
    settings = files(tmp_path, TestCA("ca"))
    fetcher = tls.CertificateFiles(settings)
    touch(settings.cert, b"not a certificate")
    assert fetcher() is None and fetcher() is None
    settings.key.unlink()
    assert fetcher() is None


def test_a_key_of_another_certificate_is_refused_at_start(tmp_path: Path) -> None:
    ca = TestCA("ca")
    settings = files(tmp_path, ca)
    other = files(tmp_path, ca, "other")
    with pytest.raises(SystemExit, match="does not belong"):
        tls.server_credentials(tls.TlsSettings(settings.cert, other.key))
    with pytest.raises(SystemExit, match="PEM"):
        tls.server_credentials(tls.TlsSettings(settings.cert, settings.key, client_ca=settings.key))
    assert tls.server_credentials(settings) is not None


def args(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {"tls_cert": None, "tls_key": None, "tls_client_ca": None, "tls_store_from_cn": False}
    return argparse.Namespace(**{**values, **given})


def test_flags_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    settings = files(tmp_path, TestCA("ca"))
    cert, key = str(settings.cert), str(settings.key)
    assert tls.from_arguments(args()) is None
    for bad, message in [
        (args(tls_cert=cert), "go together"),
        (args(tls_client_ca=cert), "need --tls-cert"),
        (args(tls_cert=cert, tls_key=key, tls_store_from_cn=True), "needs --tls-client-ca"),
        (args(tls_cert=cert, tls_key=str(tmp_path / "missing.key")), "does not exist"),
    ]:
        with pytest.raises(SystemExit, match=message):
            tls.from_arguments(bad)
    found = tls.from_arguments(args(tls_cert=cert, tls_key=key, tls_client_ca=cert, tls_store_from_cn=True))
    assert found == tls.TlsSettings(settings.cert, settings.key, settings.cert, True)
    assert tls.worker_arguments(args(tls_cert=cert, tls_key=key, tls_client_ca=cert, tls_store_from_cn=True)) == [
        "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", cert, "--tls-store-from-cn",
    ]  # fmt: skip
