"""Outbox and sign workflow without a server: durable before sending, retry with backoff, idempotent,
exactly-once after outage, kill -9 between sign and send, addendum chain, tampering detected."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cloud_client import paths
from cloud_client.errors import ArchiveUnavailable
from reporting import signing
from reporting.drafts import DraftStore
from reporting.model import Person, Report, ReportState, StudyContext
from reporting.outbox import Outbox, OutboxWorker
from reporting.sr import narrative_from_sr
from reporting.templates import TemplateLibrary
from reporting.workflow import (
    NeedsConfirmation,
    SignedRecord,
    ValidationFailed,
    read_output,
    sign_addendum,
    sign_report,
    signed_records,
    start_addendum,
    verify_record,
    verify_sr,
)

READER = Person("reader1", "One^Reader")
PIN = "2468"
STUDY = "1.2.826.0.1.3680043.8.498.77"
WORKITEM = "1.2.826.0.1.3680043.8.498.78"


class FileSink:
    """A sink that records what it received in a JSON file (so other processes' deliveries can be counted)."""

    def __init__(self, path: Path, down: bool = False, complete_fails: int = 0):
        self.path = path
        self.down = down
        self.complete_fails = complete_fails

    def _log(self, entry):
        data = json.loads(self.path.read_text()) if self.path.exists() else []
        data.append(entry)
        self.path.write_text(json.dumps(data))

    def calls(self):
        return json.loads(self.path.read_text()) if self.path.exists() else []

    def store(self, datasets):
        if self.down:
            raise ArchiveUnavailable()
        for ds in datasets:
            self._log(["store", ds.SOPInstanceUID])

    def complete_workitem(self, workitem_uid, output_sop_refs):
        if self.complete_fails > 0:
            self.complete_fails -= 1
            raise ArchiveUnavailable()
        self._log(["complete", workitem_uid, [r.sop_instance_uid for r in output_sop_refs]])


def make_report():
    r = Report(TemplateLibrary().get("xr-chest"),
               StudyContext(study_uid=STUDY, patient_id="PID-OUTBOX-71", patient_name="SYNTHETIC^CHEST", modality="CR",
                            body_part="CHEST", workitem_uid=WORKITEM), author=READER)
    r.apply_macro("normal")
    r.set_field("indication", "Cough")
    return r


@pytest.fixture
def key():
    signing.generate_key(READER.user_id, PIN)


def test_sign_writes_outbox_before_network_and_delivers_once(tmp_path, key):
    ob = Outbox(backoff_base_s=0.01)
    r = make_report()
    DraftStore().save(r)
    res = sign_report(r, READER, PIN, organization="Org", outbox=ob)
    assert r.state == ReportState.FINAL and r.history[-1].user_id == "reader1"
    assert not DraftStore().has_draft(STUDY)  # the outbox holds it now
    assert ob.pending_count() == 1 and ob.status_text() == "1 report waiting to send"
    raw = next(ob.directory.glob("*.outbox")).read_bytes()
    assert b"SYNTHETIC" not in raw and b"PID-OUTBOX-71" not in raw  # encrypted at rest
    item = ob.items()[0]
    assert read_output(res.record, "report.pdf").startswith(b"%PDF-")
    assert json.loads(read_output(res.record, "diagnosticreport.json"))["status"] == "final"
    assert read_output(res.record, "oru_r01.hl7").startswith(b"MSH|")
    for p in Path(paths.outbox_dir(), "outputs").rglob("*"):
        assert not p.is_file() or b"SYNTHETIC" not in p.read_bytes()  # encrypted
    sink = FileSink(tmp_path / "sink.json")
    assert ob.deliver_due(sink) == 1
    assert ob.deliver_due(sink, force=True) == 0
    sop = res.record.sr["sop_instance_uid"]
    assert sink.calls() == [["store", sop], ["complete", WORKITEM, [sop]]]
    assert ob.pending_count() == 0 and ob.status_text() == "All reports sent."
    assert [i.item_id for i in ob.sent()] == [sop]
    # enqueueing the same item again is harmless (idempotent)
    ob.enqueue(item)
    assert ob.pending_count() == 0


def test_outage_then_recovery_exactly_once_with_backoff(tmp_path, key):
    ob = Outbox(backoff_base_s=0.2)
    counts = []
    ob.subscribe(counts.append)
    sign_report(make_report(), READER, PIN, outbox=ob)
    sink = FileSink(tmp_path / "sink.json", down=True)
    assert ob.deliver_due(sink) == 0
    item = ob.items()[0]
    assert item.attempts == 1 and item.next_attempt_at > time.time() and "cannot be reached" in item.last_error
    assert ob.deliver_due(sink) == 0 and ob.items()[0].attempts == 1  # not due yet: backoff respected
    sink.down = False
    time.sleep(0.3)
    assert ob.deliver_due(sink) == 1
    assert [c[0] for c in sink.calls()] == ["store", "complete"]
    assert counts[-1] == 0


def test_store_done_complete_failed_resumes_without_restoring(tmp_path, key):
    ob = Outbox(backoff_base_s=0.01)
    sign_report(make_report(), READER, PIN, outbox=ob)
    sink = FileSink(tmp_path / "sink.json", complete_fails=1)
    ob.deliver_due(sink)
    assert ob.items()[0].stored and not ob.items()[0].completed
    ob.deliver_due(sink, force=True)
    assert [c[0] for c in sink.calls()] == ["store", "complete"]


def test_worker_delivers_in_background_after_outage(tmp_path, key):
    ob = Outbox(backoff_base_s=0.05, backoff_max_s=0.1)
    sink = FileSink(tmp_path / "sink.json", down=True)
    worker = OutboxWorker(ob, sink, idle_poll_s=0.2).start()
    try:
        sign_report(make_report(), READER, PIN, outbox=ob)
        worker.wake()
        time.sleep(0.3)
        assert ob.pending_count() == 1
        sink.down = False
        deadline = time.time() + 5
        while ob.pending_count() and time.time() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert ob.pending_count() == 0
    assert [c[0] for c in sink.calls()] == ["store", "complete"]


CHILD = textwrap.dedent(f"""
    from reporting.model import Person, Report, StudyContext
    from reporting.templates import TemplateLibrary
    from reporting.workflow import sign_report
    r = Report(TemplateLibrary().get("xr-chest"), StudyContext(study_uid="{STUDY}", workitem_uid="{WORKITEM}"))
    r.apply_macro("normal"); r.set_field("indication", "Cough")
    res = sign_report(r, Person("reader1", "One^Reader"), "{PIN}")
    print(res.record.sr["sop_instance_uid"], flush=True)
    import time
    while True:
        time.sleep(1)   # the network call would come now: killed before it
""")


def test_kill_minus_9_between_sign_and_send_restarted_process_delivers(tmp_path, key):
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        sop = proc.stdout.readline().decode().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL and sop
    sink = FileSink(tmp_path / "sink.json")
    ob = Outbox()  # "the restarted workstation"
    assert ob.pending_count() == 1
    assert ob.deliver_due(sink) == 1
    assert sink.calls() == [["store", sop], ["complete", WORKITEM, [sop]]]


def test_validation_blocks_and_warnings_need_confirmation(key):
    r = Report(TemplateLibrary().get("xr-extremity"), StudyContext(study_uid=STUDY, laterality="R"))
    with pytest.raises(ValidationFailed, match="required"):
        sign_report(r, READER, PIN, outbox=Outbox())
    r.apply_macro("normal")
    r.set_field("indication", "Fall")
    r.set_field("side", "left")
    with pytest.raises(NeedsConfirmation):
        sign_report(r, READER, PIN, outbox=Outbox())
    assert r.state == ReportState.DRAFT
    with pytest.raises(signing.WrongPinError):
        sign_report(r, READER, "0000", outbox=Outbox(), accept_warnings=True)
    assert Outbox().pending_count() == 0 and r.state == ReportState.DRAFT
    sign_report(r, READER, PIN, outbox=Outbox(), accept_warnings=True)
    assert r.state == ReportState.FINAL


def test_signed_record_verifies_and_tampering_is_detected(key):
    ob = Outbox()
    r = make_report()
    res = sign_report(r, READER, PIN, outbox=ob)
    rec = SignedRecord.from_dict(ob.items()[0].signed)
    sr = ob.items()[0].dicom_datasets()[0]
    trusted = signing.public_key_b64("reader1")
    assert verify_record(rec, trusted) and verify_sr(sr, rec, trusted)
    rec.content["values"]["impression"] = "Something else."
    assert not verify_record(rec)
    rec2 = SignedRecord.from_dict(res.record.to_dict())
    sr.ContentSequence[-1].ContentSequence[0].TextValue = "Tampered impression."
    assert verify_record(rec2) and not verify_sr(sr, rec2)


def test_addendum_chain(tmp_path, key):
    ob = Outbox()
    original = make_report()
    first = sign_report(original, READER, PIN, outbox=ob)
    a = start_addendum(first.record, READER)
    a.set_field("addendum", "Comparison with yesterday's film: unchanged.")
    second = sign_addendum(a, READER, PIN, outbox=ob, original=original)
    assert original.state == ReportState.AMENDED
    a2 = start_addendum(second.record, READER)
    a2.set_field("addendum", "Third version.")
    third = sign_addendum(a2, READER, PIN, outbox=ob)
    sink = FileSink(tmp_path / "sink.json")
    assert ob.deliver_due(sink) == 3
    sops = [c[1] for c in sink.calls() if c[0] == "store"]
    assert sops == [first.record.sr["sop_instance_uid"], second.record.sr["sop_instance_uid"],
                    third.record.sr["sop_instance_uid"]]
    assert [c for c in sink.calls() if c[0] == "complete"] == [["complete", WORKITEM, [sops[0]]]]
    srs = {i.item_id: i.dicom_datasets()[0] for i in ob.sent()}
    pre2 = srs[sops[1]].PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    pre3 = srs[sops[2]].PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pre2.ReferencedSOPInstanceUID == sops[0] and pre3.ReferencedSOPInstanceUID == sops[1]
    assert [r.sr["sop_instance_uid"] for r in signed_records(ob, STUDY)] == sops
    # the latest version carries the whole chain of addenda, newest first
    assert narrative_from_sr(srs[sops[2]])[0] == ("121078", ["Third version.",
                                                             "Comparison with yesterday's film: unchanged."])
    assert narrative_from_sr(srs[sops[1]])[0] == ("121078", ["Comparison with yesterday's film: unchanged."])


def test_preliminary_then_final_supersedes_it(tmp_path, key):
    from cloud import ehr_outbound
    from reporting.workflow import send_preliminary

    ob = Outbox()
    r = make_report()
    pre = send_preliminary(r, READER, outbox=ob)
    assert r.state == ReportState.PRELIMINARY and r.editable
    pre_sr = ob.items()[0].dicom_datasets()[0]
    assert (pre_sr.PreliminaryFlag, pre_sr.VerificationFlag, pre_sr.CompletionFlag) == ("PRELIMINARY", "UNVERIFIED",
                                                                                         "COMPLETE")
    assert "VerifyingObserverSequence" not in pre_sr and ob.items()[0].workitem_uid is None
    fhir_p, hl7_p = ehr_outbound.handle_stored_sr(pre_sr, tmp_path)
    assert json.loads(fhir_p.read_text())["status"] == "preliminary"
    from reporting.hl7 import parse_oru
    obr = parse_oru(hl7_p.read_bytes().decode()).oru_r01_patient_result.oru_r01_order_observation.obr
    assert obr.obr_25.value == "P" and obr.obr_22.value != pre_sr.ContentDate + "000000"
    r.set_field("impression", "Final impression after review.")
    final = sign_report(r, READER, PIN, outbox=ob, outputs=False)
    final_sr = next(i for i in ob.items() if i.kind == "report").dicom_datasets()[0]
    ref = final_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == pre.sr.sop_instance_uid
    fhir_p, hl7_p = ehr_outbound.handle_stored_sr(final_sr, tmp_path)
    assert json.loads(fhir_p.read_text())["status"] == "final"  # supersedes a prelim: final, not a correction
    assert final.record.content["preliminary_sr"]["sop_instance_uid"] == pre.sr.sop_instance_uid
    sink = FileSink(tmp_path / "sink.json")
    assert ob.deliver_due(sink) == 2
    assert [c[0] for c in sink.calls()] == ["store", "store", "complete"]


class LeakySink(FileSink):
    """A sink whose library error quotes dataset values (as pydicom/requests errors can)."""

    def store(self, datasets):
        raise ValueError(f"bad value for PatientName {datasets[0].PatientName!s} / {datasets[0].PatientID!s}")


def test_logs_and_pending_errors_never_hold_patient_data(tmp_path, key, caplog):
    """House rule: patient data never in logs or messages shown to users - sign, outage, a refusal whose
    exception quotes the dataset, a damaged entry, then delivery; everything logged at DEBUG."""
    ob = Outbox(backoff_base_s=0.01)
    with caplog.at_level("DEBUG"):
        DraftStore().save(make_report())
        sign_report(make_report(), READER, PIN, organization="Org", outbox=ob)
        ob.deliver_due(FileSink(tmp_path / "down.json", down=True))
        ob.deliver_due(LeakySink(tmp_path / "leaky.json"), force=True)
        shown = [p.last_error for p in ob.pending()]
        (ob.directory / ("f" * 40 + ".outbox")).write_bytes(b"not a vault file")
        ob.deliver_due(FileSink(tmp_path / "sink.json"), force=True)
    assert shown and all("ValueError" in e and "SYNTHETIC" not in e and "PID-OUTBOX-71" not in e for e in shown)
    assert "refused" in caplog.text and "could not be read" in caplog.text
    assert "SYNTHETIC" not in caplog.text and "PID-OUTBOX-71" not in caplog.text


def test_damaged_outbox_entry_is_kept_and_counted_not_deleted(tmp_path, key, caplog):
    ob = Outbox(backoff_base_s=0.01)
    sign_report(make_report(), READER, PIN, outbox=ob)
    damaged = ob.directory / ("e" * 40 + ".outbox")
    damaged.write_bytes(b"\x00garbage that is no vault file")
    sink = FileSink(tmp_path / "sink.json")
    with caplog.at_level("ERROR"):
        assert ob.deliver_due(sink) == 1  # the good report still goes out
    assert damaged.read_bytes() == b"\x00garbage that is no vault file"  # kept untouched for inspection
    assert not (ob.sent_directory / damaged.name).exists()
    assert ob.pending_count() == 1 and ob.status_text() == "1 report waiting to send"  # still reported
    assert "kept for inspection" in caplog.text and damaged.name in caplog.text


def test_disk_full_while_signing_loses_nothing(tmp_path, key, monkeypatch):
    """ENOSPC on the durable write: signing fails loudly, the report stays a draft (not FINAL), the draft is
    kept, no partial outbox file is left; once there is space, signing again works."""
    import errno

    from cloud_client import vault as vault_mod

    ob = Outbox(backoff_base_s=0.01)
    r = make_report()
    DraftStore().save(r)
    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def write(self, _data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vault_mod.os, "fdopen", lambda fd, *a, **k: FullFile(real_fdopen(fd, *a, **k)))
    with pytest.raises(OSError):
        sign_report(r, READER, PIN, outbox=ob)
    assert r.state != ReportState.FINAL and DraftStore().has_draft(STUDY)
    assert not [p for p in ob.directory.iterdir() if p.is_file()]  # no partial or temp file left
    monkeypatch.setattr(vault_mod.os, "fdopen", real_fdopen)
    sign_report(r, READER, PIN, outbox=ob)
    assert r.state == ReportState.FINAL and ob.pending_count() == 1


def test_disk_full_while_recording_a_failed_try_keeps_the_entry(tmp_path, key, monkeypatch):
    """The failed try cannot be recorded (disk full): the entry on disk is the previous, whole one and is
    delivered on a later round."""
    ob = Outbox(backoff_base_s=0.01)
    sign_report(make_report(), READER, PIN, outbox=ob)
    before = next(ob.directory.glob("*.outbox")).read_bytes()

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m, pytest.raises(OSError):
        m.setattr(ob, "_write", full)
        ob.deliver_due(FileSink(tmp_path / "down.json", down=True))
    assert next(ob.directory.glob("*.outbox")).read_bytes() == before
    sink = FileSink(tmp_path / "sink.json")
    assert ob.deliver_due(sink, force=True) == 1 and [c[0] for c in sink.calls()] == ["store", "complete"]


def test_draft_that_cannot_be_removed_does_not_undo_a_signed_report(tmp_path, key, monkeypatch, caplog):
    """After the durable write the report is signed: a failing draft delete is logged, not raised (else the UI
    would say "signing failed" for a report that is queued and FINAL)."""
    ob = Outbox(backoff_base_s=0.01)
    r = make_report()
    drafts = DraftStore()
    drafts.save(r)

    def refuse(_study_uid):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(drafts, "delete", refuse)
    with caplog.at_level("WARNING"):
        res = sign_report(r, READER, PIN, outbox=ob, drafts=drafts, outputs=False)
    assert r.state == ReportState.FINAL and ob.pending_count() == 1 and res.outbox_item.item_id
    assert "signed and queued" in caplog.text and "SYNTHETIC" not in caplog.text
