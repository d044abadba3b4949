"""DICOM SR writer and reader for signed reports (TID 2000 Basic Diagnostic Imaging Report).

Owns :func:`build_report_sr`: an Enhanced SR built with highdicom's generic content items (highdicom has no TID 2000
class): root CONTAINER titled from CID 7000 with TID 1204 language, TID 1001 observation context (the reader) and
"Procedure reported"; one CONTAINER per report section titled with the section's code (CID 7001); TEXT items (TID
2002 report narrative, concept from CID 7002) holding the printed field text; linked measurements as NUM items
INFERRED FROM the image they were made on; key images as IMAGE items; critical-result communication as TEXT under
"Results communicated"; an addendum as an "Addendum" section plus Predecessor Documents Sequence. CompletionFlag
COMPLETE, VerificationFlag VERIFIED and VerifyingObserverSequence naming the reader.
:func:`narrative_from_sr` reads the section texts back for comparison with the report.
"""
from __future__ import annotations

import datetime as _dt

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from .model import Report
from .templates import Code

ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
MANUFACTURER = "ReadRoom"
ADDENDUM_CODE = Code("121078", "DCM", "Addendum")
RESULTS_COMMUNICATED = Code("121291", "DCM", "Results communicated")
KEY_IMAGES = Code("121180", "DCM", "Key Images")

# section code -> CID 7002 concept for the narrative TEXT items in it
_NARRATIVE_CONCEPT = {
    "55752-0": codes.DCM.History,              # clinical information
    "121060": codes.DCM.History,
    "18834-2": codes.DCM.PreviousFinding,      # comparison
    "55111-9": codes.DCM.ProcedureDescription,  # technique / current procedure
    "121064": codes.DCM.ProcedureDescription,
    "59776-5": codes.DCM.Finding,
    "121070": codes.DCM.Finding,
    "19005-8": codes.DCM.Impression,
    "121072": codes.DCM.Impression,
    "18783-1": codes.DCM.Recommendation,
    "121074": codes.DCM.Recommendation,
}
# single-frame image storage classes: a Referenced Frame Number is not allowed for these
_SINGLE_FRAME = {"1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1",
                 "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.3", "1.2.840.10008.5.1.4.1.1.2",
                 "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.7",
                 "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.20"}
_UCUM_MEANING = {"mm": "millimeter", "cm": "centimeter", "ml": "milliliter", "mL": "milliliter", "[hnsf'U]": "HU"}


def _cc(code: Code) -> CodedConcept:
    return CodedConcept(code.value, code.scheme, code.meaning)


def _evidence(report: Report) -> tuple[list[Dataset], bool]:
    """Evidence datasets (one per study instance), and whether they are real instances or just a study stub."""
    s = report.study
    refs = list(s.instances)
    for k in report.key_images:
        if k.image not in refs:
            refs.append(k.image)
    for link in report.measurements.values():
        if link.sop_instance_uid and all(r.sop_instance_uid != link.sop_instance_uid for r in refs):
            from .model import InstanceRef
            refs.append(InstanceRef(link.series_uid, link.sop_class_uid, link.sop_instance_uid))
    real = bool(refs)
    if not refs:
        from .model import InstanceRef
        refs = [InstanceRef(generate_uid(), "1.2.840.10008.5.1.4.1.1.7", generate_uid())]
    out = []
    for r in refs:
        ds = Dataset()
        ds.StudyInstanceUID = s.study_uid
        ds.SeriesInstanceUID = r.series_uid
        ds.SOPClassUID = r.sop_class_uid
        ds.SOPInstanceUID = r.sop_instance_uid
        ds.PatientID = s.patient_id or None
        ds.IssuerOfPatientID = s.issuer_of_patient_id or None
        ds.PatientName = s.patient_name or None
        ds.PatientBirthDate = s.patient_birth_date or None
        ds.PatientSex = s.patient_sex or None
        ds.AccessionNumber = s.accession_number or None
        ds.StudyID = s.study_id or None
        ds.StudyDate = s.study_date or None
        ds.StudyTime = s.study_time or None
        ds.ReferringPhysicianName = s.referring_physician or None
        out.append(ds)
    return out, real


