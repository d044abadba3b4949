"""The reference cloud's configuration file: users (hashed passwords), readers' subspecialties, shifts,
time zones, turnaround SLAs, subspecialty rules, Orthanc/DICOM settings and optional TLS.

Owns loading and validating that file (JSON, documented in cloud/README.md) into dataclasses, the password
hash format (stdlib scrypt), and the built-in demo configuration.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEMO_CONFIG = Path(__file__).with_name("demo_config.json")

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class ConfigError(ValueError):
    """The configuration file is wrong in a way the operator can fix; the message says where."""


# ---------------------------------------------------------------- passwords

def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64), from the standard library's scrypt."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    b64 = lambda b: base64.b64encode(b).decode("ascii")
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt)}${b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


# ---------------------------------------------------------------- values

@dataclasses.dataclass(frozen=True)
class Shift:
    """A weekly working window in the reader's own time zone; ``end <= start`` means it runs past midnight."""
    days: tuple[int, ...]          # 0 = Monday
    start: dt.time
    end: dt.time | None            # None = end of day (24:00)

    def covers(self, local: dt.datetime) -> bool:
        t = local.time()
        end = self.end
        if end is None or end > self.start:
            return local.weekday() in self.days and self.start <= t and (end is None or t < end)
        # overnight: started yesterday or today
        if local.weekday() in self.days and t >= self.start:
            return True
        return (local.weekday() - 1) % 7 in self.days and t < end


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    display_name: str
    roles: tuple[str, ...] = ("reader",)
    subspecialties: tuple[str, ...] = ()
    timezone: str = "UTC"
    shifts: tuple[Shift, ...] = ()

    @property
    def is_reader(self) -> bool:
        return "reader" in self.roles

    def on_shift(self, when_utc: dt.datetime) -> bool:
        local = when_utc.astimezone(ZoneInfo(self.timezone))
        return any(s.covers(local) for s in self.shifts)


@dataclasses.dataclass(frozen=True)
class SubspecialtyRule:
    """First matching rule wins. Empty tuples match anything; values compare upper-case."""
    subspecialty: str
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    description_words: tuple[str, ...] = ()

    def matches(self, modalities: set[str], body_parts: set[str], description: str) -> bool:
        if self.modalities and not (set(self.modalities) & modalities):
            return False
        if self.body_parts or self.description_words:
            desc = description.upper()
            by_part = bool(set(self.body_parts) & body_parts)
            by_word = any(re.search(rf"\b{re.escape(w)}\b", desc) for w in self.description_words)
            return by_part or by_word
        return True


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    users: dict[str, User]
    rules: tuple[SubspecialtyRule, ...]
    sla_minutes: dict[str, int]                    # by UPS priority HIGH / MEDIUM / LOW
    stable_age_s: int = 10
    max_study_age_days: int | None = None          # older studies (priors sent for comparison) are not routed
    accept_any_calling_ae: bool = True
    dicom_modalities: dict[str, tuple[str, str, int]] = dataclasses.field(default_factory=dict)
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    demo: bool = False
    source: Path | None = None

    def readers(self) -> list[User]:
        return [u for u in self.users.values() if u.is_reader]


DEFAULT_SLA = {"HIGH": 30, "MEDIUM": 240, "LOW": 1440}


def _parse_time(s: str, where: str) -> dt.time | None:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(s))
    if not m or int(m[1]) > 24 or int(m[2]) > 59 or (int(m[1]) == 24 and int(m[2]) != 0):
        raise ConfigError(f"{where}: time must be HH:MM (00:00 to 24:00), got {s!r}")
    if int(m[1]) == 24:
        return None
    return dt.time(int(m[1]), int(m[2]))


def _parse_days(v, where: str) -> tuple[int, ...]:
    if v in (None, "all", "*"):
        return tuple(range(7))
    if isinstance(v, str):
        m = re.fullmatch(r"([a-z]{3})-([a-z]{3})", v.lower())
        if m and m[1] in _DAYS and m[2] in _DAYS:
            a, b = _DAYS.index(m[1]), _DAYS.index(m[2])
            return tuple((a + i) % 7 for i in range((b - a) % 7 + 1))
        v = [v]
    out = []
    for d in v:
        d = str(d).lower()[:3]
        if d not in _DAYS:
            raise ConfigError(f"{where}: unknown day {d!r} (use mon..sun, 'mon-fri' or 'all')")
        out.append(_DAYS.index(d))
    return tuple(sorted(set(out)))


