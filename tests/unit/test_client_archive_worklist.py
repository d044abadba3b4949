"""ArchiveSink error classes (what the outbox retries) and the worklist's wire mapping (contract shapes)."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

import pydicom
import pytest
from pydicom.uid import generate_uid

from cloud_client.archive import ArchiveSink, ArchiveUnavailable, AuthError, RequestRejected
from cloud_client.audit import AuditTrail
from cloud_client.profiles import ServerProfile
from cloud_client.session import DicomWebSession
from cloud_client.worklist import WorklistClient, WorklistItem, parse_workitem
from tests.fixtures.http import LocalServer
from tests.unit.test_client_cache import make_instance


class StowServer(LocalServer):
    def __init__(self):
        self.status = 200
        self.bodies: list[bytes] = []
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                srv.bodies.append(body)
                data = b"{}"
                if srv.status == 202:
                    data = json.dumps({"00081198": {"vr": "SQ", "Value": [{}]}}).encode()
                self.send_response(srv.status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.serve(H)
        self.url = f"{self.root}/dicom-web"


@pytest.fixture
def stow_server():
    s = StowServer()
    yield s
    s.close()


def _sink(url, tmp_path):
    sess = DicomWebSession(ServerProfile("t", url, "reader1", timeout_s=2, connect_timeout_s=1), "pw")
    return ArchiveSink(sess, audit=AuditTrail(tmp_path / "audit.jsonl"))


def test_store_sends_part10_multipart_and_audits(stow_server, tmp_path):
    sink = _sink(stow_server.url, tmp_path)
    study = generate_uid()
    dss = [make_instance(study, generate_uid(), 1), make_instance(study, generate_uid(), 2)]
    sink.store(dss)
    body = stow_server.bodies[-1]
    assert body.count(b"Content-Type: application/dicom\r\n") == 2 and body.count(b"DICM") == 2
    ev = AuditTrail(tmp_path / "audit.jsonl").events()[-1]
    assert (ev.action, ev.outcome, ev.study_uids, ev.sop_count) == ("store", "success", [study], 2)


@pytest.mark.parametrize("status,exc", [(500, ArchiveUnavailable), (503, ArchiveUnavailable),
                                        (401, AuthError), (400, RequestRejected), (202, RequestRejected)])
def test_store_errors_are_classified_for_the_outbox(stow_server, tmp_path, status, exc):
    stow_server.status = status
    with pytest.raises(exc):
        _sink(stow_server.url, tmp_path).store([make_instance(generate_uid(), generate_uid(), 1)])
    assert AuditTrail(tmp_path / "audit.jsonl").events()[-1].outcome == "failure"


def test_connection_refused_is_archive_unavailable(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    with pytest.raises(ArchiveUnavailable):
        _sink(f"http://127.0.0.1:{port}/dicom-web", tmp_path).store([make_instance(generate_uid(), "1.2", 1)])


def _workitem_json(**over) -> dict:
    ds = {
        "00080018": {"vr": "UI", "Value": ["2.25.1"]},
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},
        "00741200": {"vr": "CS", "Value": ["HIGH"]},
        "00404011": {"vr": "DT", "Value": ["20261204153000+0000"]},
        "00404005": {"vr": "DT", "Value": ["20261204150000"]},
        "00741204": {"vr": "LO", "Value": ["CT HEAD WO CONTRAST"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "SYNTHETIC^HEADCT"}]},
        "00100020": {"vr": "LO", "Value": ["RRDEMO-0001"]},
        "00100021": {"vr": "LO", "Value": ["READROOM-DEMO"]},
        "00100040": {"vr": "CS", "Value": ["M"]},
        "00101010": {"vr": "AS", "Value": ["078Y"]},
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00404021": {"vr": "SQ", "Value": [{"0020000D": {"vr": "UI", "Value": ["1.2.3"]},
                                            "00081190": {"vr": "UR", "Value": ["http://x/studies/1.2.3"]}}]},
        "00404034": {"vr": "SQ", "Value": [{"00404009": {"vr": "SQ", "Value": [{
            "00080100": {"vr": "SH", "Value": ["reader2"]}, "00080102": {"vr": "SH", "Value": ["READROOM"]},
            "00080104": {"vr": "LO", "Value": ["Reader Two"]}}]}}]},
        "00404027": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["north"]},
                                            "00080102": {"vr": "SH", "Value": ["READROOM"]},
                                            "00080104": {"vr": "LO", "Value": ["Northside Urgent Care"]}}]},
        "00741210": {"vr": "SQ", "Value": [
            {"0040A040": {"vr": "CS", "Value": ["TEXT"]}, "0040A160": {"vr": "UT", "Value": ["CT"]},
             "0040A043": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["121139"]},
                                                 "00080102": {"vr": "SH", "Value": ["DCM"]},
                                                 "00080104": {"vr": "LO", "Value": ["Modality"]}}]}},
            {"0040A040": {"vr": "CS", "Value": ["TEXT"]}, "0040A160": {"vr": "UT", "Value": ["HEAD"]},
             "0040A043": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["123014"]},
                                                 "00080102": {"vr": "SH", "Value": ["DCM"]},
                                                 "00080104": {"vr": "LO", "Value": ["Target Region"]}}]}}]},
    }
    ds.update(over)
    return ds


def test_parse_workitem_maps_the_contract_fields():
    item = parse_workitem(_workitem_json())
    assert (item.workitem_uid, item.study_uid, item.state, item.priority) == ("2.25.1", "1.2.3", "SCHEDULED", "HIGH")
    assert item.is_stat and not item.in_pool and item.assigned_to == "reader2"
    assert (item.patient_name, item.patient_id, item.issuer_of_patient_id) == \
        ("SYNTHETIC^HEADCT", "RRDEMO-0001", "READROOM-DEMO")
    assert (item.patient_sex, item.patient_age, item.modality, item.body_part) == ("M", "078Y", "CT", "HEAD")
    assert (item.site_id, item.clinic, item.study_description) == \
        ("north", "Northside Urgent Care", "CT HEAD WO CONTRAST")
    assert item.deadline == datetime(2026, 12, 4, 15, 30, tzinfo=UTC)
    assert item.retrieve_url == "http://x/studies/1.2.3"
    pool = parse_workitem(_workitem_json(**{"00404034": {"vr": "SQ", "Value": []}}))
    assert pool.in_pool and pool.assigned_to is None


def test_sort_stat_first_then_deadline():
    def it(uid, prio, hour):
        return WorklistItem(uid, "1", "SCHEDULED", prio, deadline=datetime(2026, 1, 1, hour, tzinfo=UTC))

    items = [it("a", "MEDIUM", 9), it("b", "LOW", 8), it("c", "HIGH", 12), it("d", "MEDIUM", 7),
             it("e", "HIGH", 11), WorklistItem("f", "1", "SCHEDULED", "MEDIUM")]
    assert [i.workitem_uid for i in sorted(items, key=WorklistItem.sort_key)] == ["e", "c", "d", "a", "f", "b"]


def test_final_state_payload_has_what_the_standard_requires(tmp_path):
    sess = DicomWebSession(ServerProfile("t", "http://127.0.0.1:9/dicom-web", "reader1"), "pw")
    wl = WorklistClient(sess, audit=AuditTrail(tmp_path / "a.jsonl"), station_name="ws-7")
    refs = [("1.2.840.10008.5.1.4.1.1.88.22", "1.2.9.1", "1.2.9", "1.2.3"),
            ("1.2.840.10008.5.1.4.1.1.88.59", "1.2.9.2", "1.2.9", "1.2.3")]
    ds = wl.final_state_dataset(refs, started="2026-12-04T15:00:00+00:00")
    js = ds.to_json_dict()
    assert "00404010" in js  # Modification DateTime
    perf = js["00741216"]["Value"][0]
    for tag in ("00404028", "00404050", "00404051", "00404019", "00404033", "00404035"):
        assert perf.get(tag, {}).get("Value"), tag
    assert perf["00404050"]["Value"][0].startswith("20261204150000")
    outs = perf["00404033"]["Value"]
    assert len(outs) == 1 and outs[0]["0020000D"]["Value"] == ["1.2.3"]
    sops = [r["00081155"]["Value"][0] for r in outs[0]["00081199"]["Value"]]
    assert sops == ["1.2.9.1", "1.2.9.2"]
    assert perf["00404035"]["Value"][0]["00404009"]["Value"][0]["00080100"]["Value"] == ["reader1"]
    pydicom.Dataset.from_json(js)  # valid DICOM JSON


def test_transaction_store_survives_concurrent_processes(tmp_path):
    """Two processes (GUI and CLI) recording claims at once lose none of them."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "tx.json"
    code = textwrap.dedent(f"""
        import sys
        from cloud_client.worklist import TransactionStore
        s = TransactionStore({str(path)!r})
        for i in range(40):
            s.put("https://pacs", "reader1", f"{{sys.argv[1]}}.{{i}}", "2.25.9", pending=False)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in (1, 2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    from cloud_client.worklist import TransactionStore

    held = TransactionStore(path).held("https://pacs", "reader1")
    assert len(held) == 80


class FakeUps(LocalServer):
    """A minimal UPS-RS server for one workitem that records every request (method, path)."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        self.state = "SCHEDULED"
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _answer(self, status, payload=None):
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                fake.requests.append((self.command, self.path.split("?")[0]))
                return body

            def do_GET(self):
                self._record()
                self._answer(200, _workitem_json(**{"00741000": {"vr": "CS", "Value": [fake.state]}}))

            def do_PUT(self):
                body = json.loads(self._record())
                fake.state = body["00741000"]["Value"][0]
                self._answer(200, {})

            def do_POST(self):
                self._record()
                self._answer(200, {})

        self.serve(H)
        self.url = f"{self.root}/dicom-web"


def test_claim_keeps_the_study_so_complete_needs_only_update_and_state(tmp_path):
    """Signing waits on complete(): it must be just the Update and the COMPLETED state change."""
    ups = FakeUps()
    try:
        sess = DicomWebSession(ServerProfile("t", ups.url, "reader2", timeout_s=2, connect_timeout_s=1), "pw")
        wl = WorklistClient(sess, audit=AuditTrail(tmp_path / "a.jsonl"))
        item = wl.claim("2.25.1")
        assert item.study_uid == "1.2.3"
        assert wl.store.get(sess.base_url, "reader2", "2.25.1")["study_uid"] == "1.2.3"
        ups.requests.clear()
        wl.complete("2.25.1", [("1.2.840.10008.5.1.4.1.1.88.22", "1.2.9.1", "1.2.9", "1.2.3")])
        assert ups.requests == [("POST", "/dicom-web/workitems/2.25.1"), ("PUT", "/dicom-web/workitems/2.25.1/state")]
        assert ups.state == "COMPLETED"
        ups.requests.clear()
        wl.complete("2.25.1", [])  # the outbox retrying after a lost answer: one look, nothing sent
        assert ups.requests == [("GET", "/dicom-web/workitems/2.25.1")]
    finally:
        ups.close()


# -- the outbox's one-call delivery (STOW while the final-state Update is sent) -----------------------------------
@pytest.fixture
def fake_ups():
    u = FakeUps()
    yield u
    u.close()


def _queued_report(ups, tmp_path, combined=True, number=1):
    from reporting.outbox import Outbox, OutboxItem, SopRef, _dcm_bytes
    from tests.unit.test_client_cache import make_instance

    sess = DicomWebSession(ServerProfile("t", ups.url, "reader2", timeout_s=2, connect_timeout_s=1), "pw")
    sink = ArchiveSink(sess, audit=AuditTrail(tmp_path / "a.jsonl"))
    if not combined:  # a sink without the one-call delivery: store, then complete
        sink.store_part10_and_complete = None
    ds = make_instance("1.2.3", pydicom.uid.generate_uid(), number)
    item = OutboxItem.create_encoded("report", [_dcm_bytes(ds)], [SopRef(
        str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), "1.2.3")], workitem_uid="2.25.1")
    ob = Outbox()
    ob.enqueue(item)
    return sink, ob, item


