"""Sign a report and hand it to the outbox: the one code path used by the GUI and the CLI.

Owns :func:`sign_report` (validate -> sign the canonical content with the reader's key -> build the SR, PDF,
FHIR DiagnosticReport and HL7 ORU -> write them durably to the outbox -> mark the report final -> drop the draft),
:func:`sign_addendum` (the same for an addendum, whose SR references its predecessor), :class:`SignedRecord`
(what was signed, the signature, and the SR's identity) and :func:`verify_record` / :func:`verify_sr` (is the
record untouched and does this SR say exactly what was signed). :func:`prepare_sr` builds the SR ahead of the
signature (the GUI runs it while the reader types the PIN): signing then only writes the time into it, which takes
highdicom's ~30-40 ms off the reader's wait; it is used only for unchanged content.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from cloud_client import paths
from cloud_client.vault import default_vault

from . import signing
from .drafts import DraftStore
from .fhir import build_diagnostic_report
from .hl7 import build_oru
from .model import Person, PriorDocument, Report, ReportState, now_iso
from .outbox import Outbox, OutboxItem, SopRef, _dcm_bytes
from .pdf import render_pdf
from .sr import (
    ENHANCED_SR,
    build_report_sr,
    narrative_from_report,
    narrative_from_sr,
    predecessor_dataset,
    signing_time_values,
)
from .templates import TemplateLibrary
from .validation import ValidationResult, validate

log = logging.getLogger(__name__)


class ValidationFailed(Exception):
    """The report has errors that block signing (``result`` lists them)."""

    def __init__(self, result: ValidationResult) -> None:
        super().__init__("The report cannot be signed yet:\n" + result.summary())
        self.result = result


class NeedsConfirmation(Exception):
    """The report has warnings the reader must confirm (sign again with ``accept_warnings=True``)."""

    def __init__(self, result: ValidationResult) -> None:
        super().__init__("Please check before signing:\n" + result.summary())
        self.result = result


@dataclass
class SignedRecord:
    """What a reader signed: the content (incl. the SR narrative), the study identity, the signature, the SR."""

    content: dict
    study_identity: dict
    signature: signing.Signature
    sr: dict  # study_uid, series_uid, sop_class_uid, sop_instance_uid

    def to_dict(self) -> dict:
        return {"content": self.content, "study_identity": self.study_identity,
                "signature": self.signature.to_dict(), "sr": self.sr}

    @classmethod
    def from_dict(cls, d: dict) -> SignedRecord:
        return cls(d["content"], d["study_identity"], signing.Signature.from_dict(d["signature"]), d["sr"])

    def prior_document(self) -> PriorDocument:
        return PriorDocument(self.sr["study_uid"], self.sr["series_uid"], self.sr["sop_class_uid"],
                             self.sr["sop_instance_uid"])

    def report(self, library: TemplateLibrary | None = None) -> Report:
        """The signed report, rebuilt as a FINAL model (e.g. to start an addendum)."""
        d = dict(self.content)
        d.update(state="final", history=[], focus_field=None, cursor=0)
        r = Report.from_dict(d, library)
        r.state = ReportState.FINAL
        return r


@dataclass
class SignResult:
    record: SignedRecord
    outbox_item: OutboxItem
    warnings: list


def verify_record(record: SignedRecord, trusted_public_key: str | None = None) -> bool:
    return signing.verify(record.content, record.study_identity, record.signature, trusted_public_key)


def verify_sr(ds: Dataset, record: SignedRecord, trusted_public_key: str | None = None) -> bool:
    """True when the record's signature is valid and the SR is the signed one and says exactly what was signed."""
    if not verify_record(record, trusted_public_key):
        return False
    if ds.SOPInstanceUID != record.sr["sop_instance_uid"] or ds.StudyInstanceUID != record.study_identity["study_uid"]:
        return False
    got = [[code, texts] for code, texts in narrative_from_sr(ds)]
    return got == record.content["narrative"]


def _predecessors(report: Report) -> list[Dataset] | None:
    """The SRs the report's SR supersedes: an addendum's predecessor, or the preliminary SR of a final report."""
    p = report.predecessor if report.is_addendum else report.preliminary_sr
    if p is None:
        return None
    return [predecessor_dataset(p.study_uid, p.series_uid, p.sop_class_uid, p.sop_instance_uid)]


