"""An SR built ahead of signing (while the reader types the PIN) is used only for unchanged content, and then the
signed SR is the one a build at signing time gives (all but the instance creation time: when it was built)."""
import datetime
import io

import pydicom
import pytest

from reporting import signing, workflow
from reporting.model import Communication, Person, ReportState
from reporting.outbox import Outbox, _dcm_bytes
from reporting.sr import build_report_sr, narrative_from_sr
from reporting.workflow import (
    prepare_sr,
    sign_addendum,
    sign_report,
    signed_records,
    start_addendum,
    verify_sr,
)
from tests.unit.test_report_outputs import READER, SIGNED_AT, rich_report

PIN = "2468"


@pytest.fixture
def key(monkeypatch):
    signing.generate_key(READER.user_id, PIN)
    monkeypatch.setattr(workflow, "now_iso", lambda: SIGNED_AT)


CREATED = [(0x0008, 0x0012), (0x0008, 0x0013)]  # Instance Creation Date, Time


def _cold(report, record, organization=""):
    """The SR a build at signing time gives for the same content, UIDs and time."""
    sr = build_report_sr(report, reader_name=READER.name, organization=organization, verified_at=SIGNED_AT,
                         series_uid=record.sr["series_uid"], sop_instance_uid=record.sr["sop_instance_uid"],
                         predecessor_datasets=workflow._predecessors(report), reader_id=READER.user_id)
    return _dcm_bytes(sr)


def _same_sr(prepared_bytes: bytes, cold_bytes: bytes, signed_after: datetime.datetime) -> pydicom.Dataset:
    """Both SRs are equal but for their creation times; the prepared one's are those of signing, not preparing."""
    assert b"19000101" not in prepared_bytes  # no placeholder left
    a, b = (pydicom.dcmread(io.BytesIO(x)) for x in (prepared_bytes, cold_bytes))
    assert a.file_meta == b.file_meta
    created = datetime.datetime.strptime(a.InstanceCreationDate + a.InstanceCreationTime, "%Y%m%d%H%M%S.%f")
    contributed = datetime.datetime.strptime(a.ContributingEquipmentSequence[0].ContributionDateTime,
                                             "%Y%m%d%H%M%S.%f")
    assert signed_after <= created <= datetime.datetime.now() and signed_after <= contributed
    for ds in (a, b):
        for tag in CREATED:
            del ds[tag]
        del ds.ContributingEquipmentSequence[0].ContributionDateTime
    assert a == b
    return pydicom.dcmread(io.BytesIO(prepared_bytes))


def test_prepared_sr_is_the_cold_build(key):
    r = rich_report()
    prepared = prepare_sr(r, READER, organization="Org")
    before = datetime.datetime.now()
    res = sign_report(r, READER, PIN, organization="Org", outbox=Outbox(), outputs=False, prepared=prepared)
    assert prepared.used and res.record.sr["sop_instance_uid"] == prepared.sop_uid
    ds = _same_sr(res.outbox_item.part10()[0], _cold(r, res.record, "Org"), before)
    assert ds.VerifyingObserverSequence[0].VerificationDateTime == "20260304101112"
    assert (ds.ContentDate, ds.ContentTime) == ("20260304", "101112")
    assert verify_sr(ds, res.record)


def test_addendum_prepared_sr_is_the_cold_build(key):
    r = rich_report()
    sign_report(r, READER, PIN, outbox=(ob := Outbox()), outputs=False)
    a = start_addendum(signed_records(ob, r.study.study_uid)[-1], READER)
    a.set_field("addendum", "Second look: small amount of free fluid.")
    prepared = prepare_sr(a, READER)
    before = datetime.datetime.now()
    res = sign_addendum(a, READER, PIN, outbox=ob, outputs=False, prepared=prepared)
    assert prepared.used
    ds = _same_sr(res.outbox_item.part10()[0], _cold(a, res.record), before)
    assert ds.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID == a.predecessor.sop_instance_uid


@pytest.mark.parametrize("change", ["field", "critical communication", "reader", "organization"])
def test_prepared_sr_of_other_content_is_not_used(key, change):
    r = rich_report()
    prepared = prepare_sr(r, READER, organization="Org")
    reader, org = READER, "Org"
    if change == "field":
        r.set_field("impression", "Changed after the SR was prepared.")
    elif change == "critical communication":
        r.record_communication(r.critical_results[0],
                               Communication("Dr. Other", "page", "2026-03-04T10:09:00+00:00", True, "One Reader"))
    elif change == "reader":
        reader = Person("reader2", "Two^Reader")
        signing.generate_key(reader.user_id, PIN)
    else:
        org = "Other Org"
    res = sign_report(r, reader, PIN, organization=org, outbox=Outbox(), outputs=False, prepared=prepared)
    assert not prepared.used and res.record.sr["sop_instance_uid"] != prepared.sop_uid
    ds = pydicom.dcmread(io.BytesIO(res.outbox_item.part10()[0]))
    assert verify_sr(ds, res.record)  # the SR says what was signed, the change included
    if change == "field":
        assert "Changed after the SR was prepared." in str(narrative_from_sr(ds))


def test_prepared_sr_is_used_once(key):
    r1, r2 = rich_report(), rich_report()
    r2.report_id = r1.report_id  # the same content in every respect
    prepared = prepare_sr(r1, READER)
    first = sign_report(r1, READER, PIN, outbox=Outbox(), outputs=False, prepared=prepared)
    second = sign_report(r2, READER, PIN, outbox=Outbox(), outputs=False, prepared=prepared)
    assert first.record.sr["sop_instance_uid"] == prepared.sop_uid
    assert second.record.sr["sop_instance_uid"] != prepared.sop_uid  # never two reports with one SOP Instance UID
    assert r2.state == ReportState.FINAL
