"""Peer review: blind RADPEER flow, review SR round trip (dciodvfy clean), per-reader listing, QA summary, diff."""
import shutil
import subprocess

import pytest

from reporting.model import Person, Report, StudyContext
from reporting.outbox import Outbox
from reporting.peer_review import (
    BlindReview,
    RadpeerScore,
    ReviewedReport,
    ReviewError,
    build_review_sr,
    latest_signed_report,
    qa_summary,
    queue_review,
    review_from_sr,
    reviews_of_reader,
    side_by_side,
)
from reporting.sr import build_report_sr
from reporting.templates import TemplateLibrary

READER = Person("reader1", "One^Reader")
QA = Person("qa", "Quality^Anne")


def signed_sr(impression="No acute intracranial abnormality.", reader=READER):
    r = Report(TemplateLibrary().get("ct-head-noncontrast"),
               StudyContext(study_uid="1.2.826.0.1.3680043.8.498.600", patient_id="DEMO-2", patient_name="SYNTHETIC^X"),
               author=reader)
    r.apply_macro("normal")
    r.set_field("indication", "Headache")
    r.set_field("impression", impression)
    return build_report_sr(r, reader_name=reader.name, organization="Org", reader_id=reader.user_id,
                           verified_at="2026-03-04T10:00:00+00:00")


def test_blind_flow_hides_original_until_impression_then_scores():
    original = ReviewedReport.from_sr(signed_sr())
    assert original.reader == "reader1" and original.impression == "No acute intracranial abnormality."
    review = BlindReview(original, QA, blind=True)
    with pytest.raises(ReviewError, match="hidden"):
        review.original_text()
    with pytest.raises(ReviewError):
        review.score("1")
    with pytest.raises(ReviewError):
        review.submit_impression("  ")
    shown = review.submit_impression("Small right subdural hematoma. No midline shift.")
    assert "No acute intracranial abnormality." in shown and review.revealed
    rows = review.diff()
    assert rows[0].left == "No acute intracranial abnormality." and rows[0].tag == "replace"
    with pytest.raises(ReviewError, match="comment"):
        review.score("3b")
    result = review.score("3b", "Missed acute subdural hematoma.")
    assert result.score == RadpeerScore.MAJOR_LIKELY and result.blind and result.reviewed_reader == "reader1"
    assert result.reviewer == "qa"


def test_non_blind_and_self_review_refused():
    original = ReviewedReport.from_sr(signed_sr())
    r = BlindReview(original, QA, blind=False)
    assert r.original_text()
    assert r.score("1").score == RadpeerScore.CONCUR
    with pytest.raises(ReviewError, match="own report"):
        BlindReview(original, Person("reader1"))
    with pytest.raises(ValueError):
        RadpeerScore("4")


def test_review_sr_round_trip_and_validates(tmp_path):
    original = ReviewedReport.from_sr(signed_sr())
    review = BlindReview(original, QA)
    review.submit_impression("Normal.")
    pr = review.score("2a", "Minor wording.")
    sr = build_review_sr(pr, original, QA.name)
    back = review_from_sr(sr)
    assert (back.score, back.comment, back.reviewed_reader, back.reviewer, back.blind, back.reviewer_impression,
            back.reviewed_sop_instance_uid) == (RadpeerScore.MINOR_UNLIKELY, "Minor wording.", "reader1", "qa", True,
                                                "Normal.", original.sop_instance_uid)
    assert sr.StudyInstanceUID == original.study_uid
    from cloud import ehr_outbound
    assert ehr_outbound.handle_stored_sr(sr, tmp_path) == []  # reviews never go to the EHR
    if shutil.which("dciodvfy"):
        p = tmp_path / "review.dcm"
        sr.save_as(p, enforce_file_format=True)
        out = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True, check=False)
        errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, out.stdout + out.stderr
    item = queue_review(sr, Outbox())
    assert item.kind == "peer-review" and item.workitem_uid is None and Outbox().pending_count() == 1


def test_qa_summary_and_per_reader_listing():
    o1 = ReviewedReport.from_sr(signed_sr())
    o2 = ReviewedReport.from_sr(signed_sr(reader=Person("reader2", "Two^Reader")))
    reviews = []
    for original, score in [(o1, "1"), (o1, "1"), (o1, "2b"), (o2, "3a"), (o2, "1")]:
        r = BlindReview(original, QA, blind=False)
        reviews.append(r.score(score, "because"))
    assert len(reviews_of_reader(reviews, "reader1")) == 3
    summary = {s.reader: s for s in qa_summary(reviews)}
    assert summary["reader1"].counts == {"1": 2, "2a": 0, "2b": 1, "3a": 0, "3b": 0}
    assert summary["reader1"].significant == 1
    assert summary["reader2"].discrepancy_rate == pytest.approx(0.5)
    assert [s.reader for s in qa_summary(reviews)] == ["reader1", "reader2"]


def test_side_by_side_diff():
    rows = side_by_side("Lungs clear. No effusion. Heart normal.", "Lungs clear. Small left effusion. Heart normal.")
    assert [(r.tag, r.left, r.right) for r in rows] == [
        ("equal", "Lungs clear.", "Lungs clear."),
        ("replace", "No effusion.", "Small left effusion."),
        ("equal", "Heart normal.", "Heart normal.")]
    rows = side_by_side("A.", "A.\nB.")
    assert rows[-1].tag == "insert" and rows[-1].right == "B."


def test_latest_signed_report_skips_superseded_preliminary_and_reviews():
    from reporting.model import PriorDocument, ReportState
    from reporting.sr import predecessor_dataset

    first = signed_sr()
    r = Report(TemplateLibrary().get("ct-head-noncontrast"), StudyContext(study_uid=str(first.StudyInstanceUID)),
               author=READER)
    r.apply_macro("normal")
    r.transition(ReportState.FINAL, READER)
    prior = PriorDocument(str(first.StudyInstanceUID), str(first.SeriesInstanceUID), str(first.SOPClassUID),
                          str(first.SOPInstanceUID))
    a = r.start_addendum(READER, prior)
    a.set_field("addendum", "Later.")
    addendum = build_report_sr(a, reader_name=READER.name, organization="Org", reader_id="reader1",
                               verified_at="2026-03-04T09:00:00+00:00",  # even with an earlier clock
                               predecessor_datasets=[predecessor_dataset(*prior.__dict__.values())])
    prelim = build_report_sr(r, reader_name=READER.name, organization="Org", preliminary=True)
    original = ReviewedReport.from_sr(first)
    review = BlindReview(original, QA, blind=False).score("1")
    review_sr = build_review_sr(review, original, QA.name)
    assert latest_signed_report([first, addendum, prelim, review_sr]).SOPInstanceUID == addendum.SOPInstanceUID
    assert latest_signed_report([first, prelim]).SOPInstanceUID == first.SOPInstanceUID
    assert latest_signed_report([prelim, review_sr]) is None
    for not_a_report in (prelim, review_sr):
        with pytest.raises(ValueError):
            ReviewedReport.from_sr(not_a_report)
