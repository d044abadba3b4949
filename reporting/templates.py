"""Report templates: loading, validation and automatic choice.

Owns the in-memory form of the JSON template format documented in resources/templates/README.md (modelled on
IHE MRRT / RSNA RadReport): :class:`Template` with coded :class:`Section` s, typed :class:`Field` s and named
:class:`Macro` s, the :class:`TemplateLibrary` that loads every ``*.json`` in a folder, and
:func:`choose_template` (by modality, body part and procedure description).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
FORMAT = "readroom-template/1"
FIELD_TYPES = ("text", "choice", "number", "measurement", "laterality")
LATERALITY_OPTIONS = ("right", "left", "bilateral", "none")
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "resources" / "templates"
GENERIC_ID = "generic"


class TemplateError(ValueError):
    """A template file is not valid; the message names the file and the problem."""


@dataclass(frozen=True)
class Code:
    """A coded concept: DICOM Code Value, Coding Scheme Designator and Code Meaning."""

    value: str
    scheme: str
    meaning: str

    @classmethod
    def from_json(cls, d: dict, where: str) -> Code:
        try:
            return cls(str(d["value"]), str(d["scheme"]), str(d["meaning"]))
        except (KeyError, TypeError) as exc:
            raise TemplateError(f"{where}: a code needs value, scheme and meaning") from exc

    def to_json(self) -> dict:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}


@dataclass(frozen=True)
class Field:
    id: str
    label: str
    type: str = "text"
    required: bool = False
    default: str = ""
    normal: str | None = None
    options: tuple[str, ...] = ()
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    code: Code | None = None
    labelled: bool = True
    section_id: str = ""


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    code: Code
    fields: tuple[Field, ...]
    kind: str | None = None


@dataclass(frozen=True)
class Macro:
    id: str
    title: str
    values: dict[str, str]
    use_field_normals: bool = False


@dataclass(frozen=True)
class CriticalFinding:
    """An entry of the template's list of critical findings (ACR actionable category 1/2/3)."""

    finding: str
    category: int


@dataclass(frozen=True)
class Template:
    id: str
    title: str
    version: str
    language: str
    report_title: Code
    sections: tuple[Section, ...]
    macros: tuple[Macro, ...]
    procedure: Code | None = None
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    critical_findings: tuple[CriticalFinding, ...] = ()
    path: Path | None = None

    @property
    def fields(self) -> list[Field]:
        return [f for s in self.sections for f in s.fields]

    def field(self, field_id: str) -> Field:
        for f in self.fields:
            if f.id == field_id:
                return f
        raise KeyError(f"template {self.id!r} has no field {field_id!r}")

    def find_field(self, name: str) -> Field | None:
        """A field by id or by label, case-insensitive (for "go to lungs")."""
        wanted = name.strip().lower()
        for f in self.fields:
            if f.id.lower() == wanted or f.label.lower() == wanted:
                return f
        return None

    def section(self, section_id: str) -> Section:
        for s in self.sections:
            if s.id == section_id:
                return s
        raise KeyError(f"template {self.id!r} has no section {section_id!r}")

    @property
    def impression_section(self) -> Section:
        return next(s for s in self.sections if s.kind == "impression")

    def macro(self, macro_id: str) -> Macro:
        for m in self.macros:
            if m.id == macro_id or m.title.lower() == macro_id.lower():
                return m
        raise KeyError(f"template {self.id!r} has no macro {macro_id!r}")

    def macro_values(self, macro_id: str) -> dict[str, str]:
        """Every field value the macro sets (field normals first, explicit values win)."""
        m = self.macro(macro_id)
        values: dict[str, str] = {}
        if m.use_field_normals:
            values.update({f.id: f.normal for f in self.fields if f.normal is not None})
        values.update(m.values)
        return values

    def match_score(self, modality: str | None, body_part: str | None, description: str | None) -> int:
        score = 0
        if modality and modality.upper() in self.modalities:
            score += 4
        if body_part and body_part.upper().replace(" ", "") in self.body_parts:
            score += 3
        text = (description or "").lower()
        for kw in self.keywords:
            if re.search(r"\b" + re.escape(kw) + r"\b", text):
                score += 2
        return score


def _field(d: dict, section_id: str, where: str) -> Field:
    if not isinstance(d, dict) or "id" not in d or "label" not in d:
        raise TemplateError(f"{where}: each field needs an id and a label")
    ftype = d.get("type", "text")
    if ftype not in FIELD_TYPES:
        raise TemplateError(f"{where}: field {d['id']!r} has unknown type {ftype!r} (one of {', '.join(FIELD_TYPES)})")
    options = tuple(d.get("options", ()))
    if ftype == "choice" and not options:
        raise TemplateError(f"{where}: pick-list field {d['id']!r} has no options")
    if ftype == "laterality":
        options = LATERALITY_OPTIONS
    if ftype in ("number", "measurement") and not d.get("unit"):
        raise TemplateError(f"{where}: {ftype} field {d['id']!r} needs a unit")
    return Field(
        id=str(d["id"]), label=str(d["label"]), type=ftype, required=bool(d.get("required", False)),
        default=str(d.get("default", "")), normal=d.get("normal"), options=options, unit=d.get("unit"),
        minimum=d.get("min"), maximum=d.get("max"),
        code=Code.from_json(d["code"], where) if "code" in d else None,
        labelled=bool(d.get("labelled", True)), section_id=section_id,
    )


