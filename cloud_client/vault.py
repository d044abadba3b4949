"""Encryption at rest for everything ReadRoom writes that may hold patient data.

Owns the at-rest key and the file format. AES-256-GCM (``cryptography``); the key is made on first use and
kept in the OS keyring (:mod:`cloud_client.secrets`), never on disk. Used by the instance cache, report drafts
and the outbox. Writes are atomic (temp file + fsync + rename) so a crash never leaves a half file that would
be read as valid: a torn or foreign file fails authentication and is reported as :class:`VaultError`.

File format: ``b"RRV1"`` + 8-byte key id + 12-byte nonce + ciphertext-with-tag. The associated data binds the
ciphertext to its purpose (e.g. ``b"cache"``), so a draft cannot be swapped in for a cache entry.
"""
from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import threading
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import secrets

MAGIC = b"RRV1"
KEY_NAME = "at-rest-key"
_HEADER = len(MAGIC) + 8 + 12


class VaultError(Exception):
    """An encrypted file could not be read (damaged, torn by a crash, or written with another key)."""


class Vault:
    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            key = _load_or_create_key()
        if len(key) != 32:
            raise ValueError("the at-rest key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).digest()[:8]

    def encrypt(self, data: bytes, purpose: bytes) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + self.key_id + nonce + self._aead.encrypt(nonce, data, purpose)

    def decrypt(self, blob: bytes, purpose: bytes) -> bytes:
        if len(blob) < _HEADER + 16 or not blob.startswith(MAGIC):
            raise VaultError("not a ReadRoom encrypted file (or truncated)")
        if blob[4:12] != self.key_id:
            raise VaultError("written with another key (the keyring entry was replaced)")
        nonce = blob[12:24]
        try:
            return self._aead.decrypt(nonce, blob[24:], purpose)
        except Exception as exc:  # cryptography raises InvalidTag
            raise VaultError("encrypted file failed its integrity check") from exc

    def write_file(self, path: Path, data: bytes, purpose: bytes) -> None:
        atomic_write(Path(path), self.encrypt(data, purpose))

    def read_file(self, path: Path, purpose: bytes) -> bytes:
        return self.decrypt(Path(path).read_bytes(), purpose)


def atomic_write(path: Path, blob: bytes, *, durable: bool = True) -> None:
    """Write ``blob`` to ``path`` so that readers see the old file or the whole new one, never a part.

    ``durable``: on disk before returning (the file and then its directory entry fsynced). Without it the new
    file's bytes are still fsynced before the rename - so after a power cut the path holds the old file or the
    whole new one, never an empty or torn one - but the rename itself may be undone: only for changes whose
    loss is harmless."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if not durable:
        return
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


_lock = threading.Lock()
_default: Vault | None = None


def _load_or_create_key() -> bytes:
    with _lock:
        stored = secrets.get_secret(KEY_NAME)
        if stored:
            return base64.b64decode(stored)
        key = AESGCM.generate_key(bit_length=256)
        secrets.set_secret(KEY_NAME, base64.b64encode(key).decode())
        return key


def default_vault() -> Vault:
    """The vault keyed by this user's at-rest key (made on first use)."""
    global _default
    if _default is None:
        _default = Vault()
    return _default
