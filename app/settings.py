"""Workstation settings: what the reader changes in the Settings dialog, kept between sessions.

Owns :class:`WorkstationSettings` (a plain dataclass, no Qt) and its storage as JSON in
``paths.config_dir()/workstation.json`` (atomic write, no secrets: passwords stay in the keyring through
:mod:`cloud_client.profiles`). Server connection details (URL, user, cache size, prefetch count) live in the
cloud client's :class:`~cloud_client.profiles.ServerProfile`; this file remembers which profile is in use and
the workstation-only choices (dictation model, microphone, push-to-talk key, idle lock).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass

from cloud_client import paths
from cloud_client.vault import atomic_write

log = logging.getLogger(__name__)

SETTINGS_FILE = "workstation.json"


@dataclass
class WorkstationSettings:
    profile_name: str = ""                 # the server profile used at sign-in ("" = none yet)
    dictation_model_dir: str = ""          # a Vosk model folder ("" = READROOM_VOSK_MODEL or none)
    microphone_device: str = ""            # sounddevice device name ("" = system default)
    push_to_talk_key: str = "F4"           # Qt key sequence text; held down = microphone open
    dictation_mode: str = "push_to_talk"   # "push_to_talk" | "toggle"
    dictation_language: str = "en"          # command vocabulary (resources/dictation/<lang>.json)
    idle_lock_minutes: int = 10            # 0 = never lock
    show_shared_pool: bool = False         # also list unassigned (pool) items in the worklist
    qa_reviewer: bool = False              # this reader also peer-reviews others' reports (QA page)

    def __post_init__(self) -> None:
        if self.dictation_mode not in ("push_to_talk", "toggle"):
            raise ValueError("dictation_mode must be 'push_to_talk' or 'toggle'")
        if not 0 <= int(self.idle_lock_minutes) <= 240:
            raise ValueError("idle lock must be between 0 (never) and 240 minutes")
        self.idle_lock_minutes = int(self.idle_lock_minutes)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> WorkstationSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def settings_path():
    return paths.config_dir() / SETTINGS_FILE


def load_settings() -> WorkstationSettings:
    """The saved settings, or defaults when there are none (a damaged file is logged and replaced)."""
    path = settings_path()
    if not path.exists():
        return WorkstationSettings()
    try:
        return WorkstationSettings.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        log.warning("Workstation settings file could not be read (%s); using defaults.", type(exc).__name__)
        return WorkstationSettings()


def save_settings(settings: WorkstationSettings) -> None:
    atomic_write(settings_path(), json.dumps(settings.to_json(), indent=2).encode())
    _mirror_dictation(settings)


def _mirror_dictation(settings: WorkstationSettings) -> None:
    """Dictation's own settings file (used by ``readroom dictation``) gets the same model, device and keys."""
    from dictation.models import DictationSettings

    d = DictationSettings.load()
    d.model_dir = settings.dictation_model_dir
    d.device = settings.microphone_device
    d.mode = settings.dictation_mode
    d.language = settings.dictation_language
    d.keys = dataclasses.replace(d.keys, talk=(settings.push_to_talk_key,))
    d.save()
