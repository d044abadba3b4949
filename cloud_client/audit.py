"""The local, append-only audit trail of user actions, and its export as DICOM audit messages.

Owns ``paths.audit_dir()/audit.jsonl``: one JSON line per event (time UTC, user, action, outcome, study and
workitem UIDs, a short detail without patient data). Each line carries the SHA-256 of the previous line, so a
deleted, reordered or edited line is detected by :meth:`AuditTrail.verify`. Lines are only ever appended
(``O_APPEND`` + fsync, under a file lock shared by processes).

Every action maps to a DICOM PS3.15 A.5 audit message event (see ``EVENTS``) and :func:`to_dicom_xml`
exports events as ``AuditMessage`` XML (the DICOM schema for IHE ATNA). No names or other PHI appear in the
trail or in application logs: objects are identified by UIDs only.
"""
from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from . import paths

SUCCESS = "success"
FAILURE = "failure"  # serious failure: the action did not happen
MINOR_FAILURE = "minor-failure"
MAJOR_FAILURE = "major-failure"
_OUTCOME_CODE = {SUCCESS: "0", MINOR_FAILURE: "4", FAILURE: "8", MAJOR_FAILURE: "12"}

# action -> (EventID code, EventID meaning, EventActionCode, EventTypeCode or None)
EVENTS: dict[str, tuple[str, str, str, tuple[str, str] | None]] = {
    "app-start": ("110100", "Application Activity", "E", ("110120", "Application Start")),
    "app-stop": ("110100", "Application Activity", "E", ("110121", "Application Stop")),
    "sign-in": ("110114", "User Authentication", "E", ("110122", "Login")),
    "sign-out": ("110114", "User Authentication", "E", ("110123", "Logout")),
    "query": ("110112", "Query", "E", None),
    "worklist-query": ("110112", "Query", "E", None),
    "retrieve-begin": ("110102", "Begin Transferring DICOM Instances", "E", None),
    "retrieve": ("110104", "DICOM Instances Transferred", "C", None),
    "store": ("110104", "DICOM Instances Transferred", "R", None),
    "study-opened": ("110103", "DICOM Instances Accessed", "R", None),
    "report-signed": ("110103", "DICOM Instances Accessed", "C", None),
    "report-updated": ("110103", "DICOM Instances Accessed", "U", None),
    "export": ("110106", "Export", "R", None),
    "claim": ("110111", "Procedure Record", "U", None),
    "release": ("110111", "Procedure Record", "U", None),
    "complete": ("110111", "Procedure Record", "U", None),
    "security-alert": ("110113", "Security Alert", "E", None),
    "audit-log-used": ("110101", "Audit Log Used", "R", None),
}


@dataclass
class AuditEvent:
    """One audited action. ``detail`` must never hold patient data."""

    action: str
    user: str
    outcome: str = SUCCESS
    study_uids: list[str] = field(default_factory=list)
    workitem_uid: str | None = None
    sop_count: int | None = None
    detail: str = ""
    time: str = ""
    host: str = ""
    prev: str = ""

    def __post_init__(self) -> None:
        if self.action not in EVENTS:
            raise ValueError(f"unknown audit action {self.action!r}")
        if self.outcome not in _OUTCOME_CODE:
            raise ValueError(f"unknown audit outcome {self.outcome!r}")
        if not self.time:
            self.time = datetime.now(UTC).isoformat(timespec="milliseconds")
        if not self.host:
            self.host = socket.gethostname()


class AuditError(Exception):
    """The audit trail was altered (a line edited, removed or reordered)."""


_GENESIS = "0" * 64


