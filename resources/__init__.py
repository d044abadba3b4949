"""Data only: report templates, window presets, hanging protocols, dictation vocabularies, stylesheets, icons.

A package so that the data is installed with ReadRoom; code finds it with ``resources.path(...)``.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    """Absolute path of a resource file, e.g. ``path("templates", "xr-chest.json")``."""
    return ROOT.joinpath(*parts)
