"""Cloud side: FHIR DiagnosticReport + HL7 ORU written from a stored report SR alone."""
import ast
import base64
import json
from pathlib import Path

import pydicom
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from cloud import ehr_outbound
from reporting.model import Person, PriorDocument, Report, ReportState, StudyContext
from reporting.sr import build_report_sr, predecessor_dataset
from reporting.templates import TemplateLibrary

READER = Person("reader1", "One^Reader")


def _report():
    r = Report(TemplateLibrary().get("ct-head-noncontrast"),
               StudyContext(study_uid="1.2.826.0.1.3680043.8.498.500", patient_id="DEMO-1",
                            issuer_of_patient_id="READROOM-DEMO", patient_name="SYNTHETIC^HEADCT",
                            patient_sex="M", accession_number="ACC9", study_date="20260304", study_time="101500"),
               author=READER)
    r.apply_macro("normal")
    r.set_field("indication", "Fall | head strike")
    r.set_field("impression", "No acute intracranial abnormality.")
    return r


def _sr(r, **kw):
    return build_report_sr(r, reader_name=READER.name, organization="Org", verified_at="2026-03-04T10:30:00+00:00",
                           **kw)


def test_writes_valid_fhir_and_hl7(tmp_path):
    ds = _sr(_report())
    paths = ehr_outbound.handle_stored_sr(ds, tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted([f"{ds.SOPInstanceUID}.diagnosticreport.json",
                                                   f"{ds.SOPInstanceUID}.oru.hl7"])
    fhir = json.loads(paths[0].read_text())
    m = DiagnosticReport.model_validate(fhir)
    assert m.status == "final" and m.code.coding[0].code == "30799-1"
    assert m.imagingStudy[0].identifier.value == "urn:oid:1.2.826.0.1.3680043.8.498.500"
    assert m.conclusion == "No acute intracranial abnormality."
    assert m.subject.identifier.value == "DEMO-1"
    assert m.resultsInterpreter[0].display == "One Reader"
    text = base64.b64decode(fhir["presentedForm"][0]["data"]).decode()
    assert "IMPRESSION:\nNo acute intracranial abnormality." in text and "Fall | head strike" in text
    msg = parse_message(paths[1].read_bytes().decode(), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert msg.validate()
    oo = msg.oru_r01_patient_result.oru_r01_order_observation
    assert oo.obr.obr_25.value == "F" and oo.obr.obr_3.to_er7() == "ACC9"
    assert "Indication: Fall \\F\\ head strike" in [o.obx.obx_5.to_er7() for o in oo.oru_r01_observation]
    # repeatable: storing the same SR again rewrites the same files
    assert ehr_outbound.handle_stored_sr(ds, tmp_path / "out") == paths
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_addendum_is_appended_and_correction(tmp_path):
    r = _report()
    r.transition(ReportState.FINAL, READER)
    a = r.start_addendum(READER, PriorDocument(r.study.study_uid, "1.2.3.9", "1.2.840.10008.5.1.4.1.1.88.22", "1.2.3.9.1"))
    a.set_field("addendum", "Subtle left frontal contusion on review.")
    ds = _sr(a, predecessor_datasets=[predecessor_dataset(r.study.study_uid, "1.2.3.9",
                                                          "1.2.840.10008.5.1.4.1.1.88.22", "1.2.3.9.1")])
    fhir_p, hl7_p = ehr_outbound.handle_stored_sr(ds, tmp_path)
    assert json.loads(fhir_p.read_text())["status"] == "appended"
    oo = parse_message(hl7_p.read_bytes().decode(), find_groups=True).oru_r01_patient_result.oru_r01_order_observation
    assert oo.obr.obr_25.value == "C"
    assert oo.oru_r01_observation[0].obx.obx_5.to_er7() == "Subtle left frontal contusion on review."


def test_other_and_unverified_srs_are_ignored(tmp_path, real_data):
    others = sorted((real_data / "19_sr_documents").glob("*.dcm"))
    assert others
    for p in others:  # TID 1500 measurement reports, an IHE key-object-like SR, a verified non-TID-2000 SR
        assert ehr_outbound.handle_stored_sr(pydicom.dcmread(p), tmp_path) == []
    ds = _sr(_report())
    ds.VerificationFlag = "UNVERIFIED"
    assert ehr_outbound.handle_stored_sr(ds, tmp_path) == []


def test_cloud_module_imports_no_client_package():
    tree = ast.parse(Path(ehr_outbound.__file__).read_text())
    imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"reporting", "cloud_client", "app", "viewer", "dictation"}


def test_diagnostic_report_is_put_to_a_configured_fhir_endpoint(tmp_path, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        ds = _sr(_report())
        monkeypatch.setenv(ehr_outbound.FHIR_ENDPOINT_ENV, f"http://127.0.0.1:{server.server_port}/fhir")
        paths = ehr_outbound.handle_stored_sr(ds, tmp_path)
    finally:
        server.shutdown()
    assert len(paths) == 2
    [(path, ctype, resource)] = received
    assert path == "/fhir/DiagnosticReport/" + resource["id"] and ctype == "application/fhir+json"
    assert resource == json.loads(paths[0].read_text())
    # an unreachable endpoint never loses the report: the files are there
    assert not ehr_outbound.post_fhir(resource, "http://127.0.0.1:9/fhir", timeout=1)
