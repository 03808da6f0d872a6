"""Personal data kept beside the log, never in it: encrypted per member with a key of its own.

Erasing a member destroys the key: the ciphertext becomes unreadable while the ledger stays balanced and
replayable (the log only ever carried pseudonymous ids).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.domain.commands import Profile


@dataclass(frozen=True, slots=True)
class PersonalProfile:
    birth_month: int | None = None
    baby_birth_date: str | None = None
    phone: str | None = None
    consent: bool = False

    def rule_inputs(self) -> Profile:
        """The only attributes the rules may see, and only with consent."""
        return Profile(birth_month=self.birth_month if self.consent else None)


class PersonalData(Protocol):
    """Where profiles live: the embedded SQLite file or the shared PostgreSQL database."""

    def save(self, program_id: str, member_id: str, profile: PersonalProfile) -> None: ...

    def load(self, program_id: str, member_id: str) -> PersonalProfile | None: ...

    def erase(self, program_id: str, member_id: str) -> None: ...

    def close(self) -> None: ...


def seal(key: bytes, program_id: str, member_id: str, profile: PersonalProfile) -> tuple[bytes, bytes]:
    """Encrypt ``profile`` under the member's key, bound to the member: ``(nonce, ciphertext)``."""
    nonce = os.urandom(12)
    aad = f"{program_id}/{member_id}".encode()
    return nonce, AESGCM(key).encrypt(nonce, json.dumps(asdict(profile)).encode(), aad)


def unseal(key: bytes, nonce: bytes, ciphertext: bytes, program_id: str, member_id: str) -> PersonalProfile:
    data = AESGCM(key).decrypt(nonce, ciphertext, f"{program_id}/{member_id}".encode())
    return PersonalProfile(**json.loads(data))


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


