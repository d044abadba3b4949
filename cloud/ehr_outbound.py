"""The reference cloud's report path to the clinic's EHR: FHIR DiagnosticReport + HL7 v2.5.1 ORU^R01 per stored
report SR.

Owns :func:`handle_stored_sr`, called by the change follower for every SR instance Orthanc stores. It works from
the SR dataset alone (the cloud shares no code with the workstation: they meet only through DICOM): for a
VERIFIED Basic Diagnostic Imaging Report (TID 2000, document title LOINC 18748-4 or the TID 2000 template id) it
reads the patient/study identity, the verifying observer, the procedure code, the section texts and the impression,
and writes ``<SOP Instance UID>.diagnosticreport.json`` (FHIR R4 DiagnosticReport, validated with fhir.resources'
R4B models, report text as presentedForm, ImagingStudy referenced by Study Instance UID) and
``<SOP Instance UID>.oru.hl7`` (ORU^R01, validated with hl7apy STRICT; OBR-25/OBX-11 "F"; "C" for an addendum
(an SR with an Addendum section); "P" / FHIR "preliminary" for a PRELIMINARY, unverified report). Other SRs
(measurements, peer reviews, unverified non-preliminary documents) are ignored. Writes are atomic and repeatable:
storing the same SR twice rewrites the same two files. With a FHIR endpoint configured (argument, or the
``READROOM_CLOUD_FHIR_ENDPOINT`` environment variable) the DiagnosticReport is also PUT there (update-as-create,
so repeats are harmless); if that fails the files remain the record.
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import os
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

REPORT_TITLES = {("18748-4", "LN")}
TEMPLATE_ID = "2000"
IMPRESSION_CODES = {"19005-8", "121072", "121073"}
ADDENDUM_CODES = {"121078", "55107-7"}
PROCEDURE_REPORTED = "121058"
LOINC = "http://loinc.org"
DICOM_UID_SYSTEM = "urn:dicom:uid"
_ESC = [("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")]


def _s(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword)
    return "" if v is None else str(v)


def is_report_sr(ds: Dataset) -> bool:
    try:
        title = ds.ConceptNameCodeSequence[0]
    except (AttributeError, IndexError):
        return False
    templ = [t.get("TemplateIdentifier") for t in ds.get("ContentTemplateSequence", [])]
    return (title.CodeValue, title.CodingSchemeDesignator) in REPORT_TITLES or TEMPLATE_ID in templ


def _sections(ds: Dataset) -> list[tuple[str, str, list[str]]]:
    """[(code value, code meaning, [texts])] for each CONTAINS CONTAINER with TEXT children."""
    out = []
    for item in ds.get("ContentSequence", []):
        if item.ValueType != "CONTAINER" or item.get("RelationshipType") != "CONTAINS":
            continue
        texts = [c.TextValue for c in item.get("ContentSequence", []) if c.ValueType == "TEXT"]
        if texts:
            code = item.ConceptNameCodeSequence[0]
            out.append((code.CodeValue, code.CodeMeaning, texts))
    return out


def _procedure(ds: Dataset) -> tuple[str, str, str] | None:
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeValue == PROCEDURE_REPORTED:
            c = item.ConceptCodeSequence[0]
            return c.CodeValue, c.CodeMeaning, c.CodingSchemeDesignator
    return None


def _verification(ds: Dataset) -> tuple[str, str]:
    obs = ds.get("VerifyingObserverSequence")
    if not obs:
        return "", ""
    return str(obs[0].get("VerifyingObserverName", "")), str(obs[0].get("VerificationDateTime", ""))


def _iso(dicom_dt: str) -> str:
    d = dicom_dt.split(".")[0].split("+")[0].split("-")[0]
    try:
        when = _dt.datetime.strptime(d[:14].ljust(14, "0"), "%Y%m%d%H%M%S")
    except ValueError:
        when = _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    return when.replace(tzinfo=_dt.UTC).isoformat()


def is_preliminary(ds: Dataset) -> bool:
    return _s(ds, "PreliminaryFlag") == "PRELIMINARY" and _s(ds, "VerificationFlag") != "VERIFIED"


def is_addendum(ds: Dataset) -> bool:
    """An addendum carries an Addendum section; a final report that supersedes a preliminary one only has a
    Predecessor Documents Sequence."""
    return any(code in ADDENDUM_CODES for code, _m, _t in _sections(ds))


def report_text(ds: Dataset) -> str:
    return "\n\n".join(f"{meaning.upper()}:\n" + "\n".join(texts) for _c, meaning, texts in _sections(ds)) + "\n"


def build_fhir(ds: Dataset) -> dict:
    sections = _sections(ds)
    reader, verified = _verification(ds)
    proc = _procedure(ds)
    code = ({"system": LOINC, "code": proc[0], "display": proc[1]} if proc and proc[2] == "LN"
            else {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"})
    impression = "\n".join(t for c, _m, ts in sections if c in IMPRESSION_CODES for t in ts)
    text = report_text(ds)
    res = {
        "resourceType": "DiagnosticReport",
        "id": str(ds.SOPInstanceUID).replace(".", "-")[-64:],
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{ds.SOPInstanceUID}"}],
        "status": "preliminary" if is_preliminary(ds) else ("appended" if is_addendum(ds) else "final"),
        "category": [{"coding": [{"system": LOINC, "code": "LP29684-5", "display": "Radiology"}]}],
        "code": {"coding": [code]},
        "subject": {"identifier": {"system": f"urn:readroom:issuer:{_s(ds, 'IssuerOfPatientID') or 'local'}",
                                   "value": _s(ds, "PatientID") or "unknown"}},
        "issued": _iso(verified or (_s(ds, "ContentDate") + _s(ds, "ContentTime"))),
        "resultsInterpreter": [{"display": reader.replace("^", " ")}] if reader else None,
        "imagingStudy": [{"identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{ds.StudyInstanceUID}"}}],
        "conclusion": impression or None,
        "presentedForm": [{"contentType": "text/plain; charset=utf-8",
                           "data": base64.b64encode(text.encode("utf-8")).decode()}],
    }
    if _s(ds, "AccessionNumber"):
        res["identifier"].append({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                        "code": "ACSN"}]}, "value": _s(ds, "AccessionNumber")})
    study_date = _s(ds, "StudyDate")
    if len(study_date) == 8:
        res["effectiveDateTime"] = f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"
    res = {k: v for k, v in res.items() if v is not None}
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    DiagnosticReport.model_validate(res)
    return res


def _esc(text: str) -> str:
    for a, b in _ESC:
        text = text.replace(a, b)
    return text.replace("\r", " ").replace("\n", " ")


def build_oru(ds: Dataset) -> str:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.core import Message

    reader, verified = _verification(ds)
    status = "P" if is_preliminary(ds) else ("C" if is_addendum(ds) else "F")
    ts = _dt.datetime.fromisoformat(_iso(verified or (_s(ds, "ContentDate") + _s(ds, "ContentTime")))
                                    ).strftime("%Y%m%d%H%M%S")
    m = Message("ORU_R01", version="2.5.1", validation_level=VALIDATION_LEVEL.STRICT)
    m.msh.msh_3 = "READROOM-CLOUD"
    m.msh.msh_4 = "READROOM"
    m.msh.msh_5 = "EHR"
    m.msh.msh_6 = "CLINIC"
    m.msh.msh_7 = ts
    m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_10 = _esc(str(ds.SOPInstanceUID))[-20:]
    m.msh.msh_11 = "P"
    m.msh.msh_12 = "2.5.1"
    pr = m.add_group("ORU_R01_PATIENT_RESULT")
    pid = pr.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    pid.pid_3 = f"{_esc(_s(ds, 'PatientID') or 'UNKNOWN')}^^^{_esc(_s(ds, 'IssuerOfPatientID') or 'READROOM')}"
    name = _s(ds, "PatientName")
    pid.pid_5 = "^".join(_esc(p) for p in name.split("^")[:2]) if name else "UNKNOWN"
    if len(_s(ds, "PatientBirthDate")) == 8:
        pid.pid_7 = _s(ds, "PatientBirthDate")
    if _s(ds, "PatientSex") in ("M", "F", "O", "U"):
        pid.pid_8 = _s(ds, "PatientSex")
    oo = pr.add_group("ORU_R01_ORDER_OBSERVATION")
    oo.orc.orc_1 = "RE"
    oo.orc.orc_5 = "CM"
    acc = _esc(_s(ds, "AccessionNumber"))
    oo.obr.obr_1 = "1"
    if acc:
        oo.orc.orc_2 = acc
        oo.orc.orc_3 = acc
        oo.obr.obr_2 = acc
        oo.obr.obr_3 = acc
    proc = _procedure(ds)
    oo.obr.obr_4 = (f"{_esc(proc[0])}^{_esc(proc[1])}^{'LN' if proc[2] == 'LN' else _esc(proc[2])}" if proc
                    else "18748-4^Diagnostic imaging study^LN")
    if len(_s(ds, "StudyDate")) == 8:
        oo.obr.obr_7 = _s(ds, "StudyDate") + _s(ds, "StudyTime").split(".")[0][:6]
    oo.obr.obr_22 = ts
    oo.obr.obr_24 = "RAD"
    oo.obr.obr_25 = status
    if reader:
        fam, _, given = reader.partition("^")
        oo.obr.obr_32 = f"&{_esc(fam)}&{_esc(given.split('^')[0])}"
    rows = []
    for code, meaning, texts in _sections(ds):
        scheme = "LN" if "-" in code else "DCM"
        for t in texts:
            for line in t.splitlines() or [""]:
                rows.append((f"{_esc(code)}^{_esc(meaning)}^{scheme}", "", line))
    rows.append(("110180^Study Instance UID^DCM", "STUDY", str(ds.StudyInstanceUID)))
    rows.append(("SRUID^Report SR SOP Instance UID^99READROOM", "SR", str(ds.SOPInstanceUID)))
    for i, (code, sub, value) in enumerate(rows, start=1):
        obx = oo.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(i)
        obx.obx_2 = "ST" if sub else "TX"
        obx.obx_3 = code
        if sub:
            obx.obx_4 = sub
        obx.obx_5 = _esc(value)
        obx.obx_11 = status
        obx.obx_14 = ts
    m.validate()
    return m.to_er7()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


FHIR_ENDPOINT_ENV = "READROOM_CLOUD_FHIR_ENDPOINT"


def post_fhir(resource: dict, endpoint: str, timeout: float = 10.0) -> bool:
    """PUT the DiagnosticReport to ``<endpoint>/DiagnosticReport/<id>`` (an update-as-create: repeating it is
    harmless). Basic auth may be given in the URL. True on 200/201; failures are logged, the outbound files stay."""
    import requests

    url = f"{endpoint.rstrip('/')}/DiagnosticReport/{resource['id']}"
    try:
        r = requests.put(url, data=json.dumps(resource), timeout=timeout,
                         headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    except requests.RequestException as exc:
        log.warning("FHIR endpoint not reachable (%s); the report stays in the outbound folder", type(exc).__name__)
        return False
    if r.status_code not in (200, 201):
        log.warning("FHIR endpoint answered HTTP %s; the report stays in the outbound folder", r.status_code)
        return False
    return True


def handle_stored_sr(dataset: Dataset, outbound_dir: Path, fhir_endpoint: str | None = None) -> list[Path]:
    """Write the FHIR DiagnosticReport and HL7 ORU for a stored, verified report SR; other SRs -> [].

    With ``fhir_endpoint`` (or the ``READROOM_CLOUD_FHIR_ENDPOINT`` environment variable) the DiagnosticReport is
    also PUT to that FHIR server; the files are written first either way."""
    if not is_report_sr(dataset):
        return []
    if _s(dataset, "VerificationFlag") != "VERIFIED" and not is_preliminary(dataset):
        log.info("an unverified, non-preliminary report SR was stored; nothing sent to the EHR")
        return []
    outbound_dir = Path(outbound_dir)
    outbound_dir.mkdir(parents=True, exist_ok=True)
    uid = str(dataset.SOPInstanceUID)
    fhir_path = outbound_dir / f"{uid}.diagnosticreport.json"
    hl7_path = outbound_dir / f"{uid}.oru.hl7"
    resource = build_fhir(dataset)
    _atomic_write(fhir_path, json.dumps(resource, indent=2).encode("utf-8"))
    _atomic_write(hl7_path, build_oru(dataset).encode("utf-8"))
    endpoint = fhir_endpoint or os.environ.get(FHIR_ENDPOINT_ENV)
    if endpoint:
        post_fhir(resource, endpoint)
    log.info("EHR outbound written for report SR %s", uid)
    return [fhir_path, hl7_path]