def _stows(ups):
    return [r for r in ups.requests if r[0] == "POST" and r[1].endswith("/studies")]


@pytest.mark.parametrize("combined", [True, False])
@pytest.mark.parametrize("state", ["COMPLETED", "CANCELED"])
def test_report_for_a_workitem_no_longer_held_is_still_stored(fake_ups, tmp_path, combined, state):
    """E.g. a second signed report for one workitem, or a claim dropped elsewhere: the SR reaches the archive
    before anything else is decided (found by review: the one-call delivery returned without storing)."""
    sink, ob, item = _queued_report(fake_ups, tmp_path, combined)
    fake_ups.state = state
    delivered = ob.deliver_one(item.item_id, sink)
    assert len(_stows(fake_ups)) == 1
    if state == "COMPLETED":
        assert delivered and not ob.items()
    else:  # NotHeld: parked with the SR stored, so a retry does not store it again
        assert not delivered and ob.items()[0].stored and not ob.items()[0].completed


@pytest.mark.parametrize("status", [400, 409])
def test_a_refused_stow_is_never_taken_for_an_already_completed_workitem(fake_ups, tmp_path, status):
    from cloud_client.errors import RequestRejected

    sink, ob, item = _queued_report(fake_ups, tmp_path)
    sink.worklist.claim("2.25.1")
    fake_ups.state = "COMPLETED"  # e.g. an earlier attempt's COMPLETED went through, its answer was lost

    def refused(*_a, **_k):
        raise RequestRejected("STOW refused", status=status)

    sink.store_part10 = refused
    assert not ob.deliver_one(item.item_id, sink)
    left = ob.items()
    assert len(left) == 1 and not left[0].stored and "refused" in left[0].last_error.lower()


