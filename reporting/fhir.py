"""FHIR R4 DiagnosticReport for a signed report.

Owns :func:`build_diagnostic_report`: status final (appended for an addendum), category LOINC LP29684-5
"Radiology", code = procedure (or 18748-4), subject by patient identifier, effective = study date, issued = signing
time, resultsInterpreter = the reader, imagingStudy by Study Instance UID, conclusion = impression, presentedForm =
the PDF and the plain text, identifier = the SR's SOP Instance UID. Validated with ``fhir.resources`` R4B models
(the package has no plain-R4 module; R4B's DiagnosticReport is the same shape - see standards.md).
"""
from __future__ import annotations

import base64
import datetime as _dt

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from .model import Report

LOINC = "http://loinc.org"
DICOM_UID_SYSTEM = "urn:dicom:uid"
# fhir.resources checks structure and types but not this required value set, so we do
STATUSES = {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled",
            "entered-in-error", "unknown"}


def _effective(study_date: str, study_time: str) -> str | None:
    if len(study_date) != 8:
        return None
    d = f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"
    if len(study_time) >= 6:
        return f"{d}T{study_time[:2]}:{study_time[2:4]}:{study_time[4:6]}Z"
    return d


def build_diagnostic_report(report: Report, *, sr_sop_instance_uid: str, signed_at: str, reader_id: str,
                            reader_name: str, pdf: bytes | None = None, status: str | None = None) -> dict:
    """The DiagnosticReport as a JSON-ready dict, validated (raises pydantic's ValidationError if not)."""
    s = report.study
    proc = report.template.procedure
    code = ({"system": LOINC, "code": proc.value, "display": proc.meaning} if proc and proc.scheme == "LN"
            else {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"})
    issued = _dt.datetime.fromisoformat(signed_at).isoformat()
    text = report.render_text()
    forms = [{"contentType": "text/plain; charset=utf-8", "language": report.template.language,
              "data": base64.b64encode(text.encode("utf-8")).decode(), "title": report.template.title}]
    if pdf is not None:
        forms.insert(0, {"contentType": "application/pdf", "data": base64.b64encode(pdf).decode(),
                         "title": report.template.title + ".pdf"})
    resource = {
        "resourceType": "DiagnosticReport",
        "id": sr_sop_instance_uid.replace(".", "-")[-64:],
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{sr_sop_instance_uid}"}],
        "status": status or ("appended" if report.is_addendum else "final"),
        "category": [{"coding": [{"system": LOINC, "code": "LP29684-5", "display": "Radiology"}]}],
        "code": {"coding": [code], "text": report.template.title},
        "subject": {"identifier": {"system": f"urn:readroom:issuer:{s.issuer_of_patient_id or 'local'}",
                                   "value": s.patient_id or "unknown"}},
        "issued": issued,
        "resultsInterpreter": [{"identifier": {"system": "urn:readroom:reader", "value": reader_id},
                                "display": reader_name.replace("^", " ")}],
        "imagingStudy": [{"identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{s.study_uid}"},
                          "display": s.description or report.template.title}],
        "conclusion": report.impression() or None,
        "presentedForm": forms,
    }
    if s.accession_number:
        resource["identifier"].append({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                             "code": "ACSN"}]}, "value": s.accession_number})
    eff = _effective(s.study_date, s.study_time)
    if eff:
        resource["effectiveDateTime"] = eff
    resource = {k: v for k, v in resource.items() if v is not None}
    if resource["status"] not in STATUSES:
        raise ValueError(f"DiagnosticReport.status {resource['status']!r} is not in the R4 value set")
    DiagnosticReport.model_validate(resource)
    return resource
