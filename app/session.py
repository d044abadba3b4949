"""The signed-in session: which archive, which reader, and the cloud-client objects built for them.

Owns sign-in (Qt-free, run off the GUI thread by the login dialog) and the :class:`ReaderSession` value the
rest of the app is given. Passwords go to the keyring only when the reader asks to be remembered.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field

from cloud_client import profiles as profiles_mod
from cloud_client.profiles import ServerProfile
from cloud_client.session import DicomWebSession

log = logging.getLogger(__name__)

QA_USERS_DEFAULT = ("qa",)


@dataclass(frozen=True)
class PasswordVerifier:
    """Salted scrypt hash of the sign-in password, kept in memory only, so the idle lock can be undone offline."""

    salt: bytes
    digest: bytes

    @classmethod
    def from_password(cls, password: str) -> PasswordVerifier:
        salt = os.urandom(16)
        return cls(salt, _scrypt(password, salt))

    def check(self, password: str) -> bool:
        return hmac.compare_digest(self.digest, _scrypt(password, self.salt))


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)


@dataclass
class ReaderSession:
    profile: ServerProfile
    web: DicomWebSession
    user: str
    roles: set[str] = field(default_factory=set)   # "reader", "qa"
    verifier: PasswordVerifier | None = None

    @property
    def is_qa(self) -> bool:
        return "qa" in self.roles

    def close(self) -> None:
        self.web.close()


def sign_in_again(session: ReaderSession, password: str) -> ReaderSession:
    """New password for the running session (expired or changed): checked first, then used by every client
    that shares the session's HTTP connection pool; nothing else about the session changes."""
    from cloud_client.errors import AuthError

    probe = DicomWebSession(session.profile, password=password)
    try:
        probe.check_sign_in()
    except AuthError:
        _audit_sign_in(session.profile, "failure")
        raise
    finally:
        probe.close()
    session.web.http.auth = probe.http.auth
    session.verifier = PasswordVerifier.from_password(password)
    _audit_sign_in(session.profile, "success")
    return session


def roles_for(user: str) -> set[str]:
    """QA reviewers are named by the deployment; the demo's reviewer is ``qa``. Everyone can read."""
    return {"reader", "qa"} if user in QA_USERS_DEFAULT else {"reader"}


def sign_in(profile: ServerProfile, password: str, remember: bool = False) -> ReaderSession:
    """Check the credentials against the archive (raises AuthError / ArchiveUnavailable) and build the session."""
    from cloud_client.audit import FAILURE, SUCCESS
    from cloud_client.errors import AuthError

    web = DicomWebSession(profile, password=password or None)
    try:
        web.check_sign_in()
    except AuthError:
        web.close()
        _audit_sign_in(profile, FAILURE)
        raise
    except Exception:
        web.close()
        raise
    profiles_mod.save_profile(profile)
    if remember and password:
        try:
            profiles_mod.store_password(profile, password)
        except Exception as exc:  # noqa: BLE001 - keyring trouble must not block a correct sign-in
            log.warning("Password not remembered: %s", type(exc).__name__)
    _audit_sign_in(profile, SUCCESS)
    return ReaderSession(profile=profile, web=web, user=profile.user, roles=roles_for(profile.user),
                         verifier=PasswordVerifier.from_password(password) if password else None)


def _audit_sign_in(profile: ServerProfile, outcome: str) -> None:
    from cloud_client.audit import AuditTrail

    try:
        AuditTrail().record("sign-in", profile.user, outcome)
    except OSError as exc:  # an unwritable audit file is logged, sign-in itself succeeded
        log.error("Audit trail not writable: %s", type(exc).__name__)
