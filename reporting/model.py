"""The report model: what the reader writes, its states, and the edit events the GUI and dictation use.

Owns :class:`Report` (field values of one :class:`~reporting.templates.Template` for one study), its state
machine draft -> preliminary -> final -> amended with who/when (:class:`StateChange`), critical results and their
communication record (:class:`CriticalResult`, :class:`Communication`, per the ACR practice parameter), links to
viewer measurements and key images, and a small observer mechanism (:meth:`Report.subscribe`,
:class:`ReportEvent`). Edits: set a field, insert at the cursor, move focus next/previous/by name, apply a macro.
Events are delivered synchronously on the caller's thread; a GUI marshals them to its own thread.
"""
from __future__ import annotations

import datetime as _dt
import enum
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .templates import Field, Template, TemplateLibrary, default_library

ADDENDUM_FIELD = "addendum"


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class ReportState(str, enum.Enum):
    DRAFT = "draft"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"


_ALLOWED = {
    ReportState.DRAFT: {ReportState.PRELIMINARY, ReportState.FINAL},
    ReportState.PRELIMINARY: {ReportState.FINAL, ReportState.DRAFT},
    ReportState.FINAL: {ReportState.AMENDED},
    ReportState.AMENDED: {ReportState.AMENDED},
}


class ReportLockedError(RuntimeError):
    """The report is signed; changes go into an addendum."""


class StateError(RuntimeError):
    """A state change the workflow does not allow (e.g. final -> draft)."""


class EventKind(str, enum.Enum):
    FIELD_CHANGED = "field_changed"
    FOCUS_CHANGED = "focus_changed"
    STATE_CHANGED = "state_changed"
    MACRO_APPLIED = "macro_applied"
    TEMPLATE_CHANGED = "template_changed"
    CRITICAL_CHANGED = "critical_changed"
    MEASUREMENT_LINKED = "measurement_linked"
    KEY_IMAGES_CHANGED = "key_images_changed"


@dataclass(frozen=True)
class ReportEvent:
    kind: EventKind
    field_id: str | None = None
    text: str | None = None
    cursor: int | None = None
    source: str = "user"  # "user", "dictation", "macro", "viewer", "draft"


@dataclass(frozen=True)
class Person:
    """A reader or reviewer: login id and display name (DICOM PN form "Family^Given" is fine)."""

    user_id: str
    display_name: str = ""

    @property
    def name(self) -> str:
        return self.display_name or self.user_id


@dataclass(frozen=True)
class InstanceRef:
    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str


@dataclass
class StudyContext:
    """The study being reported (from the worklist item / study metadata). Identity is ``study_uid``."""

    study_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str = ""
    patient_sex: str = ""
    patient_birth_date: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    modality: str = ""
    body_part: str = ""
    laterality: str = ""  # "R", "L", "B" or "" when the study has no side
    description: str = ""
    institution: str = ""
    referring_physician: str = ""
    workitem_uid: str = ""
    instances: list[InstanceRef] = field(default_factory=list)

    def identity(self) -> dict:
        """What a signature binds the report to."""
        return {"study_uid": self.study_uid, "patient_id": self.patient_id,
                "issuer_of_patient_id": self.issuer_of_patient_id, "accession_number": self.accession_number,
                "workitem_uid": self.workitem_uid}

    @classmethod
    def from_worklist_item(cls, item) -> StudyContext:
        """From a ``cloud_client.worklist.WorklistItem`` (read by attribute name, so no import is needed)."""
        birth = getattr(item, "patient_birth_date", None)
        return cls(study_uid=getattr(item, "study_uid", None) or "", patient_id=getattr(item, "patient_id", ""),
                   issuer_of_patient_id=getattr(item, "issuer_of_patient_id", ""),
                   patient_name=getattr(item, "patient_name", ""), patient_sex=getattr(item, "patient_sex", ""),
                   patient_birth_date=birth.strftime("%Y%m%d") if hasattr(birth, "strftime") else (birth or ""),
                   modality=getattr(item, "modality", ""), body_part=getattr(item, "body_part", ""),
                   description=getattr(item, "study_description", ""), institution=getattr(item, "clinic", ""),
                   workitem_uid=getattr(item, "workitem_uid", ""))

    @classmethod
    def from_dict(cls, d: dict) -> StudyContext:
        d = dict(d)
        d["instances"] = [InstanceRef(**i) for i in d.get("instances", [])]
        return cls(**d)


