"""TLS for the gRPC port: a server certificate, optionally client certificates (mutual TLS), reloaded on change.

``ledger serve --tls-cert CERT --tls-key KEY`` serves TLS only (plaintext connections fail their handshake).
``--tls-client-ca CA`` also requires every client to present a certificate signed by that CA, and
``--tls-store-from-cn`` then binds pos and checkout keys to the store named by the certificate's subject
common name (see :mod:`ledger.entrypoints.grpc.auth`).

The files are read again, without a restart, when one of them changes (its modification time or size): grpc
asks :class:`CertificateFiles` before each new connection's handshake. Connections already open keep the
certificate they started with. A set of files that cannot be read (a rotation half written) is logged and the
previous certificate stays in use. So does a key that does not belong to the certificate (a rotation caught between
writing the two files): rename the new files into place, key first or certificate first, either works.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = structlog.get_logger("ledger.tls")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert: Path
    key: Path
    client_ca: Path | None = None
    store_from_cn: bool = False


def _stamp(path: Path) -> tuple[int, int]:
    found = path.stat()
    return found.st_mtime_ns, found.st_size


def check_pair(cert_pem: bytes, key_pem: bytes, what: str) -> None:
    """Raise ValueError unless ``cert_pem`` starts with a PEM certificate whose public key is ``key_pem``'s
    (so a rotation caught between writing the key and the certificate is not served)."""
    try:
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{what} must be a PEM certificate (chain) and its unencrypted PEM private key") from None
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if certificate.public_key().public_bytes(*fmt) != private_key.public_key().public_bytes(*fmt):
        raise ValueError(f"{what}: the private key does not belong to the certificate")


class CertificateFiles:
    """The certificate configuration fetcher of :func:`grpc.dynamic_ssl_server_credentials`, by file stamps."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stamps = self._read_stamps()
        self._failed: tuple[tuple[int, int], ...] | None = None
        self.initial = self._load()

    @property
    def paths(self) -> tuple[Path, ...]:
        s = self.settings
        return (s.cert, s.key) + ((s.client_ca,) if s.client_ca is not None else ())

    def _read_stamps(self) -> tuple[tuple[int, int], ...]:
        return tuple(_stamp(p) for p in self.paths)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        s = self.settings
        cert, key = s.cert.read_bytes(), s.key.read_bytes()
        check_pair(cert, key, f"{s.cert} and {s.key}")
        client_ca = s.client_ca.read_bytes() if s.client_ca is not None else None
        if client_ca is not None:
            try:
                x509.load_pem_x509_certificates(client_ca)
            except ValueError:
                raise ValueError(f"{s.client_ca} must hold PEM certificates") from None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when a file changed since the last load, else None (keep the current one)."""
        with self._lock:
            try:
                stamps = self._read_stamps()
            except OSError:
                return None  # a file is missing for a moment (being renamed): look again at the next connection
            if stamps in (self._stamps, self._failed):
                return None
            try:
                loaded = self._load()
            except (OSError, ValueError) as exc:
                if stamps != self._failed:  # logged once per set of files, not on every connection
                    log.error("tls_reload_failed", error=str(exc), message="the previous certificate stays in use")
                self._failed = stamps
                return None
            self._stamps = stamps
            log.info("tls_reloaded", cert=str(self.settings.cert))
            return loaded


def server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    """TLS credentials that follow the files; client certificates required when a client CA is given.

    Exits with a message when the files cannot be read or do not fit together."""
    try:
        files = CertificateFiles(settings)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"TLS: {exc}") from None
    fetcher = cast("Callable[[], grpc.ServerCertificateConfiguration]", files)  # the stubs leave out None
    return grpc.dynamic_ssl_server_credentials(
        files.initial, fetcher, require_client_authentication=settings.client_ca is not None
    )


# -- command line -------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", metavar="PEM",
                        help="serve TLS with this certificate (chain) ($LEDGER_TLS_CERT); needs --tls-key;"
                        " re-read when it changes")  # fmt: skip
    parser.add_argument("--tls-key", metavar="PEM",
                        help="the private key of --tls-cert ($LEDGER_TLS_KEY)")
    parser.add_argument("--tls-client-ca", metavar="PEM",
                        help="require client certificates signed by this CA: mutual TLS ($LEDGER_TLS_CLIENT_CA)")
    parser.add_argument("--tls-store-from-cn", action="store_true",
                        help="with --tls-client-ca: a pos or checkout key acts for the store named by its client"
                        " certificate's subject CN; a key bound to another store is refused")  # fmt: skip


def from_arguments(args: argparse.Namespace) -> TlsSettings | None:
    """The TLS settings the flags ask for (None: plaintext); exits with a message when they do not fit."""
    if not args.tls_cert and not args.tls_key:
        if args.tls_client_ca or args.tls_store_from_cn:
            raise SystemExit("--tls-client-ca and --tls-store-from-cn need --tls-cert and --tls-key")
        return None
    if not (args.tls_cert and args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    if args.tls_store_from_cn and not args.tls_client_ca:
        raise SystemExit("--tls-store-from-cn needs --tls-client-ca (client certificates)")
    settings = TlsSettings(
        Path(args.tls_cert), Path(args.tls_key), Path(args.tls_client_ca) if args.tls_client_ca else None,
        args.tls_store_from_cn,
    )  # fmt: skip
    for path in (settings.cert, settings.key, settings.client_ca):
        if path is not None and not path.is_file():
            raise SystemExit(f"TLS file {path} does not exist")
    return settings


def worker_arguments(args: argparse.Namespace) -> list[str]:
    """The same TLS flags for the worker processes of ``--processes N``."""
    out: list[str] = []
    for flag, value in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key),
                        ("--tls-client-ca", args.tls_client_ca)):  # fmt: skip
        if value:
            out += [flag, str(value)]
    return out + (["--tls-store-from-cn"] if args.tls_store_from_cn else [])
