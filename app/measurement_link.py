"""From the viewer to the report: measurements and key images made in the viewports go into the report model.

Owns the rule (Qt-free): a key-image mark becomes a report key image; a measurement with a value goes into the
focused field - linked (``Report.link_measurement``) when that field is a number/measurement field, else its
label is inserted at the cursor of the focused text field. Nothing happens to a signed report.
"""
from __future__ import annotations

import logging

from reporting.model import InstanceRef, KeyImage, MeasurementLink, Report

log = logging.getLogger(__name__)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def measurement_value(m) -> tuple[float, str] | None:
    """(value, unit) of a viewer measurement, or None when it has no single value (arrow, text)."""
    value = getattr(m, "value", None)
    if value is None:
        return None
    kind = getattr(m, "kind", "")
    if kind in ("angle", "cobb"):
        return float(value), "deg"
    unit = getattr(m, "length_unit", "mm")
    return float(value), str(unit)


def apply_to_report(report: Report | None, m) -> str | None:
    """Put viewer object ``m`` into ``report``; returns a short note of what happened (None: nothing)."""
    if report is None or not (report.editable and not report.is_addendum):
        return None
    if getattr(m, "kind", "") == "key_image":
        ref = InstanceRef(series_uid=m.series_instance_uid or "", sop_class_uid=m.sop_class_uid or
                          SECONDARY_CAPTURE, sop_instance_uid=m.sop_instance_uid)
        report.add_key_image(KeyImage(image=ref, frame=m.frame_number, note=m.note))
        return "Key image added to the report"
    vu = measurement_value(m)
    if vu is None:
        return None
    value, unit = vu
    fid = report.focus_field
    field = report.template.find_field(fid) if fid else None
    label = m.label() if callable(getattr(m, "label", None)) else f"{value:.1f} {unit}"
    if field is not None and field.type in ("measurement", "number"):
        link = MeasurementLink(measurement_id=m.uid, value=round(value, 1), unit=unit, label=label,
                               series_uid=m.series_instance_uid or "", sop_instance_uid=m.sop_instance_uid or "",
                               frame=m.frame_number)
        report.link_measurement(fid, link)
        return f"Measurement linked to {field.label}"
    if fid:
        report.insert_at_cursor(label, source="viewer")
        return f"Measurement inserted into {field.label if field else fid}"
    return None
