"""cloud.ups (state machine, matching, persistence) and cloud.service (HTTP + WebSocket) without servers.

The service runs in-process through Starlette's TestClient with a real SQLite file; the integration tests
(tests/integration/test_cloud_*.py) repeat the important cases through nginx against real Orthanc.
"""
from __future__ import annotations

import json
import threading

import pytest
from pydicom.uid import generate_uid
from starlette.testclient import TestClient

from cloud.auth import Authenticator
from cloud.config import load_config
from cloud.service import create_app
from cloud.ups import (
    EVENT_ASSIGNED,
    EVENT_CANCEL_REQUESTED,
    EVENT_STATE_REPORT,
    GLOBAL_SUBSCRIPTION,
    UpsError,
    WorkitemStore,
    missing_final_state,
    parse_body,
    text,
)

AUTH = ("reader1", "reader1")


def workitem(performer=None, priority="MEDIUM", study="1.2.3.4", patient="P1", start="20261204080000"):
    ds = {"00741200": {"vr": "CS", "Value": [priority]},
          "00404005": {"vr": "DT", "Value": [start]},
          "00100020": {"vr": "LO", "Value": [patient]},
          "00100010": {"vr": "PN", "Value": [{"Alphabetic": "SYNTHETIC^" + patient}]},
          "0020000D": {"vr": "UI", "Value": [study]},
          "00404021": {"vr": "SQ", "Value": [{"0020000D": {"vr": "UI", "Value": [study]}}]},
          "00404034": {"vr": "SQ", "Value": []}}
    if performer:
        ds["00404034"]["Value"] = [{"00404009": {"vr": "SQ", "Value": [{
            "00080100": {"vr": "SH", "Value": [performer]}, "00080102": {"vr": "SH", "Value": ["READROOM"]},
            "00080104": {"vr": "LO", "Value": [performer]}}]}}]
    return ds


def final_attrs():
    code = {"00080100": {"vr": "SH", "Value": ["X"]}, "00080102": {"vr": "SH", "Value": ["READROOM"]},
            "00080104": {"vr": "LO", "Value": ["x"]}}
    return {"00741216": {"vr": "SQ", "Value": [{
        "00404028": {"vr": "SQ", "Value": [code]},
        "00404050": {"vr": "DT", "Value": ["20261204090000"]},
        "00404051": {"vr": "DT", "Value": ["20261204091500"]},
        "00404019": {"vr": "SQ", "Value": [code]},
        "00404033": {"vr": "SQ", "Value": [{"0020000D": {"vr": "UI", "Value": ["1.2.3.4"]}}]}}]}}


def state_body(tuid, state):
    return {"00081195": {"vr": "UI", "Value": [tuid]}, "00741000": {"vr": "CS", "Value": [state]}}


@pytest.fixture
def store(tmp_path):
    s = WorkitemStore(tmp_path / "wl.sqlite")
    yield s
    s.close()


# ---------------------------------------------------------------- store

def test_lifecycle_claim_update_complete(store):
    uid, events = store.create(workitem("reader1"))
    assert [e.event_type for e in events] == [EVENT_STATE_REPORT, EVENT_ASSIGNED]
    assert text(store.get(uid), "00741000") == "SCHEDULED"
    with pytest.raises(UpsError) as e:
        store.update(uid, final_attrs(), tuid="1.2.999")
    assert e.value.status == 400 and "SCHEDULED" in e.value.message
    t1 = generate_uid(prefix=None)
    store.change_state(uid, t1, "IN PROGRESS")
    with pytest.raises(UpsError) as e:
        store.change_state(uid, generate_uid(prefix=None), "IN PROGRESS")
    assert e.value.status == 409
    with pytest.raises(UpsError) as e:
        store.update(uid, final_attrs(), tuid=None)
    assert e.value.status == 400 and "Transaction UID" in e.value.message
    with pytest.raises(UpsError) as e:
        store.update(uid, final_attrs(), tuid="1.2.3")
    assert "wrong Transaction UID" in e.value.message
    with pytest.raises(UpsError) as e:
        store.change_state(uid, t1, "COMPLETED")
    assert e.value.status == 400 and "UnifiedProcedureStepPerformedProcedureSequence > OutputInformationSequence" in e.value.message
    store.update(uid, final_attrs(), tuid=t1)
    store.change_state(uid, t1, "COMPLETED")
    got = store.get(uid)
    assert text(got, "00741000") == "COMPLETED"
    with pytest.raises(UpsError) as e:
        store.change_state(uid, t1, "CANCELED")
    assert e.value.status == 409


