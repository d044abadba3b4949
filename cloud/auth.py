"""HTTP Basic authentication for the reference cloud, checked against the configuration's scrypt hashes.

Owns one thing: given an ``Authorization`` header, which configured user is it (or nobody). Used by the
worklist service for its own routes and by the supervisor's auth endpoint that nginx consults
(``auth_request``) before passing a request to Orthanc. Successful checks are remembered by a digest of the
header so the deliberately slow scrypt runs once per credential, not once per request.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections import OrderedDict

from cloud.config import User, verify_password

REALM = "ReadRoom"


class Authenticator:
    def __init__(self, users: dict[str, User], internal: dict[str, str] | None = None, cache_size: int = 256):
        self._users = users
        self._internal = dict(internal or {})     # service accounts with a random secret made at start
        self._ok: OrderedDict[bytes, str] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def user_for(self, header: str | None) -> str | None:
        """The user name if ``header`` carries valid Basic credentials, else None."""
        if not header or header[:6].lower() != "basic ":
            return None
        key = hashlib.sha256(header.encode("utf-8", "replace")).digest()
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return self._ok[key]
        try:
            name, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        ok = False
        if name in self._internal:
            ok = hmac.compare_digest(self._internal[name].encode(), password.encode())
        elif name in self._users:
            ok = verify_password(password, self._users[name].password_hash)
        if not ok:
            return None
        with self._lock:
            self._ok[key] = name
            while len(self._ok) > self._size:
                self._ok.popitem(last=False)
        return name


    def may_claim(self, name: str) -> bool:
        """Only readers take reading tasks (a clinic's uploader or a QA reviewer account cannot claim one);
        the cloud's own service accounts may."""
        if name in self._internal:
            return True
        user = self._users.get(name)
        return bool(user and user.is_reader)


    def may_schedule(self, name: str) -> bool:
        """Reassigning or re-prioritising a SCHEDULED workitem is the scheduler's job (roles scheduler, admin, or a
        clinic's uploader / RIS), not a reader's: a reader cannot hand a STAT study to a colleague or lower its
        priority. The cloud's own service accounts may."""
        if name in self._internal:
            return True
        user = self._users.get(name)
        return bool(user and set(user.roles) & {"scheduler", "admin", "uploader"})


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
