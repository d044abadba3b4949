"""Dictation's text target over the report model (Qt-free).

Owns :class:`ReportTextTarget`, the adapter that lets :class:`dictation.apply.DictationApplier` edit a
:class:`reporting.model.Report`: the focused field and its cursor are the model's, so dictated text lands in the
field the reader focused in the editor, and the editor follows through the model's events.
"""
from __future__ import annotations

from reporting.model import Report

SOURCE = "dictation"


class ReportTextTarget:
    def __init__(self, report: Report) -> None:
        self.report = report

    def current_field(self) -> str | None:
        return self.report.focus_field or None

    def field_text(self, field: str) -> str:
        return self.report.get(field)

    def cursor(self) -> int:
        return self.report.cursor

    def set_cursor(self, position: int) -> None:
        self.report.set_cursor(position)

    def insert(self, text: str) -> None:
        fid = self.report.focus_field
        current = self.report.get(fid)
        pos = max(0, min(self.report.cursor, len(current)))
        self.report.set_field(fid, current[:pos] + text + current[pos:], source=SOURCE)
        self.report.set_cursor(pos + len(text))

    def delete_range(self, field: str, start: int, end: int) -> None:
        current = self.report.get(field)
        cursor = self.report.cursor
        self.report.set_field(field, current[:start] + current[end:], source=SOURCE)
        if field == self.report.focus_field:
            self.report.set_cursor(cursor - (end - start) if cursor > start else cursor)

    def move_field(self, step: int) -> bool:
        ids = self.report.field_ids()
        if self.report.focus_field not in ids:
            return False
        i = ids.index(self.report.focus_field) + step
        if not 0 <= i < len(ids):
            return False
        self.report.focus(ids[i], source=SOURCE)
        return True

    def go_to_field(self, name: str) -> bool:
        try:
            self.report.focus(name, source=SOURCE)
            return True
        except KeyError:
            pass
        wanted = name.strip().lower()
        for s in self.report.template.sections:
            if wanted in (s.id.lower(), s.title.lower()) and s.fields:
                self.report.focus(s.fields[0].id, source=SOURCE)
                return True
        return False