def test_completion_error_names_each_missing_attribute(store):
    attrs = final_attrs()
    del attrs["00741216"]["Value"][0]["00404033"]      # OutputInformationSequence
    del attrs["00741216"]["Value"][0]["00404051"]      # end datetime
    uid, _ = store.create(workitem())
    t = generate_uid(prefix=None)
    store.change_state(uid, t, "IN PROGRESS")
    store.update(uid, attrs, tuid=t)
    with pytest.raises(UpsError) as e:
        store.change_state(uid, t, "COMPLETED")
    assert "OutputInformationSequence" in e.value.message
    assert "PerformedProcedureStepEndDateTime" in e.value.message
    assert "PerformedWorkitemCodeSequence" not in e.value.message
    assert missing_final_state(store.get(uid)) == [
        "UnifiedProcedureStepPerformedProcedureSequence > PerformedProcedureStepEndDateTime",
        "UnifiedProcedureStepPerformedProcedureSequence > OutputInformationSequence"]


def test_no_way_back_to_scheduled_and_cancel_needs_owner(store):
    uid, _ = store.create(workitem())
    t = generate_uid(prefix=None)
    store.change_state(uid, t, "IN PROGRESS")
    with pytest.raises(UpsError, match="back to SCHEDULED"):
        store.change_state(uid, t, "SCHEDULED")
    with pytest.raises(UpsError, match="wrong Transaction UID"):
        store.change_state(uid, "1.2.3", "CANCELED")
    store.change_state(uid, t, "CANCELED")
    ds = store.get(uid)
    assert text(ds, "00741000") == "CANCELED"
    assert ds["00741002"]["Value"][0]["00404052"]["Value"]        # cancellation datetime filled in


def test_cancel_request(store):
    sched, _ = store.create(workitem())
    ev = store.cancel_request(sched, "duplicate order")
    assert text(store.get(sched), "00741000") == "CANCELED"
    assert ev[0].event_type == EVENT_STATE_REPORT
    busy, _ = store.create(workitem())
    store.change_state(busy, generate_uid(prefix=None), "IN PROGRESS")
    ev = store.cancel_request(busy, "patient left")
    assert ev[0].event_type == EVENT_CANCEL_REQUESTED
    assert text(ev[0].message, "00741238") == "patient left"
    assert text(store.get(busy), "00741000") == "IN PROGRESS"   # the owner decides
    with pytest.raises(UpsError) as e:
        store.cancel_request(sched, None)
    assert e.value.status == 409


def test_concurrent_claims_exactly_one_wins(tmp_path):
    store = WorkitemStore(tmp_path / "wl.sqlite")
    uids = [store.create(workitem())[0] for _ in range(20)]
    other = WorkitemStore(tmp_path / "wl.sqlite")          # a second connection, as a second process would
    results: dict[str, list] = {u: [] for u in uids}

    def claim(s, uid):
        try:
            s.change_state(uid, generate_uid(prefix=None), "IN PROGRESS")
            results[uid].append(200)
        except UpsError as e:
            results[uid].append(e.status)

    threads = [threading.Thread(target=claim, args=(s, u)) for u in uids for s in (store, other, store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for u in uids:
        assert sorted(results[u]) == [200, 409, 409, 409]
    store.close()
    other.close()


def test_search_matching_keys_and_paging(store):
    a, _ = store.create(workitem("reader1", "HIGH", study="1.1", patient="A", start="20261201100000"))
    b, _ = store.create(workitem("reader2", "MEDIUM", study="1.2", patient="B", start="20261202100000"))
    c, _ = store.create(workitem(None, "LOW", study="1.3", patient="C", start="20261203100000"))
    store.change_state(b, generate_uid(prefix=None), "IN PROGRESS")
    uids = lambda items: [text(i, "00080018") for i in items]
    assert uids(store.search([])) == [a, b, c]                                   # priority order
    assert uids(store.search([("ProcedureStepState", "SCHEDULED")])) == [a, c]
    assert uids(store.search([("ScheduledProcedureStepPriority", "HIGH\\LOW")])) == [a, c]
    perf = "ScheduledHumanPerformersSequence.HumanPerformerCodeSequence.CodeValue"
    assert uids(store.search([(perf, "reader2")])) == [b]
    assert uids(store.search([("00404034.00404009.00080100", "reader1")])) == [a]
    assert uids(store.search([("PatientID", "C")])) == [c]
    assert uids(store.search([("StudyInstanceUID", "1.2")])) == [b]
    assert uids(store.search([("InputInformationSequence.StudyInstanceUID", "1.3")])) == [c]
    assert uids(store.search([("ScheduledProcedureStepStartDateTime", "20261202-20261203")])) == [b, c]
    assert uids(store.search([("ScheduledProcedureStepStartDateTime", "-20261201")])) == [a]
    assert uids(store.search([("PatientName", "synthetic^b*")])) == [b]          # PN: wildcard, any case
    assert uids(store.search([], limit=2)) == [a, b]
    assert uids(store.search([], limit=2, offset=2)) == [c]
    assert uids(store.search([("PatientName", "SYNTHETIC*")], limit=1, offset=1)) == [b]
    with pytest.raises(UpsError, match="unknown attribute"):
        store.search([("NoSuchKeyword", "x")])


def test_workitems_persist_across_reopen(tmp_path):
    s = WorkitemStore(tmp_path / "wl.sqlite")
    uid, _ = s.create(workitem("reader1"))
    t = generate_uid(prefix=None)
    s.change_state(uid, t, "IN PROGRESS")
    s.set_kv("orthanc_changes_seq", "42")
    s.close()
    s2 = WorkitemStore(tmp_path / "wl.sqlite")
    assert text(s2.get(uid), "00741000") == "IN PROGRESS"
    with pytest.raises(UpsError):
        s2.change_state(uid, generate_uid(prefix=None), "IN PROGRESS")
    s2.update(uid, final_attrs(), tuid=t)          # the TUID survived too
    assert s2.get_kv("orthanc_changes_seq") == "42"
    s2.close()


def test_create_for_study_is_idempotent(store):
    u1, _ev = store.create_for_study("9.9", workitem(study="9.9"))
    u2, ev2 = store.create_for_study("9.9", workitem(study="9.9"))
    assert u1 and u2 is None and ev2 == []
    assert len(store.search([("StudyInstanceUID", "9.9")])) == 1


def test_addendum_output_recorded_only_in_a_completed_workitem_once(store):
    uid, _ev = store.create_for_study("9.8", workitem(study="9.8"))
    out = {"0020000D": {"vr": "UI", "Value": ["9.8"]}, "00081199": {"vr": "SQ", "Value": [
        {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.88.22"]},
         "00081155": {"vr": "UI", "Value": ["9.8.77"]}}]}}
    assert store.record_output("9.8", out, "9.8.77") is None          # not finished: nothing recorded
    assert store.record_output("5.5", out, "9.8.77") is None          # no workitem for that study
    t1 = generate_uid(prefix=None)
    store.change_state(uid, t1, "IN PROGRESS")
    store.update(uid, final_attrs(), tuid=t1)
    store.change_state(uid, t1, "COMPLETED")
    assert store.record_output("9.8", out, "9.8.77") == uid
    assert store.record_output("9.8", out, "9.8.77") == uid          # the same addendum again: not doubled
    outputs = store.get(uid)["00741216"]["Value"][0]["00404033"]["Value"]
    assert len(outputs) == 2 and outputs[1]["00081199"]["Value"][0]["00081155"]["Value"] == ["9.8.77"]
    assert text(store.get(uid), "00741000") == "COMPLETED"
    # a workitem a scheduler created (not routed by the service) gets its addendum too
    other, _ = store.create(workitem(study="9.7"))
    t2 = generate_uid(prefix=None)
    store.change_state(other, t2, "IN PROGRESS")
    store.update(other, final_attrs(), tuid=t2)
    store.change_state(other, t2, "COMPLETED")
    assert store.record_output("9.7", out, "9.7.77") == other


@pytest.mark.parametrize("body, words", [
    (b"", "empty"), (b"{not json", "malformed JSON"), (b"[1, 2]", "exactly one"), (b'"x"', "object"),
    (b'{"PatientID": "x"}', "8-digit hex tag"), (b'{"00100020": {"Value": ["x"]}}', "vr"),
])
def test_parse_body_rejects_with_reasons(body, words):
    with pytest.raises(UpsError, match=words) as e:
        parse_body(body)
    assert e.value.status == 400


def test_create_refuses_wrong_initial_state_and_duplicates(store):
    bad = workitem()
    bad["00741000"] = {"vr": "CS", "Value": ["IN PROGRESS"]}
    with pytest.raises(UpsError, match="SCHEDULED"):
        store.create(bad)
    uid, _ = store.create(workitem(), uid="1.2.840.99.1")
    with pytest.raises(UpsError) as e:
        store.create(workitem(), uid=uid)
    assert e.value.status == 409


# ---------------------------------------------------------------- service (HTTP + WebSocket)

@pytest.fixture
def client(tmp_path):
    config = load_config(None)
    s = WorkitemStore(tmp_path / "svc.sqlite")
    app = create_app(s, config, Authenticator(config.users))
    with TestClient(app) as c:
        yield c
    s.close()


def test_http_auth_required(client):
    assert client.get("/dicom-web/workitems").status_code == 401
    assert client.get("/dicom-web/workitems", auth=("reader1", "wrong")).status_code == 401
    r = client.get("/dicom-web/workitems", auth=AUTH)
    assert r.status_code == 200 and r.json() == []


def test_http_flow_and_transaction_query(client):
    r = client.post("/dicom-web/workitems", auth=AUTH, content=json.dumps(workitem("reader1")),
                    headers={"Content-Type": "application/dicom+json"})
    assert r.status_code == 201
    loc = r.headers["Location"]
    uid = loc.rsplit("/", 1)[1]
    path = f"/dicom-web/workitems/{uid}"
    tuid = generate_uid(prefix=None)
    assert client.put(path + "/state", auth=AUTH, json=state_body(tuid, "IN PROGRESS")).status_code == 200
    r2 = client.put(path + "/state", auth=("reader2", "reader2"),
                    json=state_body(generate_uid(prefix=None), "IN PROGRESS"))
    assert r2.status_code == 409
    for account in ("clinic", "qa"):      # an uploader or a QA reviewer cannot take a reading task
        r4 = client.put(path + "/state", auth=(account, account),
                        json=state_body(generate_uid(prefix=None), "IN PROGRESS"))
        assert r4.status_code == 403 and "only readers" in r4.json()["error"]
    got = client.get(path, auth=AUTH).json()
    assert "00081195" not in got and got["00741000"]["Value"] == ["IN PROGRESS"]
    for query in ("", "?ProcedureStepState=IN%20PROGRESS", "?PatientName=SYNTHETIC*"):
        found = client.get("/dicom-web/workitems" + query, auth=AUTH).json()
        assert len(found) == 1 and "00081195" not in found[0] and tuid not in json.dumps(found)
    r3 = client.put(path + "/state", auth=AUTH, json=state_body(tuid, "COMPLETED"))
    assert r3.status_code == 400 and "OutputInformationSequence" in r3.json()["error"]
    assert client.post(path, auth=AUTH, json=final_attrs()).status_code == 400          # no TUID
    assert client.post(f"{path}?transaction={tuid}", auth=AUTH, json=final_attrs()).status_code == 200
    assert client.put(path + "/state", auth=AUTH, json=state_body(tuid, "COMPLETED")).status_code == 200
    assert client.get("/dicom-web/workitems?ProcedureStepState=COMPLETED", auth=AUTH).json()[0][
        "00080018"]["Value"] == [uid]


def test_http_only_a_scheduler_changes_a_scheduled_item(client):
    # a reader cannot reassign or re-prioritise a scheduled item; a scheduler (here the clinic's uploader) can
    other = client.post("/dicom-web/workitems", auth=("clinic", "clinic"), json=workitem("reader2", "HIGH"))
    path = "/dicom-web/workitems/" + other.headers["Location"].rsplit("/", 1)[1]
    lower = {"00741200": {"vr": "CS", "Value": ["LOW"]}}
    r = client.post(path, auth=AUTH, json=lower)
    assert r.status_code == 403 and "scheduler" in r.json()["error"]
    assert client.get(path, auth=AUTH).json()["00741200"]["Value"] == ["HIGH"]
    assert client.post(path, auth=("clinic", "clinic"), json=lower).status_code == 200
    assert client.get(path, auth=AUTH).json()["00741200"]["Value"] == ["LOW"]


def test_http_malformed_json_400_with_message(client):
    r = client.post("/dicom-web/workitems", auth=AUTH, content=b'{"00100020": {"vr": "LO", "Value": [',
                    headers={"Content-Type": "application/dicom+json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    assert client.get("/dicom-web/workitems?limit=x", auth=AUTH).status_code == 400
    assert client.get("/dicom-web/workitems/1.2.3", auth=AUTH).status_code == 404
    r = client.post("/dicom-web/workitems", auth=AUTH, content=b"<xml/>",
                    headers={"Content-Type": "application/dicom+xml"})
    assert r.status_code == 415


def test_websocket_events_for_subscribers(client):
    assert client.post(f"/dicom-web/workitems/{GLOBAL_SUBSCRIPTION}/subscribers/WS1", auth=AUTH).status_code == 201
    import base64

    hdr = {"Authorization": "Basic " + base64.b64encode(b"reader1:reader1").decode()}
    with client.websocket_connect("/dicom-web/subscribers/WS1", headers=hdr) as ws:
        r = client.post("/dicom-web/workitems", auth=AUTH, json=workitem("reader2", "HIGH"))
        uid = r.headers["Location"].rsplit("/", 1)[1]
        first, second = json.loads(ws.receive_text()), json.loads(ws.receive_text())
        assert first["00001000"]["Value"] == [uid] and first["00001002"]["Value"] == [EVENT_STATE_REPORT]
        assert second["00001002"]["Value"] == [EVENT_ASSIGNED]
        assert second["00404034"]["Value"][0]["00404009"]["Value"][0]["00080100"]["Value"] == ["reader2"]
        client.put(f"/dicom-web/workitems/{uid}/state", auth=AUTH,
                   json=state_body(generate_uid(prefix=None), "IN PROGRESS"))
        ev = json.loads(ws.receive_text())
        assert ev["00741000"]["Value"] == ["IN PROGRESS"]


def test_websocket_filtered_subscription_and_auth(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/dicom-web/subscribers/X") as ws:
        ws.receive_text()
    flt = "ScheduledHumanPerformersSequence.HumanPerformerCodeSequence.CodeValue=reader1"
    client.post(f"/dicom-web/workitems/1.2.840.10008.5.1.4.34.5.1/subscribers/R1?{flt}", auth=AUTH)
    import base64

    hdr = {"Authorization": "Basic " + base64.b64encode(b"reader1:reader1").decode()}
    with client.websocket_connect("/dicom-web/subscribers/R1", headers=hdr) as ws:
        client.post("/dicom-web/workitems", auth=AUTH, json=workitem("reader2"))     # not for reader1
        r = client.post("/dicom-web/workitems", auth=AUTH, json=workitem("reader1"))
        uid = r.headers["Location"].rsplit("/", 1)[1]
        ev = json.loads(ws.receive_text())
        assert ev["00001000"]["Value"] == [uid]