@dataclass(frozen=True)
class MeasurementLink:
    """A measurement made in the viewer and placed into a report field."""

    measurement_id: str
    value: float
    unit: str
    label: str = ""
    series_uid: str = ""
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    frame: int | None = None

    def text(self) -> str:
        return f"{self.value:.3g} {self.unit}" if abs(self.value) < 1000 else f"{self.value:.0f} {self.unit}"


@dataclass(frozen=True)
class KeyImage:
    image: InstanceRef
    frame: int | None = None
    note: str = ""


@dataclass(frozen=True)
class StateChange:
    state: ReportState
    user_id: str
    display_name: str
    at: str


@dataclass
class Communication:
    """Who was told about a critical result, how, when, and whether they read it back."""

    recipient: str
    method: str  # "phone", "in person", "secure message", "page", ...
    communicated_at: str
    read_back_confirmed: bool
    communicated_by: str = ""
    note: str = ""

    def sentence(self) -> str:
        rb = "read-back confirmed" if self.read_back_confirmed else "read-back NOT confirmed"
        by = f" by {self.communicated_by}" if self.communicated_by else ""
        return f"Communicated{by} to {self.recipient} by {self.method} at {self.communicated_at}; {rb}."


ACR_CATEGORIES = {1: "minutes", 2: "hours", 3: "days"}


@dataclass
class CriticalResult:
    finding: str
    category: int  # ACR actionable finding category: 1 minutes, 2 hours, 3 days
    flagged_by: str
    flagged_at: str
    communications: list[Communication] = field(default_factory=list)

    @property
    def communicated(self) -> bool:
        return any(c.read_back_confirmed for c in self.communications)

    def text(self) -> str:
        when = ACR_CATEGORIES.get(self.category, "?")
        lines = [f"CRITICAL RESULT (ACR category {self.category}, {when}): {self.finding}"]
        lines += [c.sentence() for c in self.communications]
        if not self.communications:
            lines.append("Not yet communicated.")
        return " ".join(lines)


@dataclass(frozen=True)
class PriorDocument:
    """The signed SR an addendum amends."""

    study_uid: str
    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str


Listener = Callable[[ReportEvent], None]


