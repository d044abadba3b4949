"""Secrets in the OS keyring, and nowhere else.

Owns every read and write of passwords, tokens, signing keys and the at-rest encryption key. They live in the
OS keyring (Secret Service, KWallet, macOS Keychain, Windows Credential Locker) through the ``keyring`` package.

When the machine has no usable keyring (a bare server), ``keyring`` falls back to a backend that fails, or to a
file backend from ``keyrings.alt`` that keeps secrets in plain text on disk; both are refused, and a clear
:class:`NoKeyringError` tells the user what to install. ``READROOM_KEYRING=memory`` selects a
process-memory keyring for throw-away demo sessions: nothing is written anywhere, and secrets are gone when the
process ends (so the encrypted cache is unreadable and dropped next time).
"""
from __future__ import annotations

import logging
import os

import keyring
import keyring.backend
import keyring.errors

log = logging.getLogger(__name__)

SERVICE = "ReadRoom"


class NoKeyringError(RuntimeError):
    """The OS keyring cannot be used."""


class MemoryKeyring(keyring.backend.KeyringBackend):
    """Process-memory keyring for demo sessions only (``READROOM_KEYRING=memory``)."""

    priority = 0.1  # never chosen automatically

    def __init__(self) -> None:
        super().__init__()
        self._store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self._store.get((service, username))

    def set_password(self, service, username, password):
        self._store[(service, username)] = password

    def delete_password(self, service, username):
        if self._store.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


_configured = False


def _backend():
    global _configured
    if not _configured:
        _configured = True
        if os.environ.get("READROOM_KEYRING") == "memory":
            log.warning("Using a process-memory keyring: secrets and the encrypted cache last this session only.")
            keyring.set_keyring(MemoryKeyring())
    backend = keyring.get_keyring()
    candidates = list(getattr(backend, "backends", None) or [backend])  # keyring's chainer holds several
    usable = [b for b in candidates if not _unacceptable(b)]
    if not usable:
        raise NoKeyringError(
            "No OS keyring is available to keep ReadRoom's passwords and keys. Install and unlock one "
            "(GNOME Keyring or KWallet on Linux), or run a demo with READROOM_KEYRING=memory."
        )
    return usable[0] if len(usable) < len(candidates) or len(candidates) == 1 else backend


def _unacceptable(backend) -> bool:
    """Backends that are no OS keyring: keyring's fail/null ones and keyrings.alt's files (plain text on disk)."""
    name = (type(backend).__module__ + "." + type(backend).__name__).lower()
    return "fail" in name or "null" in name or name.startswith("keyrings.alt.file")


def get_secret(name: str) -> str | None:
    return _backend().get_password(SERVICE, name)


def set_secret(name: str, value: str) -> None:
    _backend().set_password(SERVICE, name, value)


def delete_secret(name: str) -> None:
    try:
        _backend().delete_password(SERVICE, name)
    except keyring.errors.PasswordDeleteError:
        pass
