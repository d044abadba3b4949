"""The plain values the dictation engine emits and the apply layer consumes.

Owns the event dataclasses that cross from :mod:`dictation.engine` (worker thread) to the app (GUI thread)
and to :mod:`dictation.apply`. They carry recognised text and timings, never audio.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Word:
    """One recognised word with its time span in seconds from the start of the audio stream."""

    word: str
    start: float
    end: float
    conf: float = 1.0


@dataclass(frozen=True)
class Command:
    """A voice command: ``name`` is one of :data:`dictation.commands.COMMAND_NAMES`; ``argument`` is e.g. the
    section for ``go_to`` or the macro title for ``macro``."""

    name: str
    argument: str | None = None


@dataclass(frozen=True)
class PartialText:
    """Live, still-changing hypothesis of the utterance being spoken (show it, don't insert it)."""

    text: str


@dataclass(frozen=True)
class FinalText:
    """Dictated text to insert at the cursor. ``text`` is normalised; ``raw`` is what the recogniser said.

    Several FinalText/CommandEvent may share one ``utterance_id`` (e.g. "nodule period" is text + command);
    "scratch that" removes everything one utterance inserted."""

    utterance_id: int
    text: str
    raw: str
    words: tuple[Word, ...] = ()

    @property
    def start(self) -> float | None:
        return self.words[0].start if self.words else None

    @property
    def end(self) -> float | None:
        return self.words[-1].end if self.words else None


@dataclass(frozen=True)
class CommandEvent:
    """A recognised voice command."""

    utterance_id: int
    command: Command
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class ConfirmRequest:
    """The reader asked for an action that needs an explicit confirmation (e.g. ``sign_report``).

    The app must ask the reader; dictation never performs the action itself."""

    utterance_id: int
    action: str


@dataclass(frozen=True)
class LevelEvent:
    """Input level of the latest audio block, for a level meter: RMS and peak in dBFS (0 = full scale)."""

    rms_dbfs: float
    peak_dbfs: float


@dataclass(frozen=True)
class ErrorEvent:
    """Something the reader can act on went wrong (``kind``: no_device, device_busy, device_vanished,
    no_model, audio_format, engine). ``message`` is plain words, free of patient data. Text already inserted
    is never touched by an error."""

    kind: str
    message: str


@dataclass(frozen=True)
class StoppedEvent:
    """The engine's worker ended (``reason``: end_of_audio, stopped, error)."""

    reason: str
    utterances: int = 0


Event = PartialText | FinalText | CommandEvent | ConfirmRequest | LevelEvent | ErrorEvent | StoppedEvent