class Report:
    """One report on one study, filled in from one template."""

    def __init__(self, template: Template, study: StudyContext, *, report_id: str | None = None,
                 author: Person | None = None) -> None:
        self.template = template
        self.study = study
        self.report_id = report_id or uuid.uuid4().hex
        self.author = author
        self.values: dict[str, str] = {f.id: f.default for f in template.fields}
        self.measurements: dict[str, MeasurementLink] = {}
        self.key_images: list[KeyImage] = []
        self.critical_results: list[CriticalResult] = []
        self.history: list[StateChange] = []
        self.state = ReportState.DRAFT
        self.predecessor: PriorDocument | None = None
        self.preliminary_sr: PriorDocument | None = None  # the last preliminary SR sent for this report
        self.addendum_text = ""
        self.previous_addenda: list[str] = []  # texts of earlier addenda in the chain, newest first
        self.focus_field: str = template.fields[0].id if template.fields else ""
        self.cursor = len(self.values.get(self.focus_field, ""))
        self.revision = 0  # bumps on every change; the autosaver watches it
        self._listeners: list[Listener] = []

    # ---- observers ------------------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` after every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return unsubscribe

    def _emit(self, event: ReportEvent, changed: bool = True) -> None:
        if changed:
            self.revision += 1
        for listener in list(self._listeners):
            listener(event)

    # ---- state ----------------------------------------------------------------------------------------------
    @property
    def editable(self) -> bool:
        return self.state in (ReportState.DRAFT, ReportState.PRELIMINARY)

    @property
    def is_addendum(self) -> bool:
        return self.predecessor is not None

    def _check_editable(self, field_id: str | None = None) -> None:
        if self.is_addendum and self.state in (ReportState.DRAFT, ReportState.PRELIMINARY):
            if field_id is not None and field_id != ADDENDUM_FIELD:
                raise ReportLockedError("The signed report cannot be changed; write the change in the addendum.")
            return
        if not self.editable:
            raise ReportLockedError("This report is signed. Write an addendum to change it.")

    def transition(self, state: ReportState, who: Person, at: str | None = None) -> None:
        if state not in _ALLOWED[self.state]:
            raise StateError(f"A report cannot go from {self.state.value} to {state.value}.")
        self.state = state
        self.history.append(StateChange(state, who.user_id, who.name, at or now_iso()))
        self._emit(ReportEvent(EventKind.STATE_CHANGED, text=state.value))

    def mark_preliminary(self, who: Person) -> None:
        self.transition(ReportState.PRELIMINARY, who)

    # ---- fields ---------------------------------------------------------------------------------------------
    def field_ids(self) -> list[str]:
        ids = [f.id for f in self.template.fields]
        return [ADDENDUM_FIELD] + ids if self.is_addendum else ids

    def _resolve(self, name: str) -> str:
        if name == ADDENDUM_FIELD and self.is_addendum:
            return name
        if name in self.values:
            return name
        f = self.template.find_field(name)
        if f is None:
            raise KeyError(f"no field called {name!r} in template {self.template.title!r}")
        return f.id

    def get(self, field_id: str) -> str:
        field_id = self._resolve(field_id)
        return self.addendum_text if field_id == ADDENDUM_FIELD else self.values[field_id]

    def set_field(self, field_id: str, text: str, source: str = "user") -> None:
        field_id = self._resolve(field_id)
        self._check_editable(field_id)
        text = str(text)
        if field_id == ADDENDUM_FIELD:
            if text == self.addendum_text:
                return
            self.addendum_text = text
        else:
            if self.values[field_id] == text:
                return
            self.values[field_id] = text
            link = self.measurements.get(field_id)
            if link is not None and link.text() != text:
                del self.measurements[field_id]  # the reader overwrote the linked value
        if field_id == self.focus_field:
            self.cursor = len(text)
        self._emit(ReportEvent(EventKind.FIELD_CHANGED, field_id, text, self.cursor if field_id == self.focus_field
                               else None, source))

    def insert_at_cursor(self, text: str, source: str = "user") -> None:
        """Insert ``text`` at the cursor of the focused field (dictation's plain-text path)."""
        fid = self.focus_field
        self._check_editable(fid)
        current = self.get(fid)
        pos = max(0, min(self.cursor, len(current)))
        if pos > 0 and text and not current[pos - 1].isspace() and not text[0].isspace() and text[0].isalnum():
            text = " " + text
        new = current[:pos] + text + current[pos:]
        if fid == ADDENDUM_FIELD:
            self.addendum_text = new
        else:
            self.values[fid] = new
            self.measurements.pop(fid, None)
        self.cursor = pos + len(text)
        self._emit(ReportEvent(EventKind.FIELD_CHANGED, fid, new, self.cursor, source))

    def set_cursor(self, position: int) -> None:
        self.cursor = max(0, min(position, len(self.get(self.focus_field))))
        self._emit(ReportEvent(EventKind.FOCUS_CHANGED, self.focus_field, cursor=self.cursor), changed=False)

    def focus(self, name: str, source: str = "user") -> str:
        """Move focus to a field by id or label ("go to impression"); the cursor goes to its end."""
        fid = self._resolve(name)
        self.focus_field = fid
        self.cursor = len(self.get(fid))
        self._emit(ReportEvent(EventKind.FOCUS_CHANGED, fid, cursor=self.cursor, source=source), changed=False)
        return fid

    def focus_next(self, source: str = "user") -> str:
        return self._focus_step(+1, source)

    def focus_previous(self, source: str = "user") -> str:
        return self._focus_step(-1, source)

    def _focus_step(self, step: int, source: str) -> str:
        ids = self.field_ids()
        i = ids.index(self.focus_field) if self.focus_field in ids else 0
        return self.focus(ids[(i + step) % len(ids)], source)

    def apply_macro(self, macro_id: str, source: str = "user") -> None:
        """Fill every field the macro names (e.g. "normal chest") in one action."""
        self._check_editable()
        values = self.template.macro_values(macro_id)
        for fid, text in values.items():
            if self.values.get(fid) != text:
                self.values[fid] = text
                self.measurements.pop(fid, None)
                self._emit(ReportEvent(EventKind.FIELD_CHANGED, fid, text, None, "macro"))
        if self.focus_field in values:
            self.cursor = len(self.values[self.focus_field])
        self._emit(ReportEvent(EventKind.MACRO_APPLIED, text=macro_id, source=source))

    def change_template(self, template: Template) -> None:
        """Switch template; values of fields with the same id carry over."""
        self._check_editable()
        old = self.values
        self.template = template
        self.values = {f.id: old.get(f.id, f.default) for f in template.fields}
        self.measurements = {k: v for k, v in self.measurements.items() if k in self.values}
        if self.focus_field not in self.values:
            self.focus_field = template.fields[0].id
        self.cursor = len(self.values[self.focus_field])
        self._emit(ReportEvent(EventKind.TEMPLATE_CHANGED, text=template.id))

    # ---- viewer links ---------------------------------------------------------------------------------------
    def link_measurement(self, field_id: str, link: MeasurementLink, source: str = "viewer") -> None:
        field_id = self._resolve(field_id)
        self._check_editable(field_id)
        self.values[field_id] = link.text()
        self.measurements[field_id] = link
        self._emit(ReportEvent(EventKind.MEASUREMENT_LINKED, field_id, link.text(), source=source))

    def add_key_image(self, key_image: KeyImage) -> None:
        self._check_editable()
        if key_image not in self.key_images:
            self.key_images.append(key_image)
            self._emit(ReportEvent(EventKind.KEY_IMAGES_CHANGED))

    def remove_key_image(self, key_image: KeyImage) -> None:
        self._check_editable()
        self.key_images.remove(key_image)
        self._emit(ReportEvent(EventKind.KEY_IMAGES_CHANGED))

    # ---- critical results -----------------------------------------------------------------------------------
    def flag_critical(self, finding: str, category: int, who: Person) -> CriticalResult:
        if category not in ACR_CATEGORIES:
            raise ValueError("The ACR category of a critical result is 1 (minutes), 2 (hours) or 3 (days).")
        if not self.editable and not self.is_addendum:
            raise ReportLockedError("This report is signed. Flag the critical result in an addendum.")
        cr = CriticalResult(finding=finding, category=category, flagged_by=who.name, flagged_at=now_iso())
        self.critical_results.append(cr)
        self._emit(ReportEvent(EventKind.CRITICAL_CHANGED, text=finding))
        return cr

    def record_communication(self, critical: CriticalResult | int, communication: Communication) -> None:
        cr = self.critical_results[critical] if isinstance(critical, int) else critical
        if not self.editable and not self.is_addendum:
            raise ReportLockedError("This report is signed. Record the communication in an addendum.")
        cr.communications.append(communication)
        self._emit(ReportEvent(EventKind.CRITICAL_CHANGED, text=cr.finding))

    # ---- text -----------------------------------------------------------------------------------------------
    def field_text(self, f: Field) -> str:
        value = self.values.get(f.id, "").strip()
        if not value:
            return ""
        if f.type in ("number",) and f.unit and not value.endswith(f.unit):
            value = f"{value} {f.unit}"
        if f.type == "laterality":
            value = value.capitalize()
        return f"{f.label}: {value}" if f.labelled else value

    def section_texts(self) -> list[tuple[str, object, list[tuple[Field, str]]]]:
        """[(section id, Section, [(Field, printed text), ...]), ...] with empty fields and sections left out."""
        out = []
        for s in self.template.sections:
            items = [(f, t) for f in s.fields if (t := self.field_text(f))]
            if items:
                out.append((s.id, s, items))
        return out

    def critical_text(self) -> str:
        return "\n".join(cr.text() for cr in self.critical_results)

    def addenda(self) -> list[str]:
        """This addendum's text and the earlier ones of the chain, newest first (empty for a plain report)."""
        if not self.is_addendum:
            return []
        current = [self.addendum_text.strip()] if self.addendum_text.strip() else []
        return current + [t for t in self.previous_addenda if t.strip()]

    def render_text(self) -> str:
        """The report as plain text: what is signed, printed and sent."""
        parts = [self.template.title.upper()]
        if self.addenda():
            parts.append("ADDENDUM:\n" + "\n".join(self.addenda()))
        for _sid, s, items in self.section_texts():
            parts.append(s.title.upper() + ":\n" + "\n".join(t for _f, t in items))
        if self.critical_results:
            parts.append("CRITICAL RESULTS:\n" + self.critical_text())
        return "\n\n".join(parts) + "\n"

    def impression(self) -> str:
        return "\n".join(t for f in self.template.impression_section.fields if (t := self.values.get(f.id, "").strip()))

    # ---- serialisation (drafts, signing) --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": "readroom-report/1",
            "report_id": self.report_id,
            "template_id": self.template.id,
            "template_version": self.template.version,
            "study": asdict(self.study),
            "author": asdict(self.author) if self.author else None,
            "values": dict(self.values),
            "measurements": {k: asdict(v) for k, v in self.measurements.items()},
            "key_images": [asdict(k) for k in self.key_images],
            "critical_results": [asdict(c) for c in self.critical_results],
            "history": [{**asdict(h), "state": h.state.value} for h in self.history],
            "state": self.state.value,
            "predecessor": asdict(self.predecessor) if self.predecessor else None,
            "preliminary_sr": asdict(self.preliminary_sr) if self.preliminary_sr else None,
            "addendum_text": self.addendum_text,
            "previous_addenda": list(self.previous_addenda),
            "focus_field": self.focus_field,
            "cursor": self.cursor,
        }

    @classmethod
    def from_dict(cls, d: dict, library: TemplateLibrary | None = None) -> Report:
        library = library or default_library()
        template = library.get(d["template_id"])
        r = cls(template, StudyContext.from_dict(d["study"]), report_id=d["report_id"],
                author=Person(**d["author"]) if d.get("author") else None)
        for k, v in d.get("values", {}).items():
            if k in r.values:
                r.values[k] = v
        r.measurements = {k: MeasurementLink(**v) for k, v in d.get("measurements", {}).items() if k in r.values}
        r.key_images = [KeyImage(image=InstanceRef(**k["image"]), frame=k.get("frame"), note=k.get("note", ""))
                        for k in d.get("key_images", [])]
        r.critical_results = [CriticalResult(**{**c, "communications": [Communication(**x)
                                                                         for x in c["communications"]]})
                              for c in d.get("critical_results", [])]
        r.history = [StateChange(ReportState(h["state"]), h["user_id"], h["display_name"], h["at"])
                     for h in d.get("history", [])]
        r.state = ReportState(d.get("state", "draft"))
        r.predecessor = PriorDocument(**d["predecessor"]) if d.get("predecessor") else None
        r.preliminary_sr = PriorDocument(**d["preliminary_sr"]) if d.get("preliminary_sr") else None
        r.addendum_text = d.get("addendum_text", "")
        r.previous_addenda = list(d.get("previous_addenda", []))
        if d.get("focus_field") in r.field_ids():
            r.focus_field = d["focus_field"]
        r.cursor = int(d.get("cursor", len(r.get(r.focus_field)) if r.focus_field else 0))
        return r

    def content_for_signing(self) -> dict:
        """The report content a signature covers (no cursor/focus, no draft-only data)."""
        d = self.to_dict()
        for k in ("focus_field", "cursor", "state", "history"):
            d.pop(k)
        d["text"] = self.render_text()
        return d

    def start_addendum(self, who: Person, predecessor: PriorDocument) -> Report:
        """A new report that amends the signed SR ``predecessor`` (this report's latest signed version).

        The new report carries this report's content; only its addendum text (and critical results) can change.
        """
        if self.state not in (ReportState.FINAL, ReportState.AMENDED):
            raise StateError("Only a signed report can get an addendum.")
        a = Report(self.template, self.study, author=who)
        a.predecessor = predecessor
        a.previous_addenda = self.addenda()
        a.values = dict(self.values)
        a.measurements = dict(self.measurements)
        a.key_images = list(self.key_images)
        a.critical_results = [CriticalResult(c.finding, c.category, c.flagged_by, c.flagged_at, list(c.communications))
                              for c in self.critical_results]
        a.focus_field = ADDENDUM_FIELD
        a.cursor = 0
        return a