class AuditTrail:
    """Append-only audit file. Safe from several threads and processes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.audit_dir() / "audit.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, action: str, user: str, outcome: str = SUCCESS, *, study_uids: Iterable[str] = (),
               workitem_uid: str | None = None, sop_count: int | None = None, detail: str = "") -> AuditEvent:
        event = AuditEvent(action=action, user=user or "", outcome=outcome, study_uids=list(study_uids),
                           workitem_uid=workitem_uid, sop_count=sop_count, detail=detail)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                event.prev = _last_line_hash(fd)
                line = json.dumps(asdict(event), sort_keys=True, separators=(",", ":")) + "\n"
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return event

    def events(self) -> list[AuditEvent]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                out.append(AuditEvent(**json.loads(line)))
        return out

    def verify(self) -> int:
        """Check the hash chain; returns the number of events. Raises AuditError at the first broken link."""
        prev = _GENESIS
        count = 0
        if not self.path.exists():
            return 0
        for n, line in enumerate(self.path.read_bytes().splitlines(keepends=True), 1):
            if not line.strip():
                continue
            data = json.loads(line)
            if data.get("prev") != prev:
                raise AuditError(f"audit trail broken at line {n}: it does not follow the line before it")
            prev = hashlib.sha256(line).hexdigest()
            count += 1
        return count

    def export_xml(self, out: Path, events: Iterable[AuditEvent] | None = None) -> int:
        """Write events as a sequence of DICOM AuditMessage documents in one XML file; returns the count."""
        evs = list(self.events() if events is None else events)
        root = ET.Element("AuditMessages")
        for ev in evs:
            root.append(to_dicom_xml(ev))
        ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
        return len(evs)


def _last_line_hash(fd: int) -> str:
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return _GENESIS
    # Read backwards until we have the whole last line.
    chunk = 4096
    pos = size
    data = b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
        if data.count(b"\n") >= 2 or pos == 0:
            break
    lines = data.rstrip(b"\n").split(b"\n")
    return hashlib.sha256(lines[-1] + b"\n").hexdigest()


def _code(parent: ET.Element, tag: str, code: str, meaning: str, scheme: str = "DCM") -> ET.Element:
    return ET.SubElement(parent, tag, {"csd-code": code, "codeSystemName": scheme, "originalText": meaning})


def to_dicom_xml(ev: AuditEvent) -> ET.Element:
    """One event as a DICOM PS3.15 A.5 ``AuditMessage`` element."""
    code, meaning, action_code, type_code = EVENTS[ev.action]
    msg = ET.Element("AuditMessage")
    ident = ET.SubElement(msg, "EventIdentification", {
        "EventActionCode": action_code, "EventDateTime": ev.time,
        "EventOutcomeIndicator": _OUTCOME_CODE[ev.outcome]})
    _code(ident, "EventID", code, meaning)
    if type_code:
        _code(ident, "EventTypeCode", *type_code)
    if ev.detail and ev.outcome != SUCCESS:
        ident.set("EventOutcomeDescription", ev.detail)
    ET.SubElement(msg, "ActiveParticipant", {"UserID": ev.user, "UserIsRequestor": "true"})
    app = ET.SubElement(msg, "ActiveParticipant", {
        "UserID": "ReadRoom", "AlternativeUserID": str(os.getpid()), "UserIsRequestor": "false",
        "NetworkAccessPointID": ev.host, "NetworkAccessPointTypeCode": "1"})
    _code(app, "RoleIDCode", "110150", "Application")
    ET.SubElement(msg, "AuditSourceIdentification", {"AuditSourceID": f"ReadRoom@{ev.host}"})
    for uid in ev.study_uids:
        obj = ET.SubElement(msg, "ParticipantObjectIdentification", {
            "ParticipantObjectID": uid, "ParticipantObjectTypeCode": "2", "ParticipantObjectTypeCodeRole": "3"})
        _code(obj, "ParticipantObjectIDTypeCode", "110180", "Study Instance UID")
        if ev.sop_count is not None:
            desc = ET.SubElement(obj, "ParticipantObjectDescription")
            ET.SubElement(desc, "SOPClass", {"UID": "", "NumberOfInstances": str(ev.sop_count)})
    if ev.workitem_uid:
        obj = ET.SubElement(msg, "ParticipantObjectIdentification", {
            "ParticipantObjectID": ev.workitem_uid, "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _code(obj, "ParticipantObjectIDTypeCode", "1.2.840.10008.5.1.4.34.6.1",
              "Unified Procedure Step - Push SOP Class (workitem)", scheme="DICOM UID")
    return msg


def current_os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001  # pragma: no cover - odd platforms
        return ""
