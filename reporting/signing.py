"""The reader's signing key and report signatures.

Owns the reader's Ed25519 key pair: the private key is kept in the OS keyring (:mod:`cloud_client.secrets`) as
PKCS#8 PEM encrypted with the reader's PIN (``BestAvailableEncryption``), so neither a copied keyring entry nor
the disk is enough to sign. A signature covers a canonical form (sorted-key compact JSON, UTF-8) of the report
content *and* the study identity, so it cannot be moved to another study, and any later change to either is
detected by :func:`verify`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_client import secrets

ALGORITHM = "Ed25519"
PIN_ENV = "READROOM_SIGNING_PIN"


class SigningError(Exception):
    """Signing could not be done; the message says what the reader can do."""


class NoSigningKeyError(SigningError):
    pass


class WrongPinError(SigningError):
    pass


def _priv_name(user_id: str) -> str:
    return f"report-signing-key/{user_id}"


def _pub_name(user_id: str) -> str:
    return f"report-signing-pub/{user_id}"


def _pin_name(user_id: str) -> str:
    return f"report-signing-pin/{user_id}"


def canonical_bytes(content: dict, study_identity: dict) -> bytes:
    return json.dumps({"content": content, "study": study_identity}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate_key(user_id: str, pin: str, *, overwrite: bool = False) -> str:
    """Make the reader's key pair; returns the public key (base64 raw). Refuses to replace one unless asked."""
    if len(pin) < 4:
        raise SigningError("The signing PIN must have at least 4 characters.")
    if secrets.get_secret(_priv_name(user_id)) and not overwrite:
        raise SigningError("A signing key already exists for this reader.")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(pin.encode("utf-8")))
    pub = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)).decode()
    secrets.set_secret(_priv_name(user_id), pem.decode("ascii"))
    secrets.set_secret(_pub_name(user_id), pub)
    return pub


def has_key(user_id: str) -> bool:
    return bool(secrets.get_secret(_priv_name(user_id)))


def public_key_b64(user_id: str) -> str | None:
    return secrets.get_secret(_pub_name(user_id))


def remember_pin(user_id: str, pin: str) -> None:
    """Keep the PIN in the keyring (for unattended CLI signing on a trusted machine)."""
    secrets.set_secret(_pin_name(user_id), pin)


def pin_from_environment(user_id: str) -> str | None:
    return os.environ.get(PIN_ENV) or secrets.get_secret(_pin_name(user_id))


def _load_private(user_id: str, pin: str) -> Ed25519PrivateKey:
    pem = secrets.get_secret(_priv_name(user_id))
    if not pem:
        raise NoSigningKeyError("No signing key is set up for this reader. Create one with 'readroom report keygen'.")
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=pin.encode("utf-8"))
    except (ValueError, TypeError) as exc:
        raise WrongPinError("The signing PIN is not correct.") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError("The stored signing key is not an Ed25519 key.")
    return key


@dataclass(frozen=True)
class Signature:
    algorithm: str
    signer: str
    signer_name: str
    key_id: str
    public_key: str  # base64 raw Ed25519
    signed_at: str
    value: str  # base64

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Signature:
        return cls(**d)


def sign(user_id: str, signer_name: str, pin: str, content: dict, study_identity: dict, signed_at: str) -> Signature:
    key = _load_private(user_id, pin)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    payload = canonical_bytes(content, study_identity) + b"\n" + signed_at.encode()
    return Signature(ALGORITHM, user_id, signer_name, key_id(pub), base64.b64encode(pub).decode(), signed_at,
                     base64.b64encode(key.sign(payload)).decode())


def verify(content: dict, study_identity: dict, signature: Signature, trusted_public_key: str | None = None) -> bool:
    """True when ``signature`` is valid for exactly this content and study (and, if given, made by the trusted
    key). Any change to the content, the study identity, the time or the key gives False."""
    if signature.algorithm != ALGORITHM:
        return False
    if trusted_public_key is not None and trusted_public_key != signature.public_key:
        return False
    try:
        pub_raw = base64.b64decode(signature.public_key)
        pub = Ed25519PublicKey.from_public_bytes(pub_raw)
        if key_id(pub_raw) != signature.key_id:
            return False
        payload = canonical_bytes(content, study_identity) + b"\n" + signature.signed_at.encode()
        pub.verify(base64.b64decode(signature.value), payload)
        return True
    except (InvalidSignature, ValueError):
        return False
