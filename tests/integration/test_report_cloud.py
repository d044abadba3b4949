"""Reports against the real reference cloud (Orthanc + nginx + UPS-RS service): the signed SR is stored,
read back and says exactly what was signed; the workitem goes COMPLETED; an outage between sign and send
delivers exactly once afterwards; a kill -9 between sign and send is delivered by the restarted workstation;
the CLI signs, amends (addendum chain) and verifies; the cloud writes FHIR + HL7 for the EHR."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pydicom
import pytest
import requests

from tests.fixtures.cloud import stow, wait_for_workitems

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PIN = "2468"


def _dx_chest(real_data: Path, out: Path):
    """The real DX chest image as a new study of today (the cloud does not route old priors)."""
    import datetime as dt

    from pydicom.uid import generate_uid

    src = min((real_data / "11_dx_chest_mono1_small").rglob("*.dcm"))
    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyDate = ds.SeriesDate = dt.date.today().strftime("%Y%m%d")
    ds.PatientID, ds.PatientName = "RR-REPORT-TEST", "SYNTHETIC^CHEST"
    ds.BodyPartExamined = "CHEST"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dx.dcm"
    ds.save_as(path)
    return [path], str(ds.StudyInstanceUID)


def _session(c, user="reader1"):
    from cloud_client.profiles import ServerProfile
    from cloud_client.session import DicomWebSession

    return DicomWebSession(ServerProfile(name="test", base_url=c.base_url, user=user), password=c.users[user])


def _seed(c, real_data) -> tuple[str, str]:
    files, study = _dx_chest(real_data, c.dir.parent / "study")
    stow(c, files)
    items = wait_for_workitems(c, study)
    assert len(items) == 1
    return study, items[0]["00080018"]["Value"][0]


def _srs_in_archive(c, study: str) -> list[pydicom.Dataset]:
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    client = DICOMwebClient(url=c.base_url, session=create_session_from_user_pass(*c.auth("reader1")))
    out = []
    for inst in client.search_for_instances(study_instance_uid=study, search_filters={"Modality": "SR"}):
        out.append(client.retrieve_instance(study, inst["0020000E"]["Value"][0], inst["00080018"]["Value"][0]))
    return out


def _workitem(c, uid: str) -> dict:
    r = requests.get(f"{c.base_url}/workitems/{uid}", auth=c.auth("reader1"), timeout=10)
    r.raise_for_status()
    data = r.json()
    return data[0] if isinstance(data, list) else data


def _report_for(item, study_ctx_from):
    from reporting.model import Person, Report
    from reporting.templates import choose_template

    ctx = study_ctx_from(item)
    r = Report(choose_template(ctx.modality, ctx.body_part, ctx.description), ctx, author=Person("reader1"))
    r.apply_macro("normal")
    r.set_field("indication", "Cough for two weeks")
    r.set_field("impression", "No acute cardiopulmonary abnormality. Signed in an integration test.")
    return r


def _ctx(item):
    from reporting.model import StudyContext

    return StudyContext(study_uid=item.study_uid, patient_id=item.patient_id,
                        issuer_of_patient_id=item.issuer_of_patient_id, patient_name=item.patient_name,
                        modality=item.modality or "DX", body_part=item.body_part or "CHEST",
                        description=item.study_description, workitem_uid=item.workitem_uid)


def test_sign_during_outage_then_delivered_once_read_back_equal_and_sent_to_ehr(empty_cloud, real_data):
    from cloud_client.archive import ArchiveSink
    from cloud_client.worklist import WorklistClient
    from reporting import signing
    from reporting.model import Person
    from reporting.outbox import Outbox
    from reporting.sr import narrative_from_report, narrative_from_sr
    from reporting.workflow import sign_report, verify_sr

    c = empty_cloud
    study, wi = _seed(c, real_data)
    signing.generate_key("reader1", PIN)
    with _session(c) as s:
        wl = WorklistClient(s)
        item = wl.claim(wi)
        report = _report_for(item, _ctx)
        outbox = Outbox(backoff_base_s=0.05)
        sink = ArchiveSink(s, wl)
        c.kill_orthanc()  # the archive is down when the reader signs
        res = sign_report(report, Person("reader1", "One^Reader"), PIN, outbox=outbox, organization="ReadRoom QA")
        assert outbox.pending_count() == 1  # durable before any network call
        assert outbox.deliver_due(sink, force=True) == 0
        assert outbox.pending_count() == 1 and outbox.items()[0].last_error
        c.start_orthanc()
        assert outbox.deliver_due(sink, force=True) == 1
        assert outbox.pending_count() == 0
        assert outbox.deliver_due(sink, force=True) == 0  # nothing is sent twice
    sop = res.record.sr["sop_instance_uid"]
    srs = _srs_in_archive(c, study)
    assert [str(d.SOPInstanceUID) for d in srs] == [sop]  # exactly once
    stored = srs[0]
    assert narrative_from_sr(stored) == narrative_from_report(report)  # the text equals the report
    assert stored.VerificationFlag == "VERIFIED" and stored.CompletionFlag == "COMPLETE"
    assert verify_sr(stored, res.record, signing.public_key_b64("reader1"))
    w = _workitem(c, wi)
    assert w["00741000"]["Value"] == ["COMPLETED"]
    assert sop in json.dumps(w)  # Output Information Sequence names the SR
    deadline = time.monotonic() + 30
    wanted = {f"{sop}.diagnosticreport.json", f"{sop}.oru.hl7"}
    while time.monotonic() < deadline and not wanted <= {p.name for p in c.outbound_dir.glob("*")}:
        time.sleep(0.3)
    assert wanted <= {p.name for p in c.outbound_dir.glob("*")}
    fhir = json.loads((c.outbound_dir / f"{sop}.diagnosticreport.json").read_text())
    assert fhir["status"] == "final" and "Signed in an integration test." in fhir["conclusion"]


CHILD = textwrap.dedent("""
    import sys
    from cloud_client.profiles import ServerProfile
    from cloud_client.session import DicomWebSession
    from cloud_client.worklist import WorklistClient
    from reporting.model import Person, Report, StudyContext
    from reporting.templates import TemplateLibrary
    from reporting.workflow import sign_report
    base, wi = sys.argv[1], sys.argv[2]
    s = DicomWebSession(ServerProfile(name="t", base_url=base, user="reader1"), password="reader1")
    item = WorklistClient(s).claim(wi)
    r = Report(TemplateLibrary().get("xr-chest"), StudyContext(study_uid=item.study_uid, patient_id=item.patient_id,
               workitem_uid=wi))
    r.apply_macro("normal"); r.set_field("indication", "Killed before sending")
    res = sign_report(r, Person("reader1"), "PIN")
    print(res.record.sr["sop_instance_uid"], flush=True)
    import time
    while True:
        time.sleep(1)
