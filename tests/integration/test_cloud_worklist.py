"""UPS-RS through the real front door (nginx -> worklist service): claim race, completion rules, malformed
JSON, cancel, and the WebSocket event channel."""
from __future__ import annotations

import base64
import json
import threading

import pytest
import requests
from pydicom.uid import generate_uid

from cloud.ups import GLOBAL_SUBSCRIPTION, text
from tests.fixtures.cloud import wait_until

pytestmark = pytest.mark.integration
DJ = {"Content-Type": "application/dicom+json"}


def new_item(c, performer="reader1", user="clinic") -> str:
    ds = {"00741200": {"vr": "CS", "Value": ["HIGH"]},
          "0020000D": {"vr": "UI", "Value": [generate_uid()]},
          "00100020": {"vr": "LO", "Value": ["SYN-1"]},
          "00404034": {"vr": "SQ", "Value": [{"00404009": {"vr": "SQ", "Value": [{
              "00080100": {"vr": "SH", "Value": [performer]}, "00080102": {"vr": "SH", "Value": ["READROOM"]},
              "00080104": {"vr": "LO", "Value": [performer]}}]}}]}}
    r = requests.post(f"{c.base_url}/workitems", data=json.dumps(ds), headers=DJ, auth=c.auth(user), timeout=10)
    assert r.status_code == 201, r.text
    assert r.headers["Location"].startswith(c.base_url + "/workitems/")
    return r.headers["Location"].rsplit("/", 1)[1]


def state(tuid, st):
    return json.dumps({"00081195": {"vr": "UI", "Value": [tuid]}, "00741000": {"vr": "CS", "Value": [st]}})


def test_claim_race_one_wins_the_others_get_409(empty_cloud):
    c = empty_cloud
    uid = new_item(c)
    url = f"{c.base_url}/workitems/{uid}/state"
    barrier = threading.Barrier(6)
    codes = []

    def claim(user):
        s = requests.Session()
        s.auth = c.auth(user)
        barrier.wait()
        codes.append(s.put(url, data=state(generate_uid(prefix=None), "IN PROGRESS"), headers=DJ, timeout=30)
                     .status_code)

    threads = [threading.Thread(target=claim, args=(u,)) for u in ("reader1", "reader2") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409, 409, 409, 409]
    got = requests.get(f"{c.base_url}/workitems/{uid}", auth=c.auth("qa"), timeout=10).json()
    assert text(got, "00741000") == "IN PROGRESS" and "00081195" not in got


