"""The routed workitem on the wire (docs/dev/team-contracts.md "Worklist items on the wire")."""
from __future__ import annotations

import datetime as dt

import pydicom

from cloud.config import load_config
from cloud.follower import build_workitem
from cloud.routing import RoutingDecision
from cloud.ups import WorkitemStore, performer_of, text

NOW = dt.datetime(2026, 12, 4, 2, 15, tzinfo=dt.UTC)
STUDY = {"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.77", "StudyDescription": "CT HEAD WO CONTRAST STAT",
         "PatientName": "SYNTHETIC^HEADCT", "PatientID": "DEMO-1", "IssuerOfPatientID": "READROOM-DEMO",
         "PatientSex": "M", "PatientBirthDate": "19600101", "PatientAge": "066Y",
         "InstitutionName": "Synthetic Urgent Care", "AccessionNumber": "A1", "modality": "CT",
         "body_part": "HEAD", "series_uids": ["1.2.826.0.1.3680043.8.498.78"]}


def test_assigned_workitem_matches_the_contract(tmp_path):
    config = load_config(None)
    ds_json = build_workitem(STUDY, RoutingDecision("HIGH", "neuro", "reader2", "test"), config,
                             "http://127.0.0.1:8080/dicom-web", NOW)
    ds = pydicom.Dataset.from_json(ds_json)            # valid DICOM JSON
    assert ds.ProcedureStepState == "SCHEDULED" and ds.ScheduledProcedureStepPriority == "HIGH"
    assert ds.ScheduledProcedureStepStartDateTime.startswith("20261204021500")
    assert ds.ExpectedCompletionDateTime.startswith("20261204024500")         # + 30 min STAT SLA
    perf = ds.ScheduledHumanPerformersSequence[0]
    code = perf.HumanPerformerCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("reader2", "READROOM")
    assert code.CodeMeaning == config.users["reader2"].display_name == perf.HumanPerformerName
    ref = ds.InputInformationSequence[0]
    assert ref.StudyInstanceUID == ds.StudyInstanceUID == STUDY["StudyInstanceUID"]
    assert ref.SeriesInstanceUID == STUDY["series_uids"][0] and len(ref.ReferencedSOPSequence) == 0
    assert ref.RetrieveURL == "http://127.0.0.1:8080/dicom-web/studies/" + STUDY["StudyInstanceUID"]
    # Referenced Instances and Access macro: the URL in the WADO-RS Retrieval Sequence, which the client reads
    assert ref.TypeOfInstances == "DICOM" and ref.WADORSRetrievalSequence[0].RetrieveURL == ref.RetrieveURL
    from cloud_client.worklist import parse_workitem

    del ref.RetrieveURL
    assert parse_workitem(ds.to_json_dict()).retrieve_url == ref.WADORSRetrievalSequence[0].RetrieveURL
    for kw in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientSex", "PatientBirthDate", "PatientAge"):
        assert str(ds.get(kw)) == STUDY[kw]
    assert ds.ProcedureStepLabel == STUDY["StudyDescription"]
    site = ds.ScheduledStationGeographicLocationCodeSequence[0]
    assert site.CodingSchemeDesignator == "READROOM" and site.CodeMeaning == "Synthetic Urgent Care"
    params = {(p.ConceptNameCodeSequence[0].CodingSchemeDesignator, p.ConceptNameCodeSequence[0].CodeValue):
              p.TextValue for p in ds.ScheduledProcessingParametersSequence}
    assert params == {("DCM", "121139"): "CT", ("DCM", "123014"): "HEAD"}
    assert all(p.ValueType == "TEXT" for p in ds.ScheduledProcessingParametersSequence)
    # it is accepted by the store as is, and is found by the contract's search key
    store = WorkitemStore(tmp_path / "w.sqlite")
    uid, _ = store.create(ds_json)
    found = store.search([("ScheduledHumanPerformersSequence.HumanPerformerCodeSequence.CodeValue", "reader2")])
    assert [text(f, "00080018") for f in found] == [uid]
    store.close()


def test_pool_workitem_has_an_empty_performer_sequence():
    ds_json = build_workitem(dict(STUDY, series_uids=["1.1", "1.2"]), RoutingDecision("MEDIUM", None, None, "x"),
                             load_config(None), "https://h/dicom-web", NOW)
    assert ds_json["00404034"] == {"vr": "SQ"} or ds_json["00404034"].get("Value") == []
    assert performer_of(ds_json) is None
    ds = pydicom.Dataset.from_json(ds_json)
    assert "SeriesInstanceUID" not in ds.InputInformationSequence[0]      # several series: study-level reference
    assert ds.ExpectedCompletionDateTime.startswith("20261204061500")       # + 4 h routine SLA


def test_follower_log_never_quotes_the_study_when_a_change_fails(tmp_path, caplog):
    """A bad study (an exception whose message quotes tag values) or a refused workitem: the service log says
    which change failed and why in kind, never the patient's name or ID."""
    from cloud.follower import OrthancFollower
    from cloud.ups import UpsError

    store = WorkitemStore(tmp_path / "w.sqlite")
    f = OrthancFollower(store, load_config(None), "http://127.0.0.1:9", ("u", "p"), "http://h/dicom-web",
                        tmp_path / "out", lambda events: None)

    class Page:
        def json(self):
            return {"Changes": [{"Seq": 1, "ChangeType": "StableStudy", "ID": "a"},
                                {"Seq": 2, "ChangeType": "StableStudy", "ID": "b"}], "Last": 2, "Done": True}

    def route(rid):
        if rid == "a":
            raise ValueError(f"bad date {STUDY['PatientBirthDate']} for {STUDY['PatientName']}")
        raise UpsError(400, f"invalid DICOM JSON: {STUDY['PatientID']} is not valid")

    f._get = lambda path, **params: Page()
    f.route_study = route
    with caplog.at_level("INFO"):
        f.poll_once()
    store.close()
    assert "change 1" in caplog.text and "ValueError" in caplog.text and "change 2" in caplog.text
    for value in ("SYNTHETIC", "HEADCT", "DEMO-1", "19600101"):
        assert value not in caplog.text