""").replace('"PIN"', f'"{PIN}"')


def test_kill_9_between_sign_and_send_then_cli_outbox_retry_delivers(empty_cloud, real_data):
    from reporting import signing

    c = empty_cloud
    study, wi = _seed(c, real_data)
    signing.generate_key("reader1", PIN)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, c.base_url, wi], stdout=subprocess.PIPE,
                            env=os.environ.copy())
    try:
        sop = proc.stdout.readline().decode().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert sop and proc.returncode == -signal.SIGKILL
    assert _srs_in_archive(c, study) == []
    env = dict(os.environ, READROOM_PASSWORD="reader1")
    out = subprocess.run([sys.executable, "-m", "app.cli", "outbox", "--retry", "--server", c.base_url, "--user",
                          "reader1"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All reports sent." in out.stdout
    assert [str(d.SOPInstanceUID) for d in _srs_in_archive(c, study)] == [sop]
    assert _workitem(c, wi)["00741000"]["Value"] == ["COMPLETED"]


def _cli(*args, env_extra=None, check=True):
    env = dict(os.environ, READROOM_PASSWORD="reader1", READROOM_SIGNING_PIN=PIN, **(env_extra or {}))
    out = subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=env,
                         timeout=180, check=False)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_cli_sign_addendum_chain_and_verify(empty_cloud, real_data, tmp_path):
    c = empty_cloud
    study, wi = _seed(c, real_data)
    conn = ["--server", c.base_url, "--user", "reader1"]
    assert "Signing key created" in _cli("report", "keygen", "--user", "reader1").stdout
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"macro": "normal", "values": {"indication": "Fever"},
                                  "critical": [{"finding": "Tension pneumothorax", "category": 1,
                                                "recipient": "Dr. Ward", "method": "phone",
                                                "at": "2026-03-04T10:00:00+00:00", "read_back": True}]}))
    out = _cli("report", "sign", *conn, "--workitem", wi, "--template", "xr-chest", "--values", str(values),
               "--name", "One^Reader", "--preliminary")
    assert "Preliminary report" in out.stdout and "Sent to the archive." in out.stdout
    assert _workitem(c, wi)["00741000"]["Value"] == ["IN PROGRESS"]  # a preliminary does not finish the work
    out = _cli("report", "sign", *conn, "--workitem", wi, "--template", "xr-chest", "--values", str(values),
               "--name", "One^Reader")
    assert "Sent to the archive." in out.stdout
    assert _workitem(c, wi)["00741000"]["Value"] == ["COMPLETED"]
    out = _cli("report", "addendum", *conn, "--study", study, "--text", "Comparison with prior: new finding.")
    assert "Signed addendum" in out.stdout and "Sent to the archive." in out.stdout
    srs = _srs_in_archive(c, study)
    assert len(srs) == 3
    [prelim] = [d for d in srs if d.PreliminaryFlag == "PRELIMINARY"]
    [first] = [d for d in srs if d.PreliminaryFlag == "FINAL" and d.SeriesDescription.startswith("Report")]
    [addendum] = [d for d in srs if d.SeriesDescription.startswith("Addendum")]
    pre = first.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pre.ReferencedSOPInstanceUID == prelim.SOPInstanceUID  # the final supersedes the preliminary
    pre = addendum.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pre.ReferencedSOPInstanceUID == first.SOPInstanceUID
    from reporting.sr import text_from_sr
    assert "Tension pneumothorax" in text_from_sr(first) and "read-back confirmed" in text_from_sr(first)
    assert text_from_sr(addendum).startswith("Comparison with prior: new finding.")
    f = tmp_path / "first.dcm"
    first.save_as(f)
    assert "VALID" in _cli("report", "verify", str(f)).stdout
    first.ContentSequence[-1].ContentSequence[0].TextValue = "Tampered."
    first.save_as(f)
    bad = _cli("report", "verify", str(f), check=False)
    assert bad.returncode == 2 and "INVALID" in bad.stdout
    assert "All reports sent." in _cli("outbox", *conn).stdout
    out_dir = tmp_path / "export"
    _cli("report", "export", "--study", study, "--out", str(out_dir), "--all")
    assert len(list(out_dir.glob("*.report.pdf"))) == 2 and len(list(out_dir.glob("*.sr.dcm"))) == 2
    from reporting.hl7 import parse_oru
    statuses = sorted(parse_oru(p.read_bytes().decode()).oru_r01_patient_result.oru_r01_order_observation.obr.obr_25.value
                      for p in out_dir.glob("*.oru_r01.hl7"))
    assert statuses == ["C", "F"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(c.outbound_dir.glob("*.oru.hl7"))) < 3:
        time.sleep(0.3)
    cloud_statuses = sorted(parse_oru(p.read_bytes().decode()).oru_r01_patient_result.oru_r01_order_observation
                            .obr.obr_25.value for p in c.outbound_dir.glob("*.oru.hl7"))
    assert cloud_statuses == ["C", "F", "P"]  # the clinic's EHR got preliminary, final and addendum

    # the workitem's history keeps the report and its addendum: both in the COMPLETED workitem's outputs
    def outputs():
        performed = _workitem(c, wi)["00741216"]["Value"]
        return [ref["00081155"]["Value"][0] for out in performed[0]["00404033"]["Value"]
                for ref in out["00081199"]["Value"]]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and addendum.SOPInstanceUID not in outputs():
        time.sleep(0.3)
    assert sorted(outputs()) == sorted([first.SOPInstanceUID, addendum.SOPInstanceUID])
    assert _workitem(c, wi)["00741000"]["Value"] == ["COMPLETED"]


def test_blind_peer_review_stored_on_archive_and_listed_per_reader(empty_cloud, real_data):
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    from cloud_client.archive import ArchiveSink
    from cloud_client.worklist import WorklistClient
    from reporting import signing
    from reporting.model import Person
    from reporting.outbox import Outbox
    from reporting.peer_review import (
        BlindReview,
        ReviewedReport,
        ReviewError,
        build_review_sr,
        load_reviews,
        qa_summary,
        queue_review,
        reviews_of_reader,
    )
    from reporting.workflow import sign_report

    c = empty_cloud
    study, wi = _seed(c, real_data)
    signing.generate_key("reader1", PIN)
    with _session(c) as s:
        wl = WorklistClient(s)
        report = _report_for(wl.claim(wi), _ctx)
        res = sign_report(report, Person("reader1", "One^Reader"), PIN, outbox=Outbox(), outputs=False)
        assert Outbox().deliver_due(ArchiveSink(s, wl)) == 1
    # the QA reviewer opens the signed study from the archive, blind
    [stored] = _srs_in_archive(c, study)
    original = ReviewedReport.from_sr(stored)
    assert original.reader == "reader1" and original.sop_instance_uid == res.record.sr["sop_instance_uid"]
    review = BlindReview(original, Person("qa", "Quality^Anne"), blind=True)
    with pytest.raises(ReviewError):
        review.original_text()
    review.submit_impression("Small right pleural effusion.")
    assert any(r.tag != "equal" for r in review.diff())
    scored = review.score("2a", "Small effusion not mentioned; unlikely to matter.")
    sr = build_review_sr(scored, original, "Quality^Anne")
    ob = Outbox()
    queue_review(sr, ob)
    with _session(c, "qa") as qa:
        assert ob.deliver_due(ArchiveSink(qa)) == 1
    # listed per reader from the archive
    client = DICOMwebClient(url=c.base_url, session=create_session_from_user_pass(*c.auth("qa")))
    found = client.search_for_instances(search_filters={"Modality": "SR"})
    datasets = [client.retrieve_instance(f["0020000D"]["Value"][0], f["0020000E"]["Value"][0],
                                         f["00080018"]["Value"][0]) for f in found]
    reviews = load_reviews(datasets)
    assert len(reviews) == 1
    mine = reviews_of_reader(reviews, "reader1")
    assert [(r.score.value, r.reviewer, r.blind, r.reviewed_sop_instance_uid) for r in mine] == [
        ("2a", "qa", True, original.sop_instance_uid)]
    [summary] = qa_summary(reviews)
    assert summary.reader == "reader1" and summary.counts["2a"] == 1 and summary.total == 1
    assert not any(c.outbound_dir.glob(f"{sr.SOPInstanceUID}*"))  # reviews never go to the EHR