def _sr_key(report: Report, reader: Person, organization: str, content: dict | None = None) -> str:
    """A digest of everything :func:`build_report_sr` makes the SR from (the report content - which includes its
    study, template, predecessor and preliminary SR - the reader and the organisation), except the signing time.
    ``content``: the report's ``content_for_signing()`` when the caller already has it."""
    d = content if content is not None else report.content_for_signing()
    blob = json.dumps([d, report.is_addendum, reader.name, reader.user_id, organization], sort_keys=True,
                      default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# Where the time of signing goes in a prepared SR: placeholders as wide as the values signing writes there.
_SLOT_TAGS = {  # name -> (tag, placeholder); nested ones are looked up in their sequence's items
    "content_date": (0x00080023, "19000101"), "content_time": (0x00080033, "000000"),
    "created_date": (0x00080012, "19000101"), "created_time": (0x00080013, "000000.000000"),
    "verification": (0x0040A030, "19000101000000"), "contribution": (0x0018A002, "19000101000000.000000"),
}


@dataclass
class PreparedSR:
    """A report's SR built ahead of its signature - the GUI does this while the reader types the PIN - by the same
    highdicom code as at signing, with its own UIDs, encoded with placeholders where the time of signing goes.
    :func:`sign_report` / :func:`sign_addendum` use it only when the report, reader and organisation are unchanged
    (same ``key``), and then only write the times into those places (:meth:`signed`): the SR is the one a build at
    signing gives (tests/unit/test_report_prepared_sr.py). Single use."""

    key: str
    series_uid: str
    sop_uid: str
    part10: bytes
    slots: dict[str, list[tuple[int, int]]]  # name -> [(offset of the value, its encoded width)]
    used: bool = False

    def signed(self, signed_at: str) -> bytes:
        """The SR signed at ``signed_at`` (ISO): Content Date/Time and Verification DateTime as
        :func:`~reporting.sr.stamp_signing_time` sets them; Instance Creation and Contribution DateTime: now,
        as highdicom sets them when it builds an SR."""
        now = _dt.datetime.now()
        values = {**signing_time_values(signed_at), "created_date": now.strftime("%Y%m%d"),
                  "created_time": now.strftime("%H%M%S.%f"), "contribution": now.strftime("%Y%m%d%H%M%S.%f")}
        buf = bytearray(self.part10)
        for name, places in self.slots.items():
            value = values[name].encode("ascii")
            for offset, width in places:
                buf[offset: offset + width] = value.ljust(width)  # DICOM pads text to even length with a space
        return bytes(buf)


def _slots(part10: bytes) -> dict[str, list[tuple[int, int]]] | None:
    """Offsets and widths of the placeholders in an encoded prepared SR; None if one is not where it should be."""
    ds = pydicom.dcmread(io.BytesIO(part10))
    found: dict[str, list[tuple[int, int]]] = {}
    nested = {"verification": 0x0040A073, "contribution": 0x0018A001}  # Verifying Observer, Contributing Equipment
    base = {}  # where each sequence's value starts: its items' offsets are counted from there
    for name, seq_tag in nested.items():
        raw = ds.get_item(seq_tag)
        base[name] = getattr(raw, "value_tell", None) if raw is not None else None
    for name, (tag, placeholder) in _SLOT_TAGS.items():
        start = base.get(name, 0)
        if start is None:
            continue
        holders = list(ds[nested[name]].value) if name in nested else [ds]
        for holder in holders:
            raw = holder.get_item(tag)
            if raw is None:
                continue
            offset, width = getattr(raw, "value_tell", None), getattr(raw, "length", None)
            if offset is None or width is None or width < len(placeholder):
                return None
            offset += start
            if part10[offset: offset + width].rstrip(b" ") != placeholder.encode():
                return None
            found.setdefault(name, []).append((offset, width))
    if any(n not in found for n in ("content_date", "content_time", "verification")):
        return None
    return found


def prepare_sr(report: Report, reader: Person, *, organization: str = "") -> PreparedSR | None:
    """Build the report's SR now, for a signature that follows (see :class:`PreparedSR`). None when the report
    changed while it was being built (another thread edited it); signing then builds the SR itself."""
    key = _sr_key(report, reader, organization)
    series_uid, sop_uid = generate_uid(), generate_uid()
    sr = build_report_sr(report, reader_name=reader.name, organization=organization, series_uid=series_uid,
                         sop_instance_uid=sop_uid, predecessor_datasets=_predecessors(report),
                         reader_id=reader.user_id)
    for name, (tag, placeholder) in _SLOT_TAGS.items():
        if name == "verification":
            sr.VerifyingObserverSequence[0][tag].value = placeholder
        elif name == "contribution":
            for item in sr.get("ContributingEquipmentSequence", []):
                if tag in item:
                    item[tag].value = placeholder
        elif tag in sr or name.startswith("content"):
            sr.add_new(tag, "DA" if name.endswith("date") else "TM", placeholder)
    part10 = _dcm_bytes(sr)
    slots = _slots(part10)
    if slots is None or _sr_key(report, reader, organization) != key:
        return None
    return PreparedSR(key, series_uid, sop_uid, part10, slots)


def _sign(report: Report, reader: Person, pin: str, *, organization: str, outbox: Outbox | None,
          drafts: DraftStore | None, present_measurement_ids: set[str] | None, accept_warnings: bool,
          predecessor_ds: list[Dataset] | None, kind: str, outputs: bool,
          prepared: PreparedSR | None = None) -> SignResult:
    if not (report.editable or report.is_addendum) or report.state not in (ReportState.DRAFT,
                                                                           ReportState.PRELIMINARY):
        raise signing.SigningError("This report is already signed.")
    result = validate(report, present_measurement_ids)
    if not result.ok:
        raise ValidationFailed(result)
    if result.warnings and not accept_warnings:
        raise NeedsConfirmation(result)
    content = report.content_for_signing()  # one snapshot for the key and the signature
    if prepared is not None and (prepared.used or prepared.key != _sr_key(report, reader, organization, content)):
        prepared = None  # built from other content: not this report's SR
    signed_at = now_iso()
    if prepared is not None:
        series_uid, sop_uid = prepared.series_uid, prepared.sop_uid
    else:
        series_uid, sop_uid = generate_uid(), generate_uid()
    content["narrative"] = [[code, texts] for code, texts in narrative_from_report(report)]
    content["signed_at"] = signed_at
    content["sr_sop_instance_uid"] = sop_uid
    content["organization"] = organization
    identity = report.study.identity()
    signature = signing.sign(reader.user_id, reader.name, pin, content, identity, signed_at)  # asks for the PIN
    if prepared is not None:
        prepared.used = True
        sr_bytes = prepared.signed(signed_at)
    else:
        sr_bytes = _dcm_bytes(build_report_sr(
            report, reader_name=reader.name, organization=organization, verified_at=signed_at, series_uid=series_uid,
            sop_instance_uid=sop_uid, predecessor_datasets=predecessor_ds, reader_id=reader.user_id))
    record = SignedRecord(content, identity, signature,
                          {"study_uid": report.study.study_uid, "series_uid": series_uid, "sop_class_uid": ENHANCED_SR,
                           "sop_instance_uid": sop_uid})
    item = OutboxItem.create_encoded(
        kind, [sr_bytes], [SopRef(ENHANCED_SR, sop_uid, series_uid, report.study.study_uid)],
        workitem_uid=(report.study.workitem_uid or None) if kind == "report" else None, signed=record.to_dict())
    (outbox or Outbox()).enqueue(item)  # durable before any network call
    report.transition(ReportState.FINAL, reader, signed_at)
    try:
        (drafts or DraftStore()).delete(report.study.study_uid)  # the outbox holds it now
    except OSError as exc:  # signed and queued: a draft left behind must not make the signing look failed
        log.warning("The report is signed and queued, but its draft could not be removed (%s)", type(exc).__name__)
    if outputs:
        write_outputs(record, organization)
    return SignResult(record, item, result.warnings)


def sign_report(report: Report, reader: Person, pin: str, *, organization: str = "", outbox: Outbox | None = None,
                drafts: DraftStore | None = None, present_measurement_ids: set[str] | None = None,
                accept_warnings: bool = False, outputs: bool = True, prepared: PreparedSR | None = None
                ) -> SignResult:
    """Validate, sign and queue ``report``. Raises ValidationFailed / NeedsConfirmation / signing.SigningError.

    ``outputs``: also write the PDF / FHIR / HL7 renderings now (:func:`write_outputs`). They are not needed to
    deliver the SR, so a caller in a hurry passes False, wakes the outbox, then calls :func:`write_outputs`.
    ``prepared``: the SR built ahead by :func:`prepare_sr` (ignored unless made from this very content)."""
    if report.is_addendum:
        raise ValueError("an addendum is signed with sign_addendum")
    return _sign(report, reader, pin, organization=organization, outbox=outbox, drafts=drafts,
                 present_measurement_ids=present_measurement_ids, accept_warnings=accept_warnings,
                 predecessor_ds=_predecessors(report), kind="report", outputs=outputs, prepared=prepared)


@dataclass
class PreliminaryResult:
    sr: PriorDocument
    outbox_item: OutboxItem
    warnings: list


def send_preliminary(report: Report, reader: Person, *, organization: str = "", outbox: Outbox | None = None,
                     accept_warnings: bool = False) -> PreliminaryResult:
    """Queue a preliminary ("wet read") SR of the report: PRELIMINARY, UNVERIFIED, no workitem completion, no
    signature. The report stays editable (state preliminary); its final version will name this SR as predecessor.
    May be called again after edits (each call sends a new preliminary SR)."""
    if report.is_addendum or report.state not in (ReportState.DRAFT, ReportState.PRELIMINARY):
        raise signing.SigningError("Only an unsigned report can be sent as preliminary.")
    result = validate(report)
    if not result.ok:
        raise ValidationFailed(result)
    if result.warnings and not accept_warnings:
        raise NeedsConfirmation(result)
    if report.state == ReportState.DRAFT:
        report.transition(ReportState.PRELIMINARY, reader)
    sr = build_report_sr(report, reader_name=reader.name, organization=organization, verified_at=now_iso(),
                         reader_id=reader.user_id, preliminary=True)
    item = OutboxItem.create("preliminary", [sr])
    (outbox or Outbox()).enqueue(item)
    ref = PriorDocument(str(sr.StudyInstanceUID), str(sr.SeriesInstanceUID), str(sr.SOPClassUID),
                        str(sr.SOPInstanceUID))
    report.preliminary_sr = ref
    return PreliminaryResult(ref, item, result.warnings)


def start_addendum(record: SignedRecord, author: Person, library: TemplateLibrary | None = None) -> Report:
    """An addendum to the report signed in ``record``."""
    return record.report(library).start_addendum(author, record.prior_document())


def sign_addendum(addendum: Report, reader: Person, pin: str, *, organization: str = "",
                  outbox: Outbox | None = None, accept_warnings: bool = False,
                  original: Report | None = None, outputs: bool = True, drafts: DraftStore | None = None,
                  prepared: PreparedSR | None = None) -> SignResult:
    """Sign an addendum (made with :func:`start_addendum`); its SR lists the predecessor in the Predecessor
    Documents Sequence. ``original``, if given, moves to AMENDED. ``prepared``: as for :func:`sign_report`."""
    if not addendum.is_addendum:
        raise ValueError("not an addendum")
    result = _sign(addendum, reader, pin, organization=organization, outbox=outbox, drafts=drafts,
                   present_measurement_ids=None, accept_warnings=accept_warnings,
                   predecessor_ds=_predecessors(addendum), kind="addendum", outputs=outputs, prepared=prepared)
    if original is not None and original.state in (ReportState.FINAL, ReportState.AMENDED):
        original.transition(ReportState.AMENDED, reader)
    return result


OUTPUTS_PURPOSE = b"report-output"
OUTPUT_NAMES = ("report.pdf", "diagnosticreport.json", "oru_r01.hl7")


def build_outputs(record: SignedRecord, organization: str = "", library: TemplateLibrary | None = None
                  ) -> dict[str, bytes]:
    """PDF, FHIR DiagnosticReport (JSON) and HL7 ORU^R01 of a signed report, rebuilt from what was signed."""
    report = record.report(library)
    sig = record.signature
    signed_at, sop = record.content["signed_at"], record.sr["sop_instance_uid"]
    pdf = render_pdf(report, reader_name=sig.signer_name, signed_at=signed_at, key_id=sig.key_id,
                     organization=organization or record.content.get("organization", ""))
    fhir = build_diagnostic_report(report, sr_sop_instance_uid=sop, signed_at=signed_at, reader_id=sig.signer,
                                   reader_name=sig.signer_name, pdf=pdf)
    oru = build_oru(report, sr_sop_instance_uid=sop, signed_at=signed_at, reader_id=sig.signer,
                    reader_name=sig.signer_name, message_id=sop[-20:])
    return {"report.pdf": pdf, "diagnosticreport.json": json.dumps(fhir, indent=1).encode(),
            "oru_r01.hl7": oru.encode()}


def _outputs_dir(record: SignedRecord) -> Path:
    name = hashlib.sha256(record.sr["sop_instance_uid"].encode()).hexdigest()[:40]
    return paths.outbox_dir() / "outputs" / name


def write_outputs(record: SignedRecord, organization: str = "") -> dict[str, Path]:
    """Write the renderings encrypted (vault, purpose b"report-output") beside the outbox; returns their paths."""
    out = {}
    vault = default_vault()
    for name, data in build_outputs(record, organization).items():
        path = _outputs_dir(record) / name
        vault.write_file(path, data, OUTPUTS_PURPOSE)
        out[name] = path
    return out


def read_output(record: SignedRecord, name: str) -> bytes:
    """One rendering of a signed report (made now if it was not written yet)."""
    path = _outputs_dir(record) / name
    if not path.exists():
        write_outputs(record)
    return default_vault().read_file(path, OUTPUTS_PURPOSE)


def signed_records(outbox: Outbox | None = None, study_uid: str | None = None) -> list[SignedRecord]:
    """Every signed report/addendum this workstation holds (queued and sent), oldest first."""
    ob = outbox or Outbox()
    out = []
    for item in ob.sent() + ob.items():
        if item.kind in ("report", "addendum") and item.signed:
            rec = SignedRecord.from_dict(item.signed)
            if study_uid is None or rec.study_identity["study_uid"] == study_uid:
                out.append(rec)
    return sorted(out, key=lambda r: r.content["signed_at"])
