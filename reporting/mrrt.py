"""Import of IHE MRRT (RSNA RadReport) HTML5 templates into ReadRoom's JSON template format.

Owns :func:`mrrt_to_template_json`: parses an MRRT template (HTML5, ``<section>`` s with ``<header>``, ``<label>``,
``<textarea>``, ``<input>`` and ``<select>`` fields, coded content in the ``<script type="text/xml">``
template_attributes: ``<entry ORIGTXT="element-id"><term><code value= scheme= meaning=/></term></entry>``) with the
standard library's HTML parser. Scripts are read as data and never executed. The result is a dict in the format
of resources/templates/README.md (validated by :func:`reporting.templates.template_from_json`); the reader or an
administrator then adds matching rules and normal texts, which MRRT does not carry.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from .templates import FORMAT, template_from_json

IMPRESSION = {"value": "19005-8", "scheme": "LN", "meaning": "Impression"}
FINDINGS = {"value": "59776-5", "scheme": "LN", "meaning": "Procedure Findings"}


class _MrrtParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.meta: dict[str, str] = {}
        self.sections: list[dict] = []
        self.labels: dict[str, str] = {}
        self.coded_xml = ""
        self._stack: list[str] = []
        self._text_target: str | None = None
        self._label_for: str | None = None
        self._buf: list[str] = []
        self._select: dict | None = None
        self._option: list[str] | None = None
        self._in_script_xml = False

    def _section(self) -> dict:
        if not self.sections:
            self.sections.append({"id": "report", "title": "Report", "fields": []})
        return self.sections[-1]

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "script":
            self._in_script_xml = a.get("type", "").lower() in ("text/xml", "application/xml")
            self._buf = []
            return
        if tag == "title" or (tag == "header" and self.sections):
            self._text_target, self._buf = tag, []
        elif tag == "meta" and a.get("name"):
            self.meta[a["name"].lower()] = a.get("content", "")
        elif tag == "section":
            sid = a.get("id") or f"section-{len(self.sections) + 1}"
            self.sections.append({"id": sid, "title": a.get("data-section-name", ""), "fields": []})
        elif tag == "label":
            self._label_for, self._buf = a.get("for"), []
        elif tag in ("textarea", "input") and a.get("type", "text") not in ("hidden", "submit", "button"):
            kind = "text"
            if tag == "input" and a.get("type") == "number":
                kind = "number"
            f = {"id": a.get("id") or a.get("name") or f"field-{len(self._section()['fields']) + 1}", "type": kind,
                 "label": a.get("name", ""), "default": a.get("value", "")}
            if kind == "number":
                f["unit"] = a.get("data-field-units") or a.get("data-units") or "1"
                for k in ("min", "max"):
                    if a.get(k):
                        f[k] = float(a[k])
            self._section()["fields"].append(f)
            if tag == "textarea":
                self._text_target, self._buf = "textarea", []
        elif tag == "select":
            self._select = {"id": a.get("id") or a.get("name") or f"field-{len(self._section()['fields']) + 1}",
                            "type": "choice", "label": a.get("name", ""), "options": []}
            self._section()["fields"].append(self._select)
        elif tag == "option" and self._select is not None:
            self._option = []

    def handle_endtag(self, tag):
        text = "".join(self._buf).strip()
        if tag == "script":
            if self._in_script_xml:
                self.coded_xml += "".join(self._buf)
            self._in_script_xml = False
        elif tag == "title" and self._text_target == "title":
            self.title, self._text_target = text, None
        elif tag == "header" and self._text_target == "header":
            if not self._section()["title"]:
                self._section()["title"] = text
            self._text_target = None
        elif tag == "label" and self._label_for is not None:
            self.labels[self._label_for] = text.rstrip(":")
            self._label_for = None
        elif tag == "textarea" and self._text_target == "textarea":
            self._section()["fields"][-1]["default"] = text
            self._text_target = None
        elif tag == "option" and self._option is not None and self._select is not None:
            self._select["options"].append("".join(self._option).strip())
            self._option = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._option is not None:
            self._option.append(data)
        self._buf.append(data)


def _codes(xml_text: str) -> dict[str, dict]:
    """ORIGTXT (element id) -> first code of its term, from MRRT coded_content."""
    out: dict[str, dict] = {}
    if not xml_text.strip():
        return out
    try:
        root = ET.fromstring(f"<root>{xml_text}</root>")
    except ET.ParseError:
        return out
    for entry in root.iter():
        if entry.tag.lower() != "entry" or not entry.get("ORIGTXT"):
            continue
        code = next((c for c in entry.iter() if c.tag.lower() == "code" and c.get("value")), None)
        if code is not None:
            out[entry.get("ORIGTXT")] = {"value": code.get("value"), "scheme": (code.get("scheme") or "").upper(),
                                         "meaning": code.get("meaning") or code.get("value")}
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "mrrt-template"


def mrrt_to_template_json(html: str, template_id: str | None = None) -> dict:
    """An MRRT template as a ReadRoom template dict (raises TemplateError if the result is not usable)."""
    p = _MrrtParser()
    p.feed(html)
    p.close()
    codes = _codes(p.coded_xml)
    sections = []
    used: set[str] = set()
    for s in p.sections:
        fields = []
        for f in s["fields"]:
            fid = _slug(f["id"]).replace("-", "_")
            while fid in used:
                fid += "_2"
            used.add(fid)
            out = {**f, "id": fid, "label": p.labels.get(f["id"]) or f["label"] or f["id"]}
            if not out.get("default"):
                out.pop("default", None)
            if f["id"] in codes:
                out["code"] = codes[f["id"]]
            if out["type"] == "choice" and not out["options"]:
                out = {k: v for k, v in out.items() if k != "options"} | {"type": "text"}
            fields.append(out)
        title = s["title"] or s["id"]
        is_impression = "impression" in title.lower() or "conclusion" in title.lower()
        code = codes.get(s["id"]) or (IMPRESSION if is_impression else FINDINGS)
        section = {"id": _slug(s["id"]), "title": title, "code": code, "fields": fields}
        if is_impression:
            section["kind"] = "impression"
            for f in fields:
                f.setdefault("labelled", False)
            if fields:
                fields[0]["required"] = True
        sections.append(section)
    if not any(s.get("kind") == "impression" for s in sections):
        sections.append({"id": "impression", "title": "Impression", "code": IMPRESSION, "kind": "impression",
                         "fields": [{"id": "impression" if "impression" not in used else "impression_text",
                                     "label": "Impression", "type": "text", "required": True, "labelled": False}]})
    data = {"format": FORMAT, "id": template_id or _slug(p.meta.get("dcterms.identifier") or p.title),
            "title": p.title or "Imported template", "version": p.meta.get("dcterms.date", "1"),
            "language": p.meta.get("dcterms.language", "en-US"), "source": "imported from IHE MRRT",
            "match": {}, "sections": sections, "macros": []}
    template_from_json(data)  # validates
    return data