def dicom_pn(name: str) -> str:
    """A person name in DICOM PN form; a single word becomes the family name ("reader1" -> "reader1^")."""
    name = name.strip() or "Unknown"
    return name if "^" in name else name + "^"


def _frames(sop_class_uid: str, frame: int | None) -> int | None:
    return None if frame is None or sop_class_uid in _SINGLE_FRAME else frame


def _text(name, value: str, rel: str = "CONTAINS"):
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=rel)


def build_report_content(report: Report, reader_name: str, reader_id: str | None = None
                         ) -> hd.sr.ContainerContentItem:
    t = report.template
    root = hd.sr.ContainerContentItem(name=_cc(t.report_title), template_id="2000")
    items = []
    lang = t.language.split("-")
    language = hd.sr.LanguageOfContentItemAndDescendants(
        language=CodedConcept(lang[0], "RFC5646", {"en": "English"}.get(lang[0], lang[0])))
    items.extend(language)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=reader_name,
                                                                                  login_name=reader_id or None))
    items.extend(hd.sr.ObservationContext(observer_person_context=observer))
    if t.procedure is not None:
        items.append(hd.sr.CodeContentItem(name=codes.DCM.ProcedureReported, value=_cc(t.procedure),
                                           relationship_type="HAS CONCEPT MOD"))
    if report.addenda():
        sec = hd.sr.ContainerContentItem(name=_cc(ADDENDUM_CODE), relationship_type="CONTAINS")
        sec.ContentSequence = [_text(_cc(ADDENDUM_CODE), t) for t in report.addenda()]
        items.append(sec)
    for _sid, section, fields in report.section_texts():
        concept = _NARRATIVE_CONCEPT.get(section.code.value, codes.DCM.Finding)
        children = []
        for f, text in fields:
            children.append(_text(concept, text))
            link = report.measurements.get(f.id)
            if link is not None:
                num = hd.sr.NumContentItem(
                    name=_cc(f.code) if f.code else CodedConcept("121206", "DCM", "Distance"),
                    value=link.value,
                    unit=CodedConcept(link.unit, "UCUM", _UCUM_MEANING.get(link.unit, link.unit)),
                    relationship_type="CONTAINS")
                if link.sop_instance_uid:
                    num.ContentSequence = [hd.sr.ImageContentItem(
                        name=codes.DCM.SourceOfMeasurement, referenced_sop_class_uid=link.sop_class_uid,
                        referenced_sop_instance_uid=link.sop_instance_uid,
                        referenced_frame_numbers=_frames(link.sop_class_uid, link.frame),
                        relationship_type="INFERRED FROM")]
                children.append(num)
        sec = hd.sr.ContainerContentItem(name=_cc(section.code), relationship_type="CONTAINS")
        sec.ContentSequence = children
        items.append(sec)
    if report.key_images:
        sec = hd.sr.ContainerContentItem(name=_cc(KEY_IMAGES), relationship_type="CONTAINS")
        sec.ContentSequence = [
            hd.sr.ImageContentItem(name=_cc(KEY_IMAGES), referenced_sop_class_uid=k.image.sop_class_uid,
                                   referenced_sop_instance_uid=k.image.sop_instance_uid,
                                   referenced_frame_numbers=_frames(k.image.sop_class_uid, k.frame),
                                   relationship_type="CONTAINS")
            for k in report.key_images]
        items.append(sec)
    if report.critical_results:
        sec = hd.sr.ContainerContentItem(name=_cc(RESULTS_COMMUNICATED), relationship_type="CONTAINS")
        sec.ContentSequence = [_text(codes.DCM.Finding, cr.text()) for cr in report.critical_results]
        items.append(sec)
    root.ContentSequence = items
    return root


