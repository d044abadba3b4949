"""Checks run before a report is signed.

Owns :func:`validate`: required fields and a non-empty impression (errors), numbers that are not numbers or out of
range (errors), pick-list values not on the list (warnings), left/right words that contradict the study's or the
report's laterality (warnings), linked viewer measurements that no longer exist in the study (errors), critical
results without a recorded communication (errors) or without read-back (warnings), an empty addendum (error).
Messages are for the reader; they never contain patient data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .model import ADDENDUM_FIELD, Report

ERROR = "error"
WARNING = "warning"

# body parts that come in pairs: a side is expected
PAIRED = {"HAND", "WRIST", "FOREARM", "ELBOW", "HUMERUS", "SHOULDER", "FOOT", "ANKLE", "LEG", "KNEE", "FEMUR", "HIP",
          "TIBIA", "FINGER", "TOE", "BREAST", "EXTREMITY", "ARM", "CLAVICLE"}
_SIDE_WORDS = {"R": re.compile(r"\bright\b", re.IGNORECASE), "L": re.compile(r"\bleft\b", re.IGNORECASE)}
_SIDE_NAMES = {"R": "right", "L": "left", "B": "both sides"}


@dataclass(frozen=True)
class Issue:
    severity: str  # "error" blocks signing, "warning" asks the reader to confirm
    message: str
    field_id: str | None = None


@dataclass
class ValidationResult:
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return "\n".join(f"{i.severity.upper()}: {i.message}" for i in self.issues)


def _side_of(value: str) -> str:
    v = value.strip().lower()
    return {"right": "R", "r": "R", "left": "L", "l": "L", "bilateral": "B", "both": "B"}.get(v, "")


def validate(report: Report, present_measurement_ids: set[str] | None = None) -> ValidationResult:
    """Check ``report`` before signing. ``present_measurement_ids``: ids of the measurements the viewer still has
    (None when the viewer is not open: then the linked images are checked against the study's instance list)."""
    res = ValidationResult()
    add = res.issues.append
    t = report.template

    if report.is_addendum and not report.addendum_text.strip():
        add(Issue(ERROR, "The addendum is empty.", ADDENDUM_FIELD))

    for f in t.fields:
        value = report.values.get(f.id, "").strip()
        if f.required and not value and not report.is_addendum:
            add(Issue(ERROR, f"'{f.label}' is required.", f.id))
        if not value:
            continue
        if f.type == "choice" and value not in f.options:
            add(Issue(WARNING, f"'{f.label}' is not one of the listed choices ({', '.join(f.options)}).", f.id))
        if f.type == "laterality" and value.lower() not in f.options:
            add(Issue(ERROR, f"'{f.label}' must be right, left, bilateral or none.", f.id))
        if f.type == "number":
            m = re.fullmatch(r"\s*(-?\d+(?:[.,]\d+)?)\s*(\S+)?\s*", value)
            if not m:
                add(Issue(ERROR, f"'{f.label}' must be a number ({f.unit}).", f.id))
            else:
                number = float(m.group(1).replace(",", "."))
                if (f.minimum is not None and number < f.minimum) or (f.maximum is not None and number > f.maximum):
                    add(Issue(ERROR, f"'{f.label}' must be between {f.minimum} and {f.maximum} {f.unit}.", f.id))

    if not report.impression().strip() and not report.is_addendum:
        add(Issue(ERROR, "The impression is empty.", t.impression_section.fields[0].id))

    # laterality: the study's side, else the side the reader picked in a laterality field
    side = (report.study.laterality or "").upper()[:1]
    side_field = next((f for f in t.fields if f.type == "laterality" and report.values.get(f.id, "").strip()), None)
    picked = _side_of(report.values.get(side_field.id, "")) if side_field else ""
    if side in ("R", "L") and picked in ("R", "L") and picked != side:
        add(Issue(WARNING, f"The report says {_SIDE_NAMES[picked]} but the images are labelled "
                           f"{_SIDE_NAMES[side]}.", side_field.id))
    expected = side if side in ("R", "L") else picked
    if expected in ("R", "L"):
        other = "L" if expected == "R" else "R"
        for f in t.fields:
            if f.type == "laterality":
                continue
            if _SIDE_WORDS[other].search(report.values.get(f.id, "")):
                add(Issue(WARNING, f"'{f.label}' mentions the {_SIDE_NAMES[other]} side; this study is the "
                                   f"{_SIDE_NAMES[expected]} side.", f.id))
        if report.is_addendum and _SIDE_WORDS[other].search(report.addendum_text):
            add(Issue(WARNING, f"The addendum mentions the {_SIDE_NAMES[other]} side; this study is the "
                               f"{_SIDE_NAMES[expected]} side.", ADDENDUM_FIELD))
    elif (report.study.body_part or "").upper() in PAIRED and side_field is None and not side:
        words = " ".join(report.values.values())
        if not (_SIDE_WORDS["R"].search(words) or _SIDE_WORDS["L"].search(words)):
            add(Issue(WARNING, "This is a paired body part but the report does not say which side.", None))

    # linked measurements must still exist
    instance_uids = {i.sop_instance_uid for i in report.study.instances}
    for fid, link in report.measurements.items():
        label = t.field(fid).label
        if present_measurement_ids is not None and link.measurement_id not in present_measurement_ids:
            add(Issue(ERROR, f"The measurement linked to '{label}' was deleted in the viewer.", fid))
        elif instance_uids and link.sop_instance_uid and link.sop_instance_uid not in instance_uids:
            add(Issue(ERROR, f"The image of the measurement linked to '{label}' is no longer in the study.", fid))

    for cr in report.critical_results:
        if not cr.communications:
            add(Issue(ERROR, "A critical result is flagged but nobody has been told: record who was told, how and "
                             "when."))
        elif not cr.communicated:
            add(Issue(WARNING, "A critical result was communicated but the read-back is not confirmed."))
    return res
