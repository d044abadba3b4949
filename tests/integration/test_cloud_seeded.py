"""The seeded demo cloud: studies in QIDO-RS, one routed workitem per study, retrieve URLs that work."""
from __future__ import annotations

import datetime as dt

import pytest
import requests

from cloud.config import load_config
from cloud.routing import StudyFacts, subspecialty_for
from cloud.ups import performer_of, text
from tests.fixtures.cloud import stow, wait_for_workitems

pytestmark = pytest.mark.integration


def _dt(s: str) -> dt.datetime:
    return dt.datetime.strptime(s[:14], "%Y%m%d%H%M%S")


def test_seeded_studies_appear_in_qido(cloud):
    assert cloud.seeded, "the demo seeded nothing (is cloud.demo_data there?)"
    r = requests.get(f"{cloud.base_url}/studies", auth=cloud.auth("reader1"), timeout=30,
                     headers={"Accept": "application/dicom+json"})
    assert r.status_code == 200
    found = {s["0020000D"]["Value"][0] for s in r.json()}
    assert {s.study_uid for s in cloud.seeded} <= found


def test_front_door_requires_valid_users(cloud):
    assert requests.get(f"{cloud.base_url}/studies", timeout=10).status_code == 401
    assert requests.get(f"{cloud.base_url}/studies", auth=("reader1", "nope"), timeout=10).status_code == 401
    assert requests.get(f"{cloud.base_url}/workitems", auth=("qa", "wrong"), timeout=10).status_code == 401
    for user in cloud.users:
        assert requests.get(f"{cloud.base_url}/workitems", auth=cloud.auth(user), timeout=10).status_code == 200


def test_each_seeded_study_has_one_workitem_routed_by_the_demo_rules(cloud):
    from cloud.routing import is_reading_task

    config = load_config(None)
    now = dt.datetime.now(dt.UTC)
    routed = 0
    for study in cloud.seeded:
        facts0 = StudyFacts(study.study_uid, frozenset({study.modality}), frozenset(), "", "", study.study_date)
        if not is_reading_task(facts0, config, now):       # the wrist prior from two years ago
            assert wait_for_workitems(cloud, study.study_uid, timeout=0) == [], study.description
            continue
        routed += 1
        items = wait_for_workitems(cloud, study.study_uid, timeout=5)
        assert len(items) == 1, study.description
        wi = items[0]
        assert text(wi, "00741000") in ("SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED")
        expected_priority = "HIGH" if study.priority == "STAT" else "MEDIUM"
        assert text(wi, "00741200") == expected_priority
        sla = config.sla_minutes[expected_priority]
        assert _dt(text(wi, "00404011")) - _dt(text(wi, "00404005")) == dt.timedelta(minutes=sla)
        facts = StudyFacts(study.study_uid, frozenset({study.modality}), frozenset({study.body_part or ""}),
                           study.description)
        sub = subspecialty_for(facts, config.rules)
        reader = performer_of(wi)
        assert sub is not None, f"demo rules should cover {study.modality} {study.body_part}"
        assert reader in config.users and sub in config.users[reader].subspecialties
        ref = wi["00404021"]["Value"][0]
        assert text(ref, "0020000D") == study.study_uid
        assert text(ref, "00081190") == f"{cloud.base_url}/studies/{study.study_uid}"
        assert text(wi, "00100020") == study.patient_id
        assert text(wi, "00100021") == study.issuer_of_patient_id
    assert routed >= 1 and routed >= len(cloud.seeded) - 1


def test_stat_study_is_listed_first_for_its_reader(cloud):
    stat = [s for s in cloud.seeded if s.priority == "STAT"]
    assert stat, "the demo has a STAT study"
    wi = wait_for_workitems(cloud, stat[0].study_uid)[0]
    reader = performer_of(wi)
    perf = "ScheduledHumanPerformersSequence.HumanPerformerCodeSequence.CodeValue"
    mine = requests.get(f"{cloud.base_url}/workitems", params={perf: reader}, auth=cloud.auth(reader),
                        timeout=10).json()
    assert mine and text(mine[0], "00741200") == "HIGH"
    assert all(performer_of(w) == reader for w in mine)


def test_retrieve_url_of_a_workitem_serves_the_study(cloud):
    study = min(cloud.seeded, key=lambda s: len(s.files))
    wi = wait_for_workitems(cloud, study.study_uid)[0]
    url = text(wi["00404021"]["Value"][0], "00081190")
    r = requests.get(url + "/series", auth=cloud.auth("reader1"), timeout=30)
    assert r.status_code == 200
    assert {s["0020000E"]["Value"][0] for s in r.json()} == set(study.series_uids)


def _stable_changes(cloud, orthanc_study_id: str) -> int:
    r = requests.get(f"{cloud.orthanc_url}/changes", params={"limit": 10000}, auth=cloud.orthanc_auth, timeout=10)
    return sum(1 for c in r.json()["Changes"] if c["ChangeType"] == "StableStudy" and c["ID"] == orthanc_study_id)


def test_resending_a_study_does_not_create_a_second_workitem(cloud, tmp_path):
    import time

    import pydicom
    from pydicom.uid import generate_uid

    study = min(cloud.seeded, key=lambda s: len(s.files))
    before = wait_for_workitems(cloud, study.study_uid)
    assert len(before) == 1
    found = requests.post(f"{cloud.orthanc_url}/tools/lookup", data=study.study_uid, auth=cloud.orthanc_auth,
                          timeout=10).json()
    oid = next(x["ID"] for x in found if x["Type"] == "Study")
    n0 = _stable_changes(cloud, oid)
    # a late extra image of the same study: Orthanc makes the study unstable, then stable again
    ds = pydicom.dcmread(study.files[0])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    extra = tmp_path / "extra.dcm"
    ds.save_as(extra, enforce_file_format=True)
    stow(cloud, [extra])
    deadline = time.monotonic() + 60
    while _stable_changes(cloud, oid) == n0 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _stable_changes(cloud, oid) > n0, "Orthanc did not report the study stable again"
    time.sleep(2.0)   # a few feed polls
    after = wait_for_workitems(cloud, study.study_uid)
    assert [text(w, "00080018") for w in after] == [text(w, "00080018") for w in before]
