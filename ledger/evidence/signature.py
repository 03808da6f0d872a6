"""The optional Ed25519 signature of a bundle's manifest (``manifest.sig``: the signature in base64).

Create a key pair with OpenSSL::

    openssl genpkey -algorithm ed25519 -out bundle-signing.pem
    openssl pkey -in bundle-signing.pem -pubout -out bundle-signing.pub.pem
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from ledger.evidence import layout


class KeyRefused(Exception):
    """The PEM file is not an Ed25519 key of the kind needed."""


def sign_manifest(root: Path, private_key_pem: Path) -> None:
    """Write ``manifest.sig`` beside ``manifest.json``."""
    try:
        key = load_pem_private_key(private_key_pem.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyRefused(f"{private_key_pem}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyRefused(f"{private_key_pem}: not an Ed25519 private key")
    signature = key.sign((root / layout.MANIFEST).read_bytes())
    (root / layout.SIGNATURE).write_text(base64.b64encode(signature).decode("ascii") + "\n", encoding="ascii")


def signature_check(public_key_pem: Path) -> Callable[[bytes, Path], str | None]:
    """A check for :func:`ledger.evidence.check.check_bundle`: None when ``manifest.sig`` signs the manifest."""
    try:
        key = load_pem_public_key(public_key_pem.read_bytes())
    except ValueError as exc:
        raise KeyRefused(f"{public_key_pem}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyRefused(f"{public_key_pem}: not an Ed25519 public key")

    def check(manifest: bytes, root: Path) -> str | None:
        path = root / layout.SIGNATURE
        if not path.is_file():
            return "signature missing: the bundle has no manifest.sig"
        try:
            key.verify(base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True), manifest)
        except (InvalidSignature, ValueError):
            return "signature invalid: manifest.json is not what the key signed"
        return None

    return check
