"""The apply layer: turns dictation events into edits of a text target, without Qt.

Owns the :class:`TextTarget` protocol (the focused report field's text and cursor; insert, delete a range, move
between fields), :class:`PlainTextTarget` (a pure-Python target used by tests and the CLI) and
:class:`DictationApplier`, which inserts final text with sensible spacing and capitalisation, executes the
editing commands, remembers what each utterance inserted so "scratch that" removes exactly the last utterance,
and hands the app the requests it must handle itself (confirm signing, critical result) as
:class:`AppRequest` values. It never signs anything. The app adapts :class:`TextTarget` to its editor widget.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dictation import commands as C
from dictation.events import CommandEvent, ConfirmRequest, FinalText

PUNCTUATION = {C.PERIOD: ".", C.COMMA: ",", C.COLON: ":"}
BREAKS = {C.NEW_LINE: "\n", C.NEW_PARAGRAPH: "\n\n"}
SENTENCE_ENDERS = ".!?\n"


@runtime_checkable
class TextTarget(Protocol):
    """What dictation edits: the focused field of the report editor."""

    def current_field(self) -> str | None: ...

    def field_text(self, field: str) -> str: ...

    def cursor(self) -> int: ...

    def set_cursor(self, position: int) -> None: ...

    def insert(self, text: str) -> None:
        """Insert at the cursor of the current field; the cursor ends after the inserted text."""

    def delete_range(self, field: str, start: int, end: int) -> None: ...

    def move_field(self, step: int) -> bool:
        """Focus the next (+1) or previous (-1) field, cursor at its end; False when there is none."""

    def go_to_field(self, name: str) -> bool:
        """Focus a field by field id or section id (its first field), cursor at its end; False if unknown."""


class PlainTextTarget:
    """A :class:`TextTarget` over an ordered dict of field id -> text (plus optional section -> field ids)."""

    def __init__(self, fields: Mapping[str, str], sections: Mapping[str, list[str]] | None = None,
                 current: str | None = None) -> None:
        self.fields: dict[str, str] = dict(fields)
        self.sections = {k: list(v) for k, v in (sections or {}).items()}
        self._order = list(self.fields)
        self._current = current if current is not None else (self._order[0] if self._order else None)
        self._cursor = len(self.fields.get(self._current, "")) if self._current else 0

    def current_field(self) -> str | None:
        return self._current

    def field_text(self, field: str) -> str:
        return self.fields[field]

    def cursor(self) -> int:
        return self._cursor

    def set_cursor(self, position: int) -> None:
        text = self.fields.get(self._current, "") if self._current else ""
        self._cursor = max(0, min(position, len(text)))

    def insert(self, text: str) -> None:
        if self._current is None:
            raise RuntimeError("no field has the focus")
        old = self.fields[self._current]
        self.fields[self._current] = old[:self._cursor] + text + old[self._cursor:]
        self._cursor += len(text)

    def delete_range(self, field: str, start: int, end: int) -> None:
        old = self.fields[field]
        self.fields[field] = old[:start] + old[end:]
        if field == self._current and self._cursor > start:
            self._cursor = max(start, self._cursor - (end - start))

    def _focus(self, field: str) -> None:
        self._current = field
        self._cursor = len(self.fields[field])

    def move_field(self, step: int) -> bool:
        if self._current is None:
            return False
        i = self._order.index(self._current) + step
        if not 0 <= i < len(self._order):
            return False
        self._focus(self._order[i])
        return True

    def go_to_field(self, name: str) -> bool:
        if name in self.fields:
            self._focus(name)
            return True
        ids = [f for f in self.sections.get(name, []) if f in self.fields]
        if ids:
            self._focus(ids[0])
            return True
        return False


@dataclass(frozen=True)
class AppRequest:
    """Something only the app can do: ``kind`` is "confirm" (ask before ``action``, e.g. sign_report),
    "critical_result" (open the critical-result communication block) or "message" (tell the reader ``message``)."""

    kind: str
    action: str | None = None
    message: str = ""


@dataclass
class Insertion:
    field: str
    start: int
    text: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class _Utterance:
    utterance_id: int
    insertions: list[Insertion] = field(default_factory=list)


class DictationApplier:
    """Applies :mod:`dictation.events` to a :class:`TextTarget`.

    ``normals`` gives a field's normal text ("insert normal"); ``macros`` maps a macro title to
    {field id: text} ("normal chest"). Both usually come from the report template."""

    def __init__(self, target: TextTarget, normals: Mapping[str, str] | Callable[[str], str | None] = (),
                 macros: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.target = target
        self._normals = normals if callable(normals) else dict(normals)
        self._macros = {k.lower(): dict(v) for k, v in (macros or {}).items()}
        self._history: list[_Utterance] = []

    # -- events -----------------------------------------------------------------------------------------
    def apply(self, event) -> AppRequest | None:
        if isinstance(event, FinalText):
            if event.text:
                self._insert_text(event.utterance_id, event.text)
            return None
        if isinstance(event, ConfirmRequest):
            return AppRequest("confirm", event.action, "Sign the report? Confirm to sign.")
        if isinstance(event, CommandEvent):
            return self._command(event.utterance_id, event.command)
        return None

    def _command(self, uid: int, cmd) -> AppRequest | None:
        name = cmd.name
        if name in PUNCTUATION:
            self._insert_raw(uid, PUNCTUATION[name])
        elif name in BREAKS:
            self._insert_raw(uid, BREAKS[name])
        elif name == C.SCRATCH_THAT:
            return self.scratch_that(uid)
        elif name == C.CAP_THAT:
            return self.cap_that(uid)
        elif name == C.NEXT_FIELD or name == C.PREVIOUS_FIELD:
            if not self.target.move_field(1 if name == C.NEXT_FIELD else -1):
                return AppRequest("message", message="There is no " + (
                    "next" if name == C.NEXT_FIELD else "previous") + " field.")
        elif name == C.GO_TO:
            if not self.target.go_to_field(cmd.argument or ""):
                return AppRequest("message", message=f"This template has no {cmd.argument} section.")
        elif name == C.INSERT_NORMAL:
            fid = self.target.current_field()
            normal = self._normal(fid) if fid else None
            if not normal:
                return AppRequest("message", message="This field has no normal text in the template.")
            self._insert_text(uid, normal, normalise_case=False)
        elif name == C.MACRO:
            return self._macro(uid, cmd.argument or "")
        elif name == C.SIGN_REPORT:
            return AppRequest("confirm", C.SIGN_REPORT, "Sign the report? Confirm to sign.")
        elif name == C.CRITICAL_RESULT:
            return AppRequest("critical_result", C.CRITICAL_RESULT)
        return None

    def _normal(self, fid: str) -> str | None:
        if callable(self._normals):
            return self._normals(fid)
        return self._normals.get(fid)

    # -- editing ----------------------------------------------------------------------------------------
    def _group(self, uid: int) -> _Utterance:
        if not self._history or self._history[-1].utterance_id != uid:
            self._history.append(_Utterance(uid))
        return self._history[-1]

    def _context(self) -> str:
        fid = self.target.current_field()
        if fid is None:
            return ""
        return self.target.field_text(fid)[:self.target.cursor()]

    def _insert_raw(self, uid: int, text: str) -> None:
        fid = self.target.current_field()
        if fid is None:
            return
        start = self.target.cursor()
        self.target.insert(text)
        self._group(uid).insertions.append(Insertion(fid, start, text))

    def _insert_text(self, uid: int, text: str, normalise_case: bool = True) -> None:
        ctx = self._context().rstrip(" \t")
        at_sentence_start = not ctx or ctx[-1] in SENTENCE_ENDERS
        if normalise_case and at_sentence_start and text[:1].islower():
            text = text[0].upper() + text[1:]
        raw_ctx = self._context()
        if raw_ctx and not raw_ctx[-1].isspace() and text[:1] not in ".,:;!?":
            text = " " + text
        self._insert_raw(uid, text)

    def _last_group(self, uid: int) -> _Utterance | None:
        """The utterance a "scratch that"/"cap that" said in utterance ``uid`` acts on: earlier words of the
        same utterance if there are any, else the previous utterance."""
        while self._history and not self._history[-1].insertions:
            self._history.pop()
        return self._history[-1] if self._history else None

    def _still_there(self, ins: Insertion) -> bool:
        try:
            return self.target.field_text(ins.field)[ins.start:ins.end] == ins.text
        except KeyError:
            return False

    def scratch_that(self, uid: int) -> AppRequest | None:
        group = self._last_group(uid)
        if group is None:
            return AppRequest("message", message="Nothing dictated to scratch.")
        if not all(self._still_there(i) for i in group.insertions):
            self._history.pop()
            return AppRequest("message", message="The last dictation was edited by hand; nothing was removed.")
        for ins in reversed(group.insertions):
            self.target.delete_range(ins.field, ins.start, ins.end)
        self._history.pop()
        return None

    def cap_that(self, uid: int) -> AppRequest | None:
        group = self._last_group(uid)
        if group is None:
            return AppRequest("message", message="Nothing dictated to capitalise.")
        fid = self.target.current_field()
        if not all(self._still_there(i) and i.field == fid for i in group.insertions):
            return AppRequest("message", message="The last dictation cannot be capitalised here.")
        cursor = self.target.cursor()
        for ins in reversed(group.insertions):
            new = " ".join(w[:1].upper() + w[1:] for w in ins.text.split(" "))
            if new == ins.text:
                continue
            self.target.delete_range(ins.field, ins.start, ins.end)
            self.target.set_cursor(ins.start)
            self.target.insert(new)
            ins.text = new
        self.target.set_cursor(cursor)
        return None

    def _macro(self, uid: int, title: str) -> AppRequest | None:
        values = self._macros.get(title.lower())
        if values is None:
            return AppRequest("message", message=f"This template has no macro called {title}.")
        origin = self.target.current_field()
        for fid, text in values.items():
            if not text or not self.target.go_to_field(fid):
                continue
            self._insert_text(uid, text, normalise_case=False)
        if origin is not None:
            self.target.go_to_field(origin)
        return None


def template_dictation_data(template) -> tuple[dict[str, str], dict[str, dict[str, str]], list[str]]:
    """(normals, macros, terms) from a report template object (duck-typed: ``fields`` with ``id``/``normal``/
    ``label``, ``macros`` with ``title``, and ``macro_values(id)``) - for :class:`DictationApplier`,
    :class:`dictation.commands.CommandParser` and :class:`dictation.normalize.Normalizer`."""
    fields = list(getattr(template, "fields", ()) or ())
    normals = {f.id: f.normal for f in fields if getattr(f, "normal", None)}
    macros: dict[str, dict[str, str]] = {}
    for m in getattr(template, "macros", ()) or ():
        try:
            macros[m.title] = dict(template.macro_values(m.id))
        except (AttributeError, KeyError):
            macros[m.title] = dict(getattr(m, "values", {}))
    words: set[str] = set()
    for text in [*(f.label for f in fields), *normals.values(), *(v for m in macros.values() for v in m.values())]:
        for w in str(text).replace(",", " ").replace(".", " ").split():
            if w.isalpha() and len(w) > 5:
                words.add(w.lower())
    return normals, macros, sorted(words)


def template_field_targets(template) -> dict[str, str]:
    """{field label: field id} of a report template (duck-typed), for "go to <label>" commands."""
    return {f.label: f.id for f in getattr(template, "fields", ()) or () if getattr(f, "label", "")}