def test_stored_is_kept_when_the_completion_then_fails(fake_ups, tmp_path):
    from cloud_client.errors import ArchiveUnavailable

    sink, ob, item = _queued_report(fake_ups, tmp_path)
    sink.worklist.claim("2.25.1")

    def down(*_a, **_k):
        raise ArchiveUnavailable(detail="test: worklist down")

    sink.worklist._put_state = down
    with pytest.raises(ArchiveUnavailable):
        ob.deliver_one(item.item_id, sink)
    left = ob.items()[0]
    assert left.stored and not left.completed
    fake_ups.requests.clear()
    del sink.worklist._put_state  # the worklist is back
    assert ob.deliver_one(item.item_id, sink)
    assert not _stows(fake_ups) and fake_ups.state == "COMPLETED"  # the SR was not sent again


def test_forgetting_a_completed_claim_skips_the_directory_fsync_but_a_release_does_not(tmp_path, monkeypatch):
    """remove(durable=False) (completion: the workitem is in its final state) fsyncs the new file's bytes - a power
    cut cannot leave an empty file that would lose the other claims - but not the rename; the default (release)
    fsyncs the file and its directory, so a released claim cannot come back after a power cut."""
    import os

    from cloud_client.worklist import TransactionStore

    store = TransactionStore(tmp_path / "tx.json")
    store.put("https://pacs", "reader1", "1.2.3", "9.9", pending=False)
    store.put("https://pacs", "reader1", "1.2.4", "9.8", pending=False)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store.remove("https://pacs", "reader1", "1.2.3", durable=False)
    assert len(synced) == 1 and store.held("https://pacs", "reader1") == ["1.2.4"]
    store.remove("https://pacs", "reader1", "1.2.4")
    assert len(synced) == 3 and store.held("https://pacs", "reader1") == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []
