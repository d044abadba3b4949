"""The reference cloud under faults and restarts: C-STORE routing, workitems surviving an Orthanc restart,
a worklist-service restart and a whole-cloud restart (without duplicate items), report SRs to DIR/outbound."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from pydicom.uid import generate_uid

from cloud.ups import performer_of, text
from tests.fixtures.cloud import stow, wait_for_workitems

pytestmark = pytest.mark.integration
DJ = {"Content-Type": "application/dicom+json"}


def _ct_head(real_data: Path) -> tuple[Path, str]:
    import pydicom

    folder = real_data / "01_ct_head_gantry_tilt_series"
    uid = pydicom.dcmread(min(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    return folder, uid


def _dx_chest(real_data: Path) -> tuple[list[Path], str]:
    import pydicom

    files = sorted((real_data / "11_dx_chest_mono1_small").rglob("*.dcm"))
    return files, pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID


def _claim(c, uid: str) -> str:
    tuid = generate_uid(prefix=None)
    body = json.dumps({"00081195": {"vr": "UI", "Value": [tuid]}, "00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}})
    r = requests.put(f"{c.base_url}/workitems/{uid}/state", data=body, headers=DJ, auth=c.auth(), timeout=10)
    assert r.status_code == 200
    return tuid


def test_c_store_from_a_modality_is_routed(empty_cloud, real_data):
    assert shutil.which("storescu"), "dcmtk's storescu is missing (Debian package dcmtk; `make test` installs it)"
    c = empty_cloud
    folder, study_uid = _ct_head(real_data)
    argv = ["storescu", "-aet", "CT_SCANNER", "-aec", c.ae_title, "+sd", "127.0.0.1", str(c.dicom_port), str(folder)]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    items = wait_for_workitems(c, study_uid)
    assert len(items) == 1
    assert performer_of(items[0]) == "reader2"              # CT HEAD -> neuro -> reader2 in the demo rules
    sp = items[0]["00741210"]["Value"]
    assert {text(i, "0040A160") for i in sp} == {"CT", "HEAD"}


def test_workitems_survive_orthanc_restart_and_routing_resumes(empty_cloud, real_data):
    c = empty_cloud
    folder, head_uid = _ct_head(real_data)
    stow(c, sorted(folder.glob("*.dcm"))[:5])
    item = wait_for_workitems(c, head_uid)[0]
    uid = text(item, "00080018")
    _claim(c, uid)
    c.kill_orthanc()
    assert requests.get(f"{c.base_url}/studies", auth=c.auth(), timeout=10).status_code in (502, 503, 504)
    # the worklist keeps answering while the archive is down
    r = requests.get(f"{c.base_url}/workitems/{uid}", auth=c.auth(), timeout=10)
    assert r.status_code == 200 and text(r.json(), "00741000") == "IN PROGRESS"
    c.start_orthanc()
    assert requests.get(f"{c.base_url}/studies", auth=c.auth(), timeout=10).status_code == 200
    files, chest_uid = _dx_chest(real_data)
    stow(c, files)
    chest = wait_for_workitems(c, chest_uid)
    assert len(chest) == 1 and performer_of(chest[0]) == "reader1"       # DX THORAX -> chest -> reader1
    again = requests.get(f"{c.base_url}/workitems/{uid}", auth=c.auth(), timeout=10).json()
    assert text(again, "00741000") == "IN PROGRESS"
    assert len(wait_for_workitems(c, head_uid)) == 1


def test_workitems_survive_service_and_cloud_restart_without_duplicates(tmp_path, real_data):
    from cloud.launcher import CloudProcess
    from tests.fixtures.cloud import _require_servers

    _require_servers()
    folder, head_uid = _ct_head(real_data)
    c = CloudProcess(tmp_path / "cloud").start()
    try:
        stow(c, sorted(folder.glob("*.dcm"))[:3])
        uid = text(wait_for_workitems(c, head_uid)[0], "00080018")
        tuid = _claim(c, uid)
        c.stop_worklist()
        assert requests.get(f"{c.base_url}/workitems", auth=c.auth(), timeout=10).status_code in (502, 503, 504)
        c.start_worklist()
        assert text(requests.get(f"{c.base_url}/workitems/{uid}", auth=c.auth(), timeout=10).json(),
                    "00741000") == "IN PROGRESS"
    finally:
        c.stop()
    c2 = CloudProcess(tmp_path / "cloud").start()       # same directory, new ports
    try:
        items = wait_for_workitems(c2, head_uid)
        assert [text(w, "00080018") for w in items] == [uid]       # the feed position was kept: no duplicate
        assert text(items[0], "00741000") == "IN PROGRESS"
        # the owner's Transaction UID survived the restart too
        r = requests.post(f"{c2.base_url}/workitems/{uid}?transaction={tuid}", headers=DJ, auth=c2.auth(),
                          data=json.dumps({"00741202": {"vr": "LO", "Value": ["after restart"]}}), timeout=10)
        assert r.status_code == 200
        r = requests.get(f"{c2.base_url}/studies", params={"StudyInstanceUID": head_uid}, auth=c2.auth(),
                         timeout=10)
        assert r.status_code == 200 and len(r.json()) == 1
    finally:
        c2.stop()


def _verified_report_sr(tmp_path: Path) -> Path:
    """A signed TID 2000 report SR as the workstation writes it (reporting.sr)."""
    from reporting.model import Person, Report, StudyContext
    from reporting.sr import build_report_sr
    from reporting.templates import TemplateLibrary

    reader = Person("reader1", "One^Reader")
    r = Report(TemplateLibrary().get("ct-head-noncontrast"),
               StudyContext(study_uid=generate_uid(), patient_id="DEMO-9", issuer_of_patient_id="READROOM-DEMO",
                            patient_name="SYNTHETIC^OUTBOUND", patient_sex="F", accession_number="ACC-OUT",
                            study_date="20261204", study_time="101500"), author=reader)
    r.apply_macro("normal")
    r.set_field("impression", "No acute intracranial abnormality.")
    ds = build_report_sr(r, reader_name=reader.name, organization="ReadRoom demo",
                         verified_at="2026-12-04T10:30:00+00:00")
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_stored_report_sr_goes_to_outbound(empty_cloud, tmp_path):
    import time

    import pydicom

    c = empty_cloud
    sr = _verified_report_sr(tmp_path)
    sop = pydicom.dcmread(sr, stop_before_pixels=True).SOPInstanceUID
    stow(c, [sr])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(c.outbound_dir.iterdir())) < 2:
        time.sleep(0.3)
    written = sorted(p.name for p in c.outbound_dir.iterdir())
    assert written == [f"{sop}.diagnosticreport.json", f"{sop}.oru.hl7"], (
        (c.dir / "logs" / "worklist.log").read_text()[-1500:])
    assert "No acute intracranial abnormality." in (c.outbound_dir / f"{sop}.oru.hl7").read_text()
    # a study holding only a report is not a reading task: no workitem for it
    time.sleep(3)
    study = pydicom.dcmread(sr, stop_before_pixels=True).StudyInstanceUID
    assert wait_for_workitems(c, study, timeout=0) == []


def test_new_study_pushes_an_assigned_event_to_its_reader(empty_cloud, real_data):
    import base64
    import time

    from websockets.sync.client import connect

    c = empty_cloud
    flt = "ScheduledHumanPerformersSequence.HumanPerformerCodeSequence.CodeValue=reader1"
    r = requests.post(f"{c.base_url}/workitems/1.2.840.10008.5.1.4.34.5.1/subscribers/R1WS?{flt}", auth=c.auth(),
                      timeout=10)
    assert r.status_code == 201
    hdr = {"Authorization": "Basic " + base64.b64encode(b"reader1:reader1").decode()}
    with connect(c.base_url.replace("http://", "ws://") + "/subscribers/R1WS", additional_headers=hdr,
                 open_timeout=10) as ws:
        _folder, _ = _ct_head(real_data)
        stow(c, sorted(_folder.glob("*.dcm"))[:2])          # neuro -> reader2: must not reach reader1
        files, chest_uid = _dx_chest(real_data)
        stow(c, files)                                        # chest -> reader1
        deadline, events = time.monotonic() + 60, []
        while not any(e["00001002"]["Value"] == [5] for e in events) and time.monotonic() < deadline:
            events.append(json.loads(ws.recv(timeout=max(1.0, deadline - time.monotonic()))))
    assigned = next((e for e in events if e["00001002"]["Value"] == [5]), None)
    assert assigned is not None, "no assigned event for reader1"
    assert assigned["0020000D"]["Value"] == [chest_uid]
    assert assigned["00404034"]["Value"][0]["00404009"]["Value"][0]["00080100"]["Value"] == ["reader1"]
    item = wait_for_workitems(c, chest_uid)[0]
    # only reader1's item reached reader1's filtered subscription (the neuro study went to reader2)
    assert {e["00001000"]["Value"][0] for e in events} == {text(item, "00080018")}


def test_a_port_taken_between_choosing_and_binding_is_retried(tmp_path):
    """Another process may take the chosen free port before nginx binds it (seen once in CI): the launcher picks
    new ports and starts."""
    import socket

    from cloud.launcher import CloudProcess
    from tests.fixtures.cloud import _require_servers

    _require_servers()
    c = CloudProcess(tmp_path / "cloud")
    taken = c.http_port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen(1)
        c.start()
        try:
            assert c.http_port != taken
            assert requests.get(f"{c.base_url}/workitems", auth=c.auth(), timeout=10).status_code == 200
        finally:
            c.stop()