def template_from_json(data: dict, path: Path | None = None) -> Template:
    where = str(path) if path else f"template {data.get('id', '?')}"
    if data.get("format") != FORMAT:
        raise TemplateError(f"{where}: 'format' must be {FORMAT!r}")
    for key in ("id", "title", "sections"):
        if key not in data:
            raise TemplateError(f"{where}: missing {key!r}")
    if not re.fullmatch(r"[a-z0-9-]+", str(data["id"])):
        raise TemplateError(f"{where}: id must be lower-case letters, digits and '-'")
    sections = []
    for s in data["sections"]:
        if "id" not in s or "title" not in s or "code" not in s:
            raise TemplateError(f"{where}: each section needs id, title and code")
        fields = tuple(_field(f, s["id"], where) for f in s.get("fields", []))
        sections.append(Section(id=s["id"], title=s["title"], code=Code.from_json(s["code"], where),
                                fields=fields, kind=s.get("kind")))
    ids = [f.id for s in sections for f in s.fields]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise TemplateError(f"{where}: field ids used twice: {', '.join(sorted(dupes))}")
    if sum(1 for s in sections if s.kind == "impression") != 1:
        raise TemplateError(f"{where}: exactly one section must have kind 'impression'")
    macros = []
    for m in data.get("macros", []):
        unknown = set(m.get("values", {})) - set(ids)
        if unknown:
            raise TemplateError(f"{where}: macro {m.get('id')!r} names unknown fields {', '.join(sorted(unknown))}")
        macros.append(Macro(id=m["id"], title=m.get("title", m["id"]), values=dict(m.get("values", {})),
                            use_field_normals=bool(m.get("use_field_normals", False))))
    match = data.get("match", {})
    critical = []
    for c in data.get("critical_findings", []):
        if not isinstance(c, dict) or not c.get("finding") or c.get("category") not in (1, 2, 3):
            raise TemplateError(f"{where}: each critical finding needs a finding and an ACR category 1, 2 or 3")
        critical.append(CriticalFinding(str(c["finding"]), int(c["category"])))
    return Template(
        id=data["id"], title=data["title"], version=str(data.get("version", "1")),
        language=data.get("language", "en-US"),
        report_title=Code.from_json(data.get("report_title", {"value": "18748-4", "scheme": "LN",
                                                              "meaning": "Diagnostic Imaging Report"}), where),
        sections=tuple(sections), macros=tuple(macros),
        procedure=Code.from_json(data["procedure"], where) if "procedure" in data else None,
        modalities=tuple(x.upper() for x in match.get("modalities", [])),
        body_parts=tuple(x.upper() for x in match.get("body_parts", [])),
        keywords=tuple(x.lower() for x in match.get("keywords", [])),
        critical_findings=tuple(critical),
        path=path,
    )


def load_template(path: Path) -> Template:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{path}: not valid JSON ({exc})") from exc
    return template_from_json(data, path)


def user_templates_dir() -> Path:
    """Site/user templates (e.g. imported from MRRT): ``<config>/templates``; they override shipped ones by id."""
    from cloud_client import paths

    return paths.config_dir() / "templates"


class TemplateLibrary:
    """All templates in a folder. Default: the shipped resources/templates plus :func:`user_templates_dir`
    (a broken user template is skipped with a warning, never hiding the shipped ones)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory else DEFAULT_DIR
        self._templates = {t.id: t for t in (load_template(p) for p in sorted(self.directory.glob("*.json")))}
        if directory is None:
            user_dir = user_templates_dir()
            for p in sorted(user_dir.glob("*.json")) if user_dir.is_dir() else []:
                try:
                    t = load_template(p)
                except TemplateError as exc:
                    log.warning("skipping a user report template: %s", exc)
                    continue
                self._templates[t.id] = t
        if not self._templates:
            raise TemplateError(f"no report templates found in {self.directory}")

    def all(self) -> list[Template]:
        return sorted(self._templates.values(), key=lambda t: t.title)

    def get(self, template_id: str) -> Template:
        try:
            return self._templates[template_id]
        except KeyError:
            raise KeyError(f"no report template {template_id!r}; known: {', '.join(sorted(self._templates))}") from None

    def choose(self, modality: str | None, body_part: str | None, description: str | None = None) -> Template:
        """The best template: its modality must match and its body part or a keyword too; else the generic one."""
        best: tuple[int, str] | None = None
        for t in self._templates.values():
            if t.id == GENERIC_ID or not modality or modality.upper() not in t.modalities:
                continue
            score = t.match_score(modality, body_part, description)
            if score > 4 and (best is None or (score, t.id) > best):
                best = (score, t.id)
        if best is not None:
            return self._templates[best[1]]
        if GENERIC_ID in self._templates:
            return self._templates[GENERIC_ID]
        return self.all()[0]


_default_library: TemplateLibrary | None = None


def default_library() -> TemplateLibrary:
    global _default_library
    if _default_library is None:
        _default_library = TemplateLibrary()
    return _default_library


def choose_template(modality: str | None, body_part: str | None, description: str | None = None) -> Template:
    return default_library().choose(modality, body_part, description)
