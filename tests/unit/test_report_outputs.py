"""Outputs of a signed report: DICOM SR (TID 2000, dciodvfy + dsrdump clean), PDF, FHIR R4 DiagnosticReport,
HL7 v2.5.1 ORU^R01."""
import base64
import shutil
import subprocess

import pydicom
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from reporting.fhir import build_diagnostic_report
from reporting.hl7 import build_oru, escape, parse_oru
from reporting.model import (
    Communication,
    InstanceRef,
    KeyImage,
    MeasurementLink,
    Person,
    PriorDocument,
    Report,
    ReportState,
    StudyContext,
)
from reporting.pdf import render_pdf
from reporting.sr import (
    build_report_sr,
    narrative_from_report,
    narrative_from_sr,
    predecessor_dataset,
    text_from_sr,
)
from reporting.templates import TemplateLibrary

CT = "1.2.840.10008.5.1.4.1.1.2"
SERIES, SOP = "1.2.826.0.1.3680043.8.498.200", "1.2.826.0.1.3680043.8.498.201"
READER = Person("reader1", "One^Reader")
SIGNED_AT = "2026-03-04T10:11:12+00:00"


def rich_report(instances=True):
    study = StudyContext(study_uid="1.2.826.0.1.3680043.8.498.100", patient_id="DEMO-7", issuer_of_patient_id="READROOM-DEMO",
                         patient_name="SYNTHETIC^ABDCT", patient_sex="F", patient_birth_date="19700101",
                         accession_number="ACC123", study_id="7", study_date="20260304", study_time="091500",
                         modality="CT", body_part="ABDOMEN", description="CT ABD/PELVIS", institution="Clinic A",
                         workitem_uid="1.2.826.0.1.3680043.8.498.300",
                         instances=[InstanceRef(SERIES, CT, SOP)] if instances else [])
    r = Report(TemplateLibrary().get("ct-abdomen-pelvis-appendicitis"), study, author=READER)
    r.apply_macro("normal")
    r.set_field("indication", "RLQ pain | fever & raised WBC ^ 2 days")
    r.set_field("appendix", "Acute appendicitis")
    if instances:
        r.link_measurement("appendix_diameter", MeasurementLink("m1", 11.2, "mm", "appendix", SERIES, CT, SOP, 1))
        r.add_key_image(KeyImage(InstanceRef(SERIES, CT, SOP), 1))
    r.set_field("impression", "Acute uncomplicated appendicitis, 11 mm.")
    cr = r.flag_critical("Acute appendicitis", 2, READER)
    r.record_communication(cr, Communication("Dr. Surgeon", "phone", "2026-03-04T10:05:00+00:00", True, "One Reader"))
    return r


needs_dcmtk = pytest.mark.skipif(not (shutil.which("dciodvfy") and shutil.which("dsrdump")),
                                 reason="dciodvfy (dicom3tools) and dsrdump (dcmtk) are not installed")


@needs_dcmtk
@pytest.mark.parametrize("kind", ["with images", "no image references", "addendum", "preliminary"])
def test_sr_passes_dciodvfy_and_dsrdump(tmp_path, kind):
    r = rich_report(kind != "no image references")
    pre = None
    if kind == "addendum":
        r.transition(ReportState.FINAL, READER)
        p = PriorDocument(r.study.study_uid, "1.2.826.0.1.3680043.8.498.400", "1.2.840.10008.5.1.4.1.1.88.22",
                          "1.2.826.0.1.3680043.8.498.401")
        r = r.start_addendum(READER, p)
        r.set_field("addendum", "Diameter re-measured: 12 mm.")
        pre = [predecessor_dataset(p.study_uid, p.series_uid, p.sop_class_uid, p.sop_instance_uid)]
    ds = build_report_sr(r, reader_name=READER.name, organization="ReadRoom Teleradiology", verified_at=SIGNED_AT,
                         reader_id="reader1", predecessor_datasets=pre, preliminary=kind == "preliminary")
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    v = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    out = v.stdout + v.stderr
    assert "Error" not in out, out
    problems = [ln for ln in out.splitlines() if ln.startswith("Warning") and "DICOMDIR" not in ln]
    assert not problems, out
    d = subprocess.run(["dsrdump", "-Ee", str(path)], capture_output=True, text=True, check=False)
    assert d.returncode == 0 and "error" not in (d.stdout + d.stderr).lower(), d.stdout + d.stderr
    assert "Completion Flag     : COMPLETE" in d.stdout
    if kind == "preliminary":
        assert "Verification Flag   : UNVERIFIED" in d.stdout and "Preliminary Flag    : PRELIMINARY" in d.stdout
        return
    assert "Verification Flag   : VERIFIED" in d.stdout
    assert "One^Reader" in d.stdout and '"Person Observer\'s Login Name")="reader1"' in d.stdout
    assert '"Impression"' in d.stdout and '"Procedure Findings"' in d.stdout