def _upper(v) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    return tuple(str(x).upper() for x in v)


def parse_config(data: dict, source: Path | None = None) -> CloudConfig:
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a JSON object")
    users: dict[str, User] = {}
    for name, u in (data.get("users") or {}).items():
        where = f"users.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ConfigError(f"{where}: user names may use letters, digits, '_', '.', '-'")
        if "password_hash" not in u:
            raise ConfigError(f"{where}: password_hash is missing (make one with "
                              "`readroom-cloud hash-password`)")
        if not str(u["password_hash"]).startswith("scrypt$"):
            raise ConfigError(f"{where}: password_hash must be an scrypt hash from `readroom-cloud hash-password`")
        tz = u.get("timezone", "UTC")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}: unknown time zone {tz!r}") from None
        shifts = []
        for i, s in enumerate(u.get("shifts") or []):
            sw = f"{where}.shifts[{i}]"
            start = _parse_time(s.get("start", "00:00"), sw) or dt.time(0, 0)
            shifts.append(Shift(_parse_days(s.get("days"), sw), start, _parse_time(s.get("end", "24:00"), sw)))
        users[name] = User(name=name, password_hash=u["password_hash"],
                           display_name=u.get("display_name", name),
                           roles=tuple(u.get("roles") or ["reader"]),
                           subspecialties=tuple(x.lower() for x in u.get("subspecialties") or []),
                           timezone=tz, shifts=tuple(shifts))
    rules = []
    for i, r in enumerate(data.get("subspecialty_rules") or []):
        if "subspecialty" not in r:
            raise ConfigError(f"subspecialty_rules[{i}]: 'subspecialty' is missing")
        rules.append(SubspecialtyRule(str(r["subspecialty"]).lower(), _upper(r.get("modalities")),
                                      _upper(r.get("body_parts")), _upper(r.get("description_words"))))
    sla = dict(DEFAULT_SLA)
    for k, v in (data.get("sla_minutes") or {}).items():
        key = {"STAT": "HIGH", "ROUTINE": "MEDIUM"}.get(k.upper(), k.upper())
        if key not in sla or not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(f"sla_minutes.{k}: use HIGH/MEDIUM/LOW (or STAT/ROUTINE) with minutes > 0")
        sla[key] = int(v)
    tls = data.get("tls") or {}
    base = source.parent if source else Path.cwd()
    cert = (base / tls["certificate"]).resolve() if tls.get("certificate") else None
    key = (base / tls["key"]).resolve() if tls.get("key") else None
    if bool(cert) != bool(key):
        raise ConfigError("tls: give both 'certificate' and 'key' (PEM files), or neither")
    for p in filter(None, (cert, key)):
        if not p.is_file():
            raise ConfigError(f"tls: file not found: {p}")
    orthanc = data.get("orthanc") or {}
    modalities = {}
    for name, m in (orthanc.get("modalities") or {}).items():
        try:
            modalities[name] = (str(m["aet"]), str(m.get("host", "127.0.0.1")), int(m.get("port", 104)))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"orthanc.modalities.{name}: give 'aet' (and optionally 'host', 'port')") from None
    if not orthanc.get("accept_any_calling_ae", True) and not modalities:
        raise ConfigError("orthanc.accept_any_calling_ae is false but no orthanc.modalities are listed: "
                          "nobody could send images")
    max_age = data.get("max_study_age_days")
    if max_age is not None and (not isinstance(max_age, int) or max_age < 1):
        raise ConfigError("max_study_age_days: a whole number of days >= 1, or leave it out")
    return CloudConfig(users=users, rules=tuple(rules), sla_minutes=sla, max_study_age_days=max_age,
                       stable_age_s=int(orthanc.get("stable_age_s", 10)),
                       accept_any_calling_ae=bool(orthanc.get("accept_any_calling_ae", True)),
                       dicom_modalities=modalities,
                       tls_certificate=cert, tls_key=key, demo=bool(data.get("demo", False)), source=source)


def load_config(path: Path | str | None) -> CloudConfig:
    """Read a configuration file; ``None`` means the demo configuration."""
    path = Path(path) if path else DEMO_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    return parse_config(data, path.resolve())
