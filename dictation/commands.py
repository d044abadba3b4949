"""Voice commands: per-language vocabularies (data in resources/dictation/) and the utterance parser.

Owns :class:`Vocabulary` (loaded from ``resources/dictation/<lang>.json``), :class:`CommandParser` which splits
one recognised utterance into text and command segments, and :func:`grammar_phrases` which lists the phrases
for Vosk's restricted-grammar command mode. Whole-utterance commands (navigation, macros, sign, critical
result) are only recognised when they are the entire utterance; inline commands (punctuation, "scratch that",
"cap that", new line) anywhere in it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dictation.events import Command

VOCAB_DIR = Path(__file__).resolve().parents[1] / "resources" / "dictation"

NEXT_FIELD = "next_field"
PREVIOUS_FIELD = "previous_field"
GO_TO = "go_to"
INSERT_NORMAL = "insert_normal"
MACRO = "macro"
SCRATCH_THAT = "scratch_that"
PERIOD = "period"
COMMA = "comma"
COLON = "colon"
NEW_LINE = "new_line"
NEW_PARAGRAPH = "new_paragraph"
CAP_THAT = "cap_that"
SIGN_REPORT = "sign_report"
CRITICAL_RESULT = "critical_result"

COMMAND_NAMES = (NEXT_FIELD, PREVIOUS_FIELD, GO_TO, INSERT_NORMAL, MACRO, SCRATCH_THAT, PERIOD, COMMA, COLON,
                 NEW_LINE, NEW_PARAGRAPH, CAP_THAT, SIGN_REPORT, CRITICAL_RESULT)
#: commands whose phrases a vocabulary file must define (go_to and macro come from other keys)
SIMPLE_COMMANDS = tuple(c for c in COMMAND_NAMES if c not in (GO_TO, MACRO))
#: commands that need the reader's explicit confirmation; dictation only asks (ConfirmRequest)
CONFIRM_COMMANDS = (SIGN_REPORT,)


class VocabularyError(ValueError):
    """A dictation vocabulary file is missing or malformed; the message names the file and the problem."""


def _words(phrase: str) -> tuple[str, ...]:
    return tuple(phrase.lower().split())


def spoken_form(title: str) -> tuple[str, ...]:
    """How a title is spoken: lower case, punctuation as spaces ("Normal CT abdomen/pelvis" ->
    ("normal", "ct", "abdomen", "pelvis"))."""
    return tuple(re.sub(r"[^\w]+", " ", title.lower()).split())


@dataclass(frozen=True)
class Vocabulary:
    """The spoken forms of commands and the normalisation data of one language."""

    language: str
    commands: Mapping[str, tuple[str, ...]]
    inline: frozenset[str]
    go_to: Mapping[str, tuple[str, ...]]
    macro_prefixes: tuple[str, ...] = ()
    go_to_prefixes: tuple[str, ...] = ()
    numbers: str | None = None
    units: Mapping[str, str] = field(default_factory=dict)
    number_contexts: tuple[str, ...] = ()
    spellings: Mapping[str, str] = field(default_factory=dict)
    title: str = ""

    @classmethod
    def from_json(cls, data: dict, where: str = "vocabulary") -> Vocabulary:
        try:
            raw_cmds = data["commands"]
            language = str(data["language"])
        except (KeyError, TypeError) as exc:
            raise VocabularyError(f"{where}: needs 'language' and 'commands'") from exc
        commands: dict[str, tuple[str, ...]] = {}
        inline = set()
        for name, spec in raw_cmds.items():
            if name not in SIMPLE_COMMANDS:
                raise VocabularyError(f"{where}: unknown command {name!r}")
            phrases = spec.get("phrases") if isinstance(spec, dict) else spec
            if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
                raise VocabularyError(f"{where}: command {name!r} needs a list of phrases")
            commands[name] = tuple(" ".join(_words(p)) for p in phrases)
            if isinstance(spec, dict) and spec.get("inline"):
                inline.add(name)
        missing = [c for c in SIMPLE_COMMANDS if c not in commands]
        if missing:
            raise VocabularyError(f"{where}: no phrases for {', '.join(missing)}")
        go_to = {str(k): tuple(" ".join(_words(p)) for p in v) for k, v in data.get("go_to", {}).items()}
        return cls(language=language, commands=commands, inline=frozenset(inline), go_to=go_to,
                   macro_prefixes=tuple(" ".join(_words(p)) for p in data.get("macro_prefixes", [])),
                   go_to_prefixes=tuple(" ".join(_words(p)) for p in data.get("go_to_prefixes", [])),
                   numbers=data.get("numbers"), units=dict(data.get("units", {})),
                   number_contexts=tuple(data.get("number_contexts", [])),
                   spellings=dict(data.get("spellings", {})), title=str(data.get("title", language)))


def available_languages(vocab_dir: Path = VOCAB_DIR) -> list[str]:
    return sorted(p.stem for p in vocab_dir.glob("*.json"))


def load_vocabulary(language: str = "en", vocab_dir: Path = VOCAB_DIR) -> Vocabulary:
    """The vocabulary of ``language`` (e.g. "en", "ko", or "en-US" which falls back to "en")."""
    for name in (language, language.split("-")[0].split("_")[0]):
        path = vocab_dir / f"{name.lower()}.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise VocabularyError(f"{path.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
            return Vocabulary.from_json(data, where=path.name)
    raise VocabularyError(f"no dictation vocabulary for language {language!r}; "
                          f"available: {', '.join(available_languages(vocab_dir)) or 'none'}")


@dataclass(frozen=True)
class Segment:
    """A run of an utterance's words ``[start, end)``: plain text (``command`` is None) or one command."""

    start: int
    end: int
    command: Command | None = None

    @property
    def is_text(self) -> bool:
        return self.command is None