def build_report_sr(report: Report, *, reader_name: str, organization: str, verified_at: str | None = None,
                    series_uid: str | None = None, sop_instance_uid: str | None = None, series_number: int = 900,
                    instance_number: int = 1, predecessor_datasets: list[Dataset] | None = None,
                    reader_id: str | None = None, preliminary: bool = False) -> Dataset:
    """The signed report as an Enhanced SR (TID 2000), COMPLETE and VERIFIED by ``reader_name`` (DICOM PN).

    ``preliminary``: a preliminary ("wet read") report instead: PreliminaryFlag PRELIMINARY, UNVERIFIED."""
    reader_name = dicom_pn(reader_name)
    content = build_report_content(report, reader_name, reader_id)
    evidence, real = _evidence(report)
    sr = hd.sr.EnhancedSR(
        evidence=evidence, content=content,
        series_instance_uid=series_uid or generate_uid(), series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(), instance_number=instance_number,
        manufacturer=MANUFACTURER, is_complete=True, is_final=not preliminary, is_verified=not preliminary,
        institution_name=report.study.institution or None,
        verifying_observer_name=None if preliminary else reader_name,
        verifying_organization=None if preliminary else (organization or "ReadRoom"),
        performed_procedure_codes=[_cc(report.template.procedure)] if report.template.procedure else None,
        previous_versions=predecessor_datasets,
    )
    if not real:
        del sr.CurrentRequestedProcedureEvidenceSequence
    if report.study.issuer_of_patient_id:
        sr.IssuerOfPatientID = report.study.issuer_of_patient_id
    if verified_at:
        stamp_signing_time(sr, verified_at, preliminary=preliminary)
    kind = "Preliminary report: " if preliminary else ("Addendum: " if report.is_addendum else "Report: ")
    sr.SeriesDescription = kind + report.template.title
    return sr


def signing_time_values(verified_at: str) -> dict[str, str]:
    """The SR's values for the time of signing (ISO ``verified_at``): Content Date, Content Time and the
    verifying observer's Verification DateTime, as DICOM text."""
    when = _dt.datetime.fromisoformat(verified_at)
    return {"content_date": when.strftime("%Y%m%d"), "content_time": when.strftime("%H%M%S"),
            "verification": when.strftime("%Y%m%d%H%M%S")}


def stamp_signing_time(sr: Dataset, verified_at: str, *, preliminary: bool = False) -> None:
    """Set the time of signing (ISO ``verified_at``) on a report SR: Content Date/Time and, unless preliminary,
    the Verification DateTime of its verifying observer - the attributes of the SR that depend on when it was
    signed (besides its UIDs and creation times)."""
    v = signing_time_values(verified_at)
    if not preliminary:
        sr.VerifyingObserverSequence[0].VerificationDateTime = v["verification"]
    sr.ContentDate, sr.ContentTime = v["content_date"], v["content_time"]


def predecessor_dataset(study_uid: str, series_uid: str, sop_class_uid: str, sop_instance_uid: str,
                        patient: Dataset | None = None) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


LOGIN_NAME = "128774"  # DCM "Person Observer's Login Name" (TID 1003)


def reader_login(ds: Dataset) -> str | None:
    """The signing reader's login id from the SR's observation context (TID 1003), if recorded."""
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == LOGIN_NAME:
            return str(item.TextValue)
    return None


def _code_of(item: Dataset) -> str:
    return item.ConceptNameCodeSequence[0].CodeValue


def narrative_from_sr(ds: Dataset) -> list[tuple[str, list[str]]]:
    """[(section code value, [TEXT values in order]), ...] read from a report SR."""
    out = []
    for item in ds.ContentSequence:
        if item.ValueType != "CONTAINER" or item.RelationshipType != "CONTAINS":
            continue
        texts = [c.TextValue for c in getattr(item, "ContentSequence", []) if c.ValueType == "TEXT"]
        if texts:
            out.append((_code_of(item), texts))
    return out


def narrative_from_report(report: Report) -> list[tuple[str, list[str]]]:
    """The same structure as :func:`narrative_from_sr`, computed from the report model."""
    out = []
    if report.addenda():
        out.append((ADDENDUM_CODE.value, report.addenda()))
    for _sid, section, fields in report.section_texts():
        out.append((section.code.value, [text for _f, text in fields]))
    if report.critical_results:
        out.append((RESULTS_COMMUNICATED.value, [cr.text() for cr in report.critical_results]))
    return out


def text_from_sr(ds: Dataset) -> str:
    return "\n\n".join("\n".join(texts) for _code, texts in narrative_from_sr(ds))


def text_from_report(report: Report) -> str:
    return "\n\n".join("\n".join(texts) for _code, texts in narrative_from_report(report))
