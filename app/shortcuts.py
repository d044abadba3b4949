"""Keyboard shortcuts of the workstation, in one table so they are documented and never collide.

Owns the mapping action-name -> key sequence. The main window creates its QActions from it; the help dialog
lists it. (Viewer tools keep their own keys inside the viewport widgets.)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    action: str
    keys: str
    text: str
    label: str = ""        # short toolbar label (``text`` is the tooltip and the help line)


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("show_worklist", "F2", "Worklist", "Worklist"),
    Shortcut("show_reading", "F3", "Reading view", "Reading"),
    Shortcut("refresh_worklist", "F5", "Refresh the worklist", "Refresh"),
    Shortcut("open_next", "Ctrl+Return", "Claim and open the selected (or next) study", "Claim && open"),
    Shortcut("release", "Ctrl+Shift+R", "Release the open study", "Release"),
    Shortcut("normal_macro", "Ctrl+N", "Insert the template's normal report", "Normal"),
    Shortcut("sign", "Ctrl+Shift+S", "Sign the report", "Sign"),
    Shortcut("next_field", "Ctrl+Down", "Next report field", "Next field"),
    Shortcut("previous_field", "Ctrl+Up", "Previous report field", "Previous field"),
    Shortcut("dictate", "F4", "Dictate (hold, or press to toggle)", "Dictate"),
    Shortcut("qa_mode", "F9", "QA peer review", "QA review"),
    Shortcut("dictation_mode", "F6", "Switch dictation between free text and commands only", "Command mode"),
    Shortcut("settings", "Ctrl+,", "Settings", "Settings"),
    Shortcut("lock", "Ctrl+L", "Lock the workstation", "Lock"),
    Shortcut("help", "F1", "Keyboard shortcuts", "Shortcuts"),
)


def keys_for(action: str) -> str:
    for s in SHORTCUTS:
        if s.action == action:
            return s.keys
    raise KeyError(action)


def check_unique() -> None:
    seen: dict[str, str] = {}
    for s in SHORTCUTS:
        if s.keys in seen:
            raise ValueError(f"{s.keys} is used by both {seen[s.keys]} and {s.action}")
        seen[s.keys] = s.action
