"""Where ReadRoom keeps its files.

Owns the on-disk layout. When the ``READROOM_HOME`` environment variable is set, everything (config, cache,
drafts, outbox, logs, audit) lives under it - used by tests and portable installs. Otherwise the platform's
usual places (platformdirs) are used. Every other module asks here; nobody builds these paths by hand.
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "ReadRoom"


def home() -> Path | None:
    value = os.environ.get("READROOM_HOME")
    return Path(value).expanduser().resolve() if value else None


def _dir(sub: str, platform_path: str) -> Path:
    root = home()
    path = root / sub if root is not None else Path(platform_path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        path.chmod(0o700)
    except OSError:
        pass
    return path


def config_dir() -> Path:
    """Settings and server profiles (no secrets: those are in the keyring)."""
    return _dir("config", platformdirs.user_config_dir(APP_NAME))


def cache_dir() -> Path:
    """Encrypted local cache of DICOM instances."""
    return _dir("cache", platformdirs.user_cache_dir(APP_NAME))


def data_dir() -> Path:
    """Durable user data: drafts, outbox, worklist transaction UIDs, audit trail."""
    return _dir("data", platformdirs.user_data_dir(APP_NAME))


def drafts_dir() -> Path:
    return _sub(data_dir(), "drafts")


def outbox_dir() -> Path:
    return _sub(data_dir(), "outbox")


def audit_dir() -> Path:
    return _sub(data_dir(), "audit")


def log_dir() -> Path:
    return _dir("logs", platformdirs.user_log_dir(APP_NAME))


def _sub(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    return path
