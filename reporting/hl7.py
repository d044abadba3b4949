"""HL7 v2.5.1 ORU^R01 for a signed report.

Owns :func:`build_oru`: MSH, PID, ORC, OBR (placer/filler = accession, procedure code, exam time, result-status
change time, diagnostic service "RAD", result status F - or C for a correction/addendum of a final report -,
principal result interpreter) and one OBX (TX) per printed line with LOINC section codes, an OBX with the Study
Instance UID (DCM 110180) and one with the SR's SOP Instance UID (local code SRUID, 99READROOM).
Built and validated with ``hl7apy`` at STRICT level.
"""
from __future__ import annotations

import datetime as _dt

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message

from .model import Report

_ESC = [("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")]


class HL7Error(ValueError):
    pass


def escape(text: str) -> str:
    for a, b in _ESC:
        text = text.replace(a, b)
    return text.replace("\r", " ").replace("\n", " ")


def _ts(iso: str) -> str:
    return _dt.datetime.fromisoformat(iso).astimezone(_dt.UTC).strftime("%Y%m%d%H%M%S")


def _pn(name: str) -> str:
    parts = (name.split("^") + ["", ""])[:2]
    return "^".join(escape(p) for p in parts).rstrip("^")


def build_oru(report: Report, *, sr_sop_instance_uid: str, signed_at: str, reader_id: str, reader_name: str,
              message_id: str, correction: bool | None = None, sending_facility: str = "READROOM",
              receiving_application: str = "EHR", receiving_facility: str = "CLINIC") -> str:
    """The ORU^R01 message as ER7 text (segments separated by CR), validated STRICT."""
    s = report.study
    status = "C" if (report.is_addendum if correction is None else correction) else "F"
    m = Message("ORU_R01", version="2.5.1", validation_level=VALIDATION_LEVEL.STRICT)
    m.msh.msh_3 = "READROOM"
    m.msh.msh_4 = escape(sending_facility)
    m.msh.msh_5 = escape(receiving_application)
    m.msh.msh_6 = escape(receiving_facility)
    m.msh.msh_7 = _ts(signed_at)
    m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_10 = escape(message_id)[:199]
    m.msh.msh_11 = "P"
    m.msh.msh_12 = "2.5.1"
    pr = m.add_group("ORU_R01_PATIENT_RESULT")
    pid = pr.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    pid.pid_3 = f"{escape(s.patient_id or 'UNKNOWN')}^^^{escape(s.issuer_of_patient_id or 'READROOM')}"
    pid.pid_5 = _pn(s.patient_name) if s.patient_name else "UNKNOWN"  # PID-5 is required
    if len(s.patient_birth_date) == 8:
        pid.pid_7 = s.patient_birth_date
    if s.patient_sex in ("M", "F", "O", "U"):
        pid.pid_8 = s.patient_sex
    oo = pr.add_group("ORU_R01_ORDER_OBSERVATION")
    oo.orc.orc_1 = "RE"
    acc = escape(s.accession_number) if s.accession_number else ""
    if acc:
        oo.orc.orc_2 = acc
        oo.orc.orc_3 = acc
    oo.orc.orc_5 = "CM"
    obr = oo.obr
    obr.obr_1 = "1"
    if acc:
        obr.obr_2 = acc
        obr.obr_3 = acc
    proc = report.template.procedure
    obr.obr_4 = (f"{escape(proc.value)}^{escape(proc.meaning)}^{'LN' if proc.scheme == 'LN' else escape(proc.scheme)}"
                 if proc else f"18748-4^{escape(report.template.title)}^LN")
    if len(s.study_date) == 8:
        obr.obr_7 = s.study_date + (s.study_time[:6] if len(s.study_time) >= 6 else "")
    obr.obr_22 = _ts(signed_at)
    obr.obr_24 = "RAD"
    obr.obr_25 = status
    first, _, given = reader_name.partition("^")
    obr.obr_32 = f"{escape(reader_id)}&{escape(first)}&{escape(given.split('^')[0])}"

    rows: list[tuple[str, str, str]] = []  # (code^text^system, sub-id, value)
    for text in report.addenda():
        for line in text.splitlines():
            rows.append(("55107-7^Addendum^LN", "", line))
    for _sid, section, fields in report.section_texts():
        code = f"{escape(section.code.value)}^{escape(section.code.meaning)}^" \
               f"{'LN' if section.code.scheme == 'LN' else escape(section.code.scheme)}"
        for _f, text in fields:
            for line in text.splitlines():
                rows.append((code, "", line))
    for cr in report.critical_results:
        rows.append(("121291^Results communicated^DCM", "", cr.text()))
    rows.append(("110180^Study Instance UID^DCM", "STUDY", s.study_uid))
    rows.append(("SRUID^Report SR SOP Instance UID^99READROOM", "SR", sr_sop_instance_uid))
    for i, (code, sub, value) in enumerate(rows, start=1):
        obs = oo.add_group("ORU_R01_OBSERVATION")
        obx = obs.obx
        obx.obx_1 = str(i)
        obx.obx_2 = "ST" if sub else "TX"
        obx.obx_3 = code
        if sub:
            obx.obx_4 = sub
        obx.obx_5 = escape(value) if value else ""
        obx.obx_11 = status
        obx.obx_14 = _ts(signed_at)
    if not m.validate():
        raise HL7Error("the ORU^R01 message did not validate")
    return m.to_er7()


def parse_oru(er7: str):
    """Parse and validate (STRICT) an ORU^R01 message; raises on any structural error."""
    msg = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    msg.validate()
    return msg