def test_sr_structure_is_tid_2000():
    r = rich_report()
    ds = build_report_sr(r, reader_name=READER.name, organization="Org", verified_at=SIGNED_AT)
    ds = pydicom.dcmread(__import__("io").BytesIO(_bytes(ds)))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.22"
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "VERIFIED"
    assert ds.VerifyingObserverSequence[0].VerifyingObserverName == "One^Reader"
    assert ds.VerifyingObserverSequence[0].VerificationDateTime == "20260304101112"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2000"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    assert ds.StudyInstanceUID == r.study.study_uid and ds.PatientID == "DEMO-7"
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert evidence[0].ReferencedSOPInstanceUID == SOP
    # section titles are coded, texts come back exactly
    assert narrative_from_sr(ds) == narrative_from_report(r)
    assert "Impression" in [item.ConceptNameCodeSequence[0].CodeMeaning for item in ds.ContentSequence]
    assert "Acute uncomplicated appendicitis, 11 mm." in text_from_sr(ds)
    findings = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "59776-5")
    num = next(i for i in findings.ContentSequence if i.ValueType == "NUM")
    assert float(num.MeasuredValueSequence[0].NumericValue) == pytest.approx(11.2)
    assert num.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == SOP


def test_addendum_sr_has_predecessor():
    r = rich_report()
    r.transition(ReportState.FINAL, READER)
    prior = PriorDocument(r.study.study_uid, "1.2.826.0.1.3680043.8.498.400", "1.2.840.10008.5.1.4.1.1.88.22",
                          "1.2.826.0.1.3680043.8.498.401")
    a = r.start_addendum(READER, prior)
    a.set_field("addendum", "Correction: diameter is 12 mm.")
    ds = build_report_sr(a, reader_name=READER.name, organization="Org", verified_at=SIGNED_AT,
                         predecessor_datasets=[predecessor_dataset(prior.study_uid, prior.series_uid,
                                                                   prior.sop_class_uid, prior.sop_instance_uid)])
    pre = ds.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pre.ReferencedSOPInstanceUID == prior.sop_instance_uid
    assert narrative_from_sr(ds)[0] == ("121078", ["Correction: diameter is 12 mm."])


def _bytes(ds):
    import io
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_pdf_contains_report_and_signature():
    r = rich_report()
    pdf = render_pdf(r, reader_name=READER.name, signed_at=SIGNED_AT, key_id="abcd1234", organization="Org",
                     compress=False)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert b"Acute uncomplicated appendicitis, 11 mm." in pdf
    assert b"Electronically signed by One Reader" in pdf and b"abcd1234" in pdf
    assert b"CRITICAL RESULT" in pdf
    # non-Latin text falls back to a Unicode font instead of failing
    r2 = rich_report()
    r2.set_field("impression", "급성 충수염")
    assert render_pdf(r2, reader_name="Reader", signed_at=SIGNED_AT).startswith(b"%PDF-")


def test_fhir_diagnostic_report_validates_with_pdf_and_study_reference():
    r = rich_report()
    pdf = render_pdf(r, reader_name=READER.name, signed_at=SIGNED_AT)
    res = build_diagnostic_report(r, sr_sop_instance_uid="1.2.3.4.5", signed_at=SIGNED_AT, reader_id="reader1",
                                  reader_name=READER.name, pdf=pdf)
    model = DiagnosticReport.model_validate(res)
    assert model.status == "final"
    assert model.category[0].coding[0].code == "LP29684-5"
    assert model.code.coding[0].code == "36813-4"
    assert model.imagingStudy[0].identifier.value == "urn:oid:" + r.study.study_uid
    assert model.presentedForm[0].contentType == "application/pdf"
    assert base64.b64decode(res["presentedForm"][0]["data"]) == pdf
    assert base64.b64decode(res["presentedForm"][1]["data"]).decode() == r.render_text()
    assert model.conclusion == "Acute uncomplicated appendicitis, 11 mm."
    assert model.subject.identifier.value == "DEMO-7"
    bad = {k: v for k, v in res.items() if k != "status"}
    with pytest.raises(ValueError):
        DiagnosticReport.model_validate(bad)


def test_hl7_oru_validates_strict_with_final_status_and_escaping():
    r = rich_report()
    er7 = build_oru(r, sr_sop_instance_uid="1.2.3.4.5", signed_at=SIGNED_AT, reader_id="reader1",
                    reader_name=READER.name, message_id="M1")
    msg = parse_oru(er7)
    oo = msg.oru_r01_patient_result.oru_r01_order_observation
    assert oo.obr.obr_25.value == "F"
    assert oo.obr.obr_24.value == "RAD"
    assert msg.msh.msh_9.to_er7() == "ORU^R01^ORU_R01" and msg.msh.msh_12.value == "2.5.1"
    obx_values = [o.obx.obx_5.to_er7() for o in oo.oru_r01_observation]
    assert all(o.obx.obx_11.value == "F" for o in oo.oru_r01_observation)
    assert escape("Indication: RLQ pain | fever & raised WBC ^ 2 days") in obx_values
    assert r.study.study_uid in obx_values
    assert "1.2.3.4.5" in obx_values
    assert er7.count("\r") >= 5 and "\n" not in er7


def test_hl7_correction_status_for_addendum():
    r = rich_report()
    r.transition(ReportState.FINAL, READER)
    a = r.start_addendum(READER, PriorDocument("1", "2", "3", "4"))
    a.set_field("addendum", "More.")
    er7 = build_oru(a, sr_sop_instance_uid="1.2.3.4.6", signed_at=SIGNED_AT, reader_id="reader1",
                    reader_name=READER.name, message_id="M2")
    oo = parse_oru(er7).oru_r01_patient_result.oru_r01_order_observation
    assert oo.obr.obr_25.value == "C"
    assert oo.oru_r01_observation[0].obx.obx_5.to_er7() == "More."