def test_completion_needs_final_state_attributes(empty_cloud):
    c = empty_cloud
    uid = new_item(c)
    tuid = generate_uid(prefix=None)
    base = f"{c.base_url}/workitems/{uid}"
    assert requests.put(base + "/state", data=state(tuid, "IN PROGRESS"), headers=DJ, auth=c.auth(),
                        timeout=10).status_code == 200
    r = requests.put(base + "/state", data=state(tuid, "COMPLETED"), headers=DJ, auth=c.auth(), timeout=10)
    assert r.status_code == 400
    msg = r.json()["error"]
    for name in ("PerformedProcedureStepEndDateTime", "OutputInformationSequence", "PerformedWorkitemCodeSequence"):
        assert name in msg
    code = {"00080100": {"vr": "SH", "Value": ["RR"]}, "00080102": {"vr": "SH", "Value": ["READROOM"]},
            "00080104": {"vr": "LO", "Value": ["ReadRoom"]}}
    performed = {"00741216": {"vr": "SQ", "Value": [{
        "00404028": {"vr": "SQ", "Value": [code]}, "00404050": {"vr": "DT", "Value": ["20261204100000"]},
        "00404051": {"vr": "DT", "Value": ["20261204101000"]}, "00404019": {"vr": "SQ", "Value": [code]},
        "00404033": {"vr": "SQ", "Value": [{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]}}]}}
    other = generate_uid(prefix=None)
    r = requests.post(f"{base}?transaction={other}", data=json.dumps(performed), headers=DJ, auth=c.auth(),
                      timeout=10)
    assert r.status_code == 400 and "Transaction UID" in r.json()["error"]
    r = requests.post(f"{base}?transaction={tuid}", data=json.dumps(performed), headers=DJ, auth=c.auth(),
                      timeout=10)
    assert r.status_code == 200
    assert requests.put(base + "/state", data=state(tuid, "COMPLETED"), headers=DJ, auth=c.auth(),
                        timeout=10).status_code == 200
    done = requests.get(f"{c.base_url}/workitems", params={"ProcedureStepState": "COMPLETED"}, auth=c.auth(),
                        timeout=10).json()
    assert [text(w, "00080018") for w in done] == [uid]


def test_malformed_json_gets_400_with_a_message(empty_cloud):
    c = empty_cloud
    uid = new_item(c)
    for body in (b"{", b'{"00100020": {"vr": "LO", "Value": ["x"]', b"[]", b"not json at all"):
        r = requests.post(f"{c.base_url}/workitems", data=body, headers=DJ, auth=c.auth("clinic"), timeout=10)
        assert r.status_code == 400 and r.json()["error"], body
        r = requests.put(f"{c.base_url}/workitems/{uid}/state", data=body, headers=DJ, auth=c.auth(), timeout=10)
        assert r.status_code == 400 and r.json()["error"], body
        r = requests.post(f"{c.base_url}/workitems/{uid}", data=body, headers=DJ, auth=c.auth(), timeout=10)
        assert r.status_code == 400 and r.json()["error"], body
    assert "malformed JSON" in r.json()["error"]


def test_cancel_request_and_search_paging(empty_cloud):
    c = empty_cloud
    uids = [new_item(c, performer="reader2") for _ in range(5)]
    r = requests.post(f"{c.base_url}/workitems/{uids[0]}/cancelrequest", auth=c.auth("qa"), timeout=10)
    assert r.status_code == 202
    perf = "ScheduledHumanPerformersSequence.HumanPerformerCodeSequence.CodeValue"
    open_items = requests.get(f"{c.base_url}/workitems", auth=c.auth("reader2"), timeout=10,
                              params={perf: "reader2", "ProcedureStepState": "SCHEDULED"}).json()
    assert sorted(text(w, "00080018") for w in open_items) == sorted(uids[1:])
    page1 = requests.get(f"{c.base_url}/workitems", params={"limit": 2}, auth=c.auth(), timeout=10).json()
    page3 = requests.get(f"{c.base_url}/workitems", params={"limit": 2, "offset": 4}, auth=c.auth(),
                         timeout=10).json()
    assert len(page1) == 2 and len(page3) == 1


def test_event_channel_through_nginx(empty_cloud):
    from websockets.sync.client import connect

    c = empty_cloud
    r = requests.post(f"{c.base_url}/workitems/{GLOBAL_SUBSCRIPTION}/subscribers/READER1WS", auth=c.auth(),
                      timeout=10)
    assert r.status_code == 201
    ws_url = c.base_url.replace("http://", "ws://") + "/subscribers/READER1WS"
    hdr = {"Authorization": "Basic " + base64.b64encode(b"reader1:reader1").decode()}
    with connect(ws_url, additional_headers=hdr, open_timeout=10) as ws:
        uid = new_item(c, performer="reader1")
        events = [json.loads(ws.recv(timeout=10)) for _ in range(2)]
        assert [e["00001000"]["Value"][0] for e in events] == [uid, uid]
        assert {e["00001002"]["Value"][0] for e in events} == {1, 5}      # state report + assigned
        requests.put(f"{c.base_url}/workitems/{uid}/state", data=state(generate_uid(prefix=None), "IN PROGRESS"),
                     headers=DJ, auth=c.auth(), timeout=10)
        ev = json.loads(ws.recv(timeout=10))
        assert ev["00741000"]["Value"] == ["IN PROGRESS"]


def test_client_worklist_events_push_new_assignments_and_fall_back_without_ups_events(empty_cloud):
    """cloud_client.events: subscribed through the front door, a new assignment arrives as an event within seconds;
    an archive without UPS events (here: a path that is not a worklist) leaves the client on polling."""
    import queue

    from cloud_client.events import CONNECTED, UNSUPPORTED, WorklistEvents, subscriber_aet
    from cloud_client.profiles import ServerProfile
    from cloud_client.session import DicomWebSession

    c = empty_cloud
    got: queue.Queue = queue.Queue()
    states: list[str] = []
    # one subscription per installation: the same reader at home and at the hospital are two subscribers
    assert subscriber_aet("reader1") == subscriber_aet("reader1")            # stable for this installation
    assert subscriber_aet("reader1", "HOME01") != subscriber_aet("reader1", "WARD02")
    assert len(subscriber_aet("a.very.long.user.name")) <= 16
    with DicomWebSession(ServerProfile("t", c.base_url, "reader1"), password="reader1") as session:
        events = WorklistEvents(session, got.put, on_state=states.append)
        other: queue.Queue = queue.Queue()
        hospital = WorklistEvents(session, other.put, aet=subscriber_aet("reader1", "WARD02"))
        for e in (events, hospital):
            e.start()
        assert wait_until(lambda: events.state == hospital.state == CONNECTED)
        uid = new_item(c, performer="reader1")
        first = got.get(timeout=10)
        assert first["00001000"]["Value"] == [uid] and other.get(timeout=10)["00001000"]["Value"] == [uid]
        assert "00100010" not in first and "SYN-1" not in json.dumps(first)   # UIDs and states, no patient data
        events.stop()
        assert events._thread is None
        assert wait_until(lambda: states[-1] != CONNECTED, timeout=10)
        # closing one workstation does not silence the reader's other one
        while not other.empty():
            other.get_nowait()
        uid2 = new_item(c, performer="reader1")
        assert uid2 in {other.get(timeout=10)["00001000"]["Value"][0] for _ in range(2)}
        hospital.stop()
        none = WorklistEvents(DicomWebSession(ServerProfile("t2", c.base_url, "reader1", workitems_path="nope"),
                                              password="reader1"), got.put)
        none.start()
        assert wait_until(lambda: none.state == UNSUPPORTED)
        none.stop()
        none.session.close()


def test_an_account_without_the_reader_role_cannot_claim_and_is_told_why(empty_cloud, tmp_path):
    from cloud_client.errors import AuthError, NotPermitted
    from cloud_client.profiles import ServerProfile
    from cloud_client.session import DicomWebSession
    from cloud_client.worklist import TransactionStore, WorklistClient

    c = empty_cloud
    uid = new_item(c, performer="reader1")
    with DicomWebSession(ServerProfile("qa", c.base_url, "qa"), password="qa") as qa:
        client = WorklistClient(qa, "qa", store=TransactionStore(path=tmp_path / "qa-tuids.json"))
        with pytest.raises(NotPermitted) as err:
            client.claim(uid)
    assert not isinstance(err.value, AuthError) and "not allowed to claim" in str(err.value)
    item = requests.get(f"{c.base_url}/workitems/{uid}", auth=c.auth(), timeout=10).json()
    assert text(item, "00741000") == "SCHEDULED"                       # untouched, still reader1's