class CommandParser:
    """Splits a recognised utterance (a list of words) into text and command segments.

    ``macros`` are template macro titles (e.g. "normal chest"): saying the title, or a macro prefix and the
    title ("insert normal chest"), as a whole utterance gives ``Command("macro", title)``. ``fields`` maps a
    field's label to its id: a go-to prefix and the label ("go to lungs") gives ``Command("go_to", field id)``."""

    def __init__(self, vocabulary: Vocabulary, macros: Iterable[str] = (),
                 fields: Mapping[str, str] | None = None) -> None:
        self.vocabulary = vocabulary
        self._whole: dict[tuple[str, ...], Command] = {}
        self._inline: dict[tuple[str, ...], Command] = {}
        for name, phrases in vocabulary.commands.items():
            table = self._inline if name in vocabulary.inline else self._whole
            for p in phrases:
                table[_words(p)] = Command(name)
        for section, phrases in vocabulary.go_to.items():
            for p in phrases:
                self._whole[_words(p)] = Command(GO_TO, section)
        for label, field_id in (fields or {}).items():
            for prefix in vocabulary.go_to_prefixes:
                key = _words(prefix) + spoken_form(label)
                if key != _words(prefix):
                    self._whole.setdefault(key, Command(GO_TO, field_id))
        self.macros = tuple(m for m in macros if m.strip())
        for title in self.macros:
            key = spoken_form(title)
            self._whole.setdefault(key, Command(MACRO, title))
            for prefix in vocabulary.macro_prefixes:
                self._whole.setdefault(_words(prefix) + key, Command(MACRO, title))
        self._max_inline = max((len(k) for k in self._inline), default=0)

    def phrases(self) -> list[str]:
        """Every phrase this parser acts on (for the command-mode grammar)."""
        return sorted({" ".join(k) for k in (*self._whole, *self._inline)})

    def parse(self, words: Sequence[str]) -> list[Segment]:
        """Segments of ``words`` in order; consecutive plain words form one text segment."""
        lowered = tuple(w.lower() for w in words)
        if not lowered:
            return []
        whole = self._whole.get(lowered) or self._inline.get(lowered)
        if whole is not None:
            return [Segment(0, len(lowered), whole)]
        segments: list[Segment] = []
        text_start: int | None = None
        i = 0
        while i < len(lowered):
            match = None
            for n in range(min(self._max_inline, len(lowered) - i), 0, -1):
                cmd = self._inline.get(lowered[i:i + n])
                if cmd is not None:
                    match = (n, cmd)
                    break
            if match is None:
                if text_start is None:
                    text_start = i
                i += 1
                continue
            if text_start is not None:
                segments.append(Segment(text_start, i))
                text_start = None
            segments.append(Segment(i, i + match[0], match[1]))
            i += match[0]
        if text_start is not None:
            segments.append(Segment(text_start, len(lowered)))
        return segments

    def parse_text(self, text: str) -> list[tuple[str, Command | None]]:
        """Convenience for tests and the CLI: ``[(words, command-or-None), ...]``."""
        words = text.split()
        return [(" ".join(words[s.start:s.end]), s.command) for s in self.parse(words)]


def grammar_phrases(parser: CommandParser, unknown_token: str | None = None) -> list[str]:
    """The phrase list for Vosk's restricted grammar (command mode). ``unknown_token`` (usually "[unk]", only
    if the model has it) lets the recogniser reject speech that is no command instead of forcing a match."""
    phrases = parser.phrases()
    if unknown_token:
        phrases.append(unknown_token)
    return phrases
