"""The append-only audit trail and its DICOM PS3.15 A.5 XML export."""
from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest

from cloud_client.audit import EVENTS, FAILURE, AuditError, AuditTrail


def test_records_chain_and_detects_tampering(tmp_path):
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.record("sign-in", "reader1")
    trail.record("claim", "reader1", workitem_uid="1.2.3", study_uids=["1.2.840.1"])
    trail.record("retrieve", "reader1", FAILURE, study_uids=["1.2.840.1"], detail="ArchiveUnavailable")
    assert trail.verify() == 3
    evs = trail.events()
    assert [e.action for e in evs] == ["sign-in", "claim", "retrieve"]
    assert evs[1].workitem_uid == "1.2.3" and evs[2].outcome == FAILURE
    lines = trail.path.read_text().splitlines()
    # edit one line: the chain breaks at the next
    edited = json.loads(lines[1])
    edited["outcome"] = "failure"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], json.dumps(edited, sort_keys=True, separators=(",", ":")), lines[2]]) + "\n")
    with pytest.raises(AuditError, match="line 3"):
        AuditTrail(bad).verify()
    # delete a line
    gap = tmp_path / "gap.jsonl"
    gap.write_text("\n".join([lines[0], lines[2]]) + "\n")
    with pytest.raises(AuditError):
        AuditTrail(gap).verify()


def test_unknown_action_or_outcome_refused(tmp_path):
    trail = AuditTrail(tmp_path / "a.jsonl")
    with pytest.raises(ValueError):
        trail.record("teleport", "u")
    with pytest.raises(ValueError):
        trail.record("claim", "u", "maybe")


def test_dicom_xml_export(tmp_path):
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.record("study-opened", "reader2", study_uids=["1.2.840.99"])
    trail.record("sign-in", "reader2", FAILURE, detail="AuthError")
    trail.record("complete", "reader2", workitem_uid="2.25.7", study_uids=["1.2.840.99"])
    out = tmp_path / "audit.xml"
    assert trail.export_xml(out) == 3
    root = ET.parse(out).getroot()
    msgs = root.findall("AuditMessage")
    assert len(msgs) == 3
    opened, signin, complete = msgs
    ev = opened.find("EventIdentification")
    assert ev.get("EventActionCode") == "R" and ev.get("EventOutcomeIndicator") == "0"
    assert ev.find("EventID").get("csd-code") == "110103"
    obj = opened.find("ParticipantObjectIdentification")
    assert obj.get("ParticipantObjectID") == "1.2.840.99"
    assert obj.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"
    req = [p for p in opened.findall("ActiveParticipant") if p.get("UserIsRequestor") == "true"]
    assert req and req[0].get("UserID") == "reader2"
    s = signin.find("EventIdentification")
    assert s.find("EventID").get("csd-code") == "110114"
    assert s.find("EventTypeCode").get("csd-code") == "110122"
    assert s.get("EventOutcomeIndicator") == "8"
    assert complete.find("EventIdentification/EventID").get("csd-code") == "110111"
    assert any(o.get("ParticipantObjectID") == "2.25.7" for o in complete.findall("ParticipantObjectIdentification"))


def test_every_action_maps_to_a_dicom_event():
    for action, (code, meaning, action_code, _) in EVENTS.items():
        assert code.startswith("110") and meaning and action_code in "CRUDE", action
