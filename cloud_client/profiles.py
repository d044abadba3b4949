"""Server profiles: which archive to talk to, as whom, and how.

Owns the :class:`ServerProfile` value, its storage as JSON under ``paths.config_dir()/profiles.json`` (no
secrets there), where the password or token comes from (explicit argument, then ``READROOM_PASSWORD``, then the
OS keyring via :mod:`cloud_client.secrets`), and the transport policy: https always verifies certificates
(optionally against a custom CA bundle); plain http is refused for anything but loopback unless the profile
explicitly allows it, and then a warning is logged.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import paths, secrets
from .errors import InsecureConnectionError
from .vault import atomic_write

log = logging.getLogger(__name__)

PASSWORD_ENV = "READROOM_PASSWORD"
PROFILES_FILE = "profiles.json"

# Transfer syntaxes we can decode (pydicom + pylibjpeg + python-gdcm). "*" asks the server for the stored bytes
# (no server-side transcoding, no server CPU); we then decode whatever it is.
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DECODABLE_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2", EXPLICIT_VR_LE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
)


@dataclass
class ServerProfile:
    """One archive connection. ``base_url`` is the DICOMweb root, e.g. ``https://pacs.example/dicom-web``.

    ``transfer_syntaxes`` is tried in order for WADO-RS retrieval; ``"*"`` = as stored (best on loopback and
    for already-compressed archives), a UID = ask the server to transcode to it (e.g. JPEG 2000 lossless over
    a slow link). ``workitems_path`` and ``state_suffix`` make UPS-RS paths configurable (dcm4chee adds an AE
    segment, e.g. ``state_suffix="state/READROOM"``).
    """

    name: str
    base_url: str
    user: str
    auth_kind: str = "basic"  # "basic" | "bearer"
    allow_insecure_http: bool = False
    ca_bundle: str | None = None
    parallel_connections: int = 4
    transfer_syntaxes: list[str] = field(default_factory=lambda: ["*", EXPLICIT_VR_LE])
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    workitems_path: str = "workitems"
    state_suffix: str = "state"
    prefetch_count: int = 3
    cache_max_bytes: int = 20 * 1024**3

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.auth_kind not in ("basic", "bearer"):
            raise ValueError(f"auth_kind must be 'basic' or 'bearer', not {self.auth_kind!r}")
        if self.parallel_connections < 1:
            raise ValueError("parallel_connections must be at least 1")
        if not self.transfer_syntaxes:
            raise ValueError("transfer_syntaxes must name at least one transfer syntax (or '*')")
        for ts in self.transfer_syntaxes:
            if ts != "*" and ts not in DECODABLE_TRANSFER_SYNTAXES:
                raise ValueError(f"transfer syntax {ts} is not one ReadRoom can decode")

    @property
    def secret_name(self) -> str:
        """Keyring entry for this server + user (shared by every profile naming the same pair)."""
        return f"dicomweb:{self.user}@{self.base_url}"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ServerProfile:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(profile: ServerProfile) -> None:
    """Refuse plain http to non-loopback hosts unless the profile allows it (then warn)."""
    parts = urlsplit(profile.base_url)
    if parts.scheme not in ("http", "https"):
        raise InsecureConnectionError(f"The server address must start with https:// (got {parts.scheme}://).")
    if parts.username or parts.password:
        raise InsecureConnectionError("Put the user name in the profile, not in the server address.")
    if parts.scheme == "http" and not is_loopback(profile.base_url):
        if not profile.allow_insecure_http:
            raise InsecureConnectionError(
                "The server address uses unencrypted http://. Use https://, or allow insecure http "
                "explicitly in the server profile (only on a trusted private network).")
        log.warning("Profile %s uses unencrypted http to %s (allowed by the profile).", profile.name,
                    parts.hostname)


def resolve_password(profile: ServerProfile, password: str | None = None) -> str | None:
    """Password/token: explicit argument, else ``READROOM_PASSWORD``, else the OS keyring."""
    if password:
        return password
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    try:
        return secrets.get_secret(profile.secret_name)
    except secrets.NoKeyringError:
        return None


def store_password(profile: ServerProfile, password: str) -> None:
    secrets.set_secret(profile.secret_name, password)


def forget_password(profile: ServerProfile) -> None:
    secrets.delete_secret(profile.secret_name)


def _file():
    return paths.config_dir() / PROFILES_FILE


def load_profiles() -> dict[str, ServerProfile]:
    path = _file()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"The server profiles file {path} is damaged: {exc}") from exc
    return {name: ServerProfile.from_json(p) for name, p in data.get("profiles", {}).items()}


def save_profile(profile: ServerProfile) -> None:
    profiles = load_profiles()
    profiles[profile.name] = profile
    _write(profiles)


def delete_profile(name: str) -> None:
    profiles = load_profiles()
    if profiles.pop(name, None) is not None:
        _write(profiles)


def get_profile(name: str) -> ServerProfile:
    profiles = load_profiles()
    try:
        return profiles[name]
    except KeyError:
        raise KeyError(f"No server profile named {name!r}. Known: {', '.join(sorted(profiles)) or 'none'}.")


def _write(profiles: dict[str, ServerProfile]) -> None:
    blob = json.dumps({"profiles": {n: p.to_json() for n, p in sorted(profiles.items())}}, indent=2)
    atomic_write(_file(), blob.encode())
