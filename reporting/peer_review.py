"""Peer review for QA: blind RADPEER scoring, review SRs, per-reader listing, QA summary, side-by-side diff.

Owns the RADPEER scale (ACR, revised 2016: 1 concur; 2 / 3 discrepancy, a = unlikely / b = likely clinically
significant), :class:`BlindReview` (the original report stays hidden until the reviewer has written an
impression, then the reviewer scores it), :class:`PeerReview` values, their storage as an Enhanced SR (local
codes, scheme ``99READROOM``; the reviewed report SR referenced as a COMPOSITE item; sent through the outbox like
a report, but never to the EHR), reading them back (:func:`review_from_sr`), the QA summary (score distribution
per reader, as plain data for the GUI's chart) and :func:`side_by_side` (a line diff of two reads).
"""
from __future__ import annotations

import difflib
import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from .model import Person, now_iso

SCHEME = "99READROOM"
TITLE = CodedConcept("PEERREVIEW", SCHEME, "RADPEER peer review")
SCORE_NAME = CodedConcept("RADPEER", SCHEME, "RADPEER score")
COMMENT_NAME = CodedConcept("REVCOMMENT", SCHEME, "Reviewer comment")
REVIEWER_IMPRESSION = CodedConcept("REVIMPRESSION", SCHEME, "Reviewer impression")
REVIEWED_READER = CodedConcept("REVIEWEDREADER", SCHEME, "Reviewed reader")
REVIEWER = CodedConcept("REVIEWER", SCHEME, "Reviewer")
REVIEWED_REPORT = CodedConcept("REVIEWEDREPORT", SCHEME, "Reviewed report")
BLIND_NAME = CodedConcept("BLIND", SCHEME, "Blind review")
SERIES_DESCRIPTION = "RADPEER peer review"


class RadpeerScore(str, enum.Enum):
    CONCUR = "1"
    MINOR_UNLIKELY = "2a"
    MINOR_LIKELY = "2b"
    MAJOR_UNLIKELY = "3a"
    MAJOR_LIKELY = "3b"

    @property
    def meaning(self) -> str:
        return {
            "1": "Concur with interpretation",
            "2a": "Discrepancy in interpretation, not ordinarily expected to be made; unlikely clinically significant",
            "2b": "Discrepancy in interpretation, not ordinarily expected to be made; likely clinically significant",
            "3a": "Discrepancy in interpretation, should be made most of the time; unlikely clinically significant",
            "3b": "Discrepancy in interpretation, should be made most of the time; likely clinically significant",
        }[self.value]

    @property
    def needs_comment(self) -> bool:
        return self in (RadpeerScore.MINOR_LIKELY, RadpeerScore.MAJOR_UNLIKELY, RadpeerScore.MAJOR_LIKELY)


class ReviewError(ValueError):
    """A peer review step done out of order or incomplete; the message says what is missing."""


@dataclass(frozen=True)
class ReviewedReport:
    """The signed report under review (from its SR): identity, reader, text and impression."""

    study_uid: str
    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    reader: str
    text: str
    impression: str
    dataset: Dataset | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_sr(cls, ds: Dataset) -> ReviewedReport:
        """Raises ReviewError (a ValueError) unless ``ds`` is a signed (VERIFIED) TID 2000 report."""
        from .sr import narrative_from_sr, reader_login

        if not is_signed_report(ds):
            raise ReviewError("not a signed diagnostic report SR (preliminary, measurement or other SR)")

        reader = reader_login(ds) or ""
        if not reader and ds.get("VerifyingObserverSequence"):
            reader = str(ds.VerifyingObserverSequence[0].VerifyingObserverName)
        sections = narrative_from_sr(ds)
        impression = "\n".join(t for code, ts in sections if code in ("19005-8", "121072", "121073") for t in ts)
        text = "\n\n".join("\n".join(ts) for _c, ts in sections)
        return cls(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                   reader, text, impression, ds)


@dataclass(frozen=True)
class PeerReview:
    review_id: str
    study_uid: str
    reviewed_sop_instance_uid: str
    reviewed_reader: str
    reviewer: str
    score: RadpeerScore
    comment: str
    reviewer_impression: str
    blind: bool
    created_at: str


class BlindReview:
    """One review. In blind mode the original report is hidden until the reviewer writes an impression."""

    def __init__(self, original: ReviewedReport, reviewer: Person, blind: bool = True) -> None:
        if reviewer.user_id == original.reader or reviewer.name == original.reader:
            raise ReviewError("Readers cannot peer-review their own report.")
        self.original = original
        self.reviewer = reviewer
        self.blind = blind
        self.reviewer_impression = ""
        self._revealed = not blind

    @property
    def revealed(self) -> bool:
        return self._revealed

    def original_text(self) -> str:
        if not self._revealed:
            raise ReviewError("Write your own impression first; the original report is hidden in blind review.")
        return self.original.text

    def submit_impression(self, impression: str) -> str:
        """Record the reviewer's own read; reveals and returns the original report."""
        if not impression.strip():
            raise ReviewError("Write an impression before revealing the original report.")
        self.reviewer_impression = impression.strip()
        self._revealed = True
        return self.original.text

    def diff(self) -> list[DiffRow]:
        if not self._revealed:
            raise ReviewError("The comparison is shown after your own impression.")
        return side_by_side(self.original.impression or self.original.text, self.reviewer_impression)

    def score(self, score: RadpeerScore | str, comment: str = "") -> PeerReview:
        if not self._revealed:
            raise ReviewError("Score after comparing with the original report.")
        score = RadpeerScore(score)
        if score.needs_comment and not comment.strip():
            raise ReviewError(f"RADPEER {score.value} needs a comment explaining the discrepancy.")
        # the id is the UID its SR will carry, so the review read back from the outbox or archive is the same one
        return PeerReview(generate_uid(), self.original.study_uid, self.original.sop_instance_uid,
                          self.original.reader, self.reviewer.user_id, score, comment.strip(),
                          self.reviewer_impression, self.blind, now_iso())


# ---- storage as SR ---------------------------------------------------------------------------------------------
def build_review_sr(review: PeerReview, original: ReviewedReport, reviewer_name: str,
                    organization: str = "ReadRoom QA") -> Dataset:
    """The review as an Enhanced SR in the reviewed study, referencing the reviewed report SR."""
    if original.dataset is None:
        raise ReviewError("the reviewed SR dataset is needed to write the review")
    from .sr import dicom_pn

    reviewer_name = dicom_pn(reviewer_name)
    root = hd.sr.ContainerContentItem(name=TITLE)
    items = []
    items.extend(hd.sr.ObservationContext(observer_person_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=reviewer_name))))
    items.append(hd.sr.CodeContentItem(name=SCORE_NAME, value=CodedConcept(review.score.value, "99RADPEER",
                                                                           review.score.meaning[:64]),
                                       relationship_type="CONTAINS"))
    items.append(hd.sr.TextContentItem(name=REVIEWED_READER, value=review.reviewed_reader,
                                       relationship_type="CONTAINS"))
    items.append(hd.sr.TextContentItem(name=REVIEWER, value=review.reviewer, relationship_type="CONTAINS"))
    items.append(hd.sr.TextContentItem(name=BLIND_NAME, value="yes" if review.blind else "no",
                                       relationship_type="CONTAINS"))
    if review.reviewer_impression:
        items.append(hd.sr.TextContentItem(name=REVIEWER_IMPRESSION, value=review.reviewer_impression,
                                           relationship_type="CONTAINS"))
    if review.comment:
        items.append(hd.sr.TextContentItem(name=COMMENT_NAME, value=review.comment, relationship_type="CONTAINS"))
    items.append(hd.sr.CompositeContentItem(name=REVIEWED_REPORT, referenced_sop_class_uid=original.sop_class_uid,
                                            referenced_sop_instance_uid=original.sop_instance_uid,
                                            relationship_type="CONTAINS"))
    root.ContentSequence = items
    sr = hd.sr.EnhancedSR(
        evidence=[original.dataset], content=root, series_instance_uid=generate_uid(), series_number=990,
        sop_instance_uid=review.review_id if _is_uid(review.review_id) else generate_uid(), instance_number=1,
        manufacturer="ReadRoom", is_complete=True,
        is_final=True, is_verified=True, verifying_observer_name=reviewer_name, verifying_organization=organization)
    sr.SeriesDescription = SERIES_DESCRIPTION
    return sr


def _is_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and all(part.isdigit() and (part == "0" or not part.startswith("0"))
                                        for part in value.split("."))


def is_review_sr(ds: Dataset) -> bool:
    try:
        c = ds.ConceptNameCodeSequence[0]
    except (AttributeError, IndexError):
        return False
    return c.CodeValue == TITLE.value and c.CodingSchemeDesignator == SCHEME


def review_from_sr(ds: Dataset) -> PeerReview:
    if not is_review_sr(ds):
        raise ReviewError("not a ReadRoom peer-review SR")
    values: dict[str, str] = {}
    reviewed = ""
    for item in ds.ContentSequence:
        code = item.ConceptNameCodeSequence[0].CodeValue
        if item.ValueType == "TEXT":
            values[code] = item.TextValue
        elif item.ValueType == "CODE" and code == SCORE_NAME.value:
            values[code] = item.ConceptCodeSequence[0].CodeValue
        elif item.ValueType == "COMPOSITE":
            reviewed = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    when = str(ds.VerifyingObserverSequence[0].VerificationDateTime) if ds.get("VerifyingObserverSequence") else ""
    return PeerReview(str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), reviewed,
                      values.get(REVIEWED_READER.value, ""), values.get(REVIEWER.value, ""),
                      RadpeerScore(values[SCORE_NAME.value]),
                      values.get(COMMENT_NAME.value, ""), values.get(REVIEWER_IMPRESSION.value, ""),
                      values.get(BLIND_NAME.value) == "yes", when)


def reviews_of_reader(reviews: Iterable[PeerReview], reader: str) -> list[PeerReview]:
    return [r for r in reviews if r.reviewed_reader == reader]


@dataclass(frozen=True)
class ReaderSummary:
    reader: str
    total: int
    counts: dict[str, int]  # score value -> count, every RADPEER score present (0 if none)
    significant: int  # 2b + 3b

    @property
    def discrepancy_rate(self) -> float:
        return 0.0 if not self.total else (self.total - self.counts["1"]) / self.total


def qa_summary(reviews: Iterable[PeerReview]) -> list[ReaderSummary]:
    """Score distribution per reviewed reader, sorted by reader (data for the QA chart)."""
    by_reader: dict[str, Counter] = {}
    for r in reviews:
        by_reader.setdefault(r.reviewed_reader, Counter())[r.score.value] += 1
    out = []
    for reader in sorted(by_reader):
        c = by_reader[reader]
        counts = {s.value: c.get(s.value, 0) for s in RadpeerScore}
        out.append(ReaderSummary(reader, sum(counts.values()), counts, counts["2b"] + counts["3b"]))
    return out


# ---- diff ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiffRow:
    left: str
    right: str
    tag: str  # "equal", "replace", "delete" (only left), "insert" (only right)


def _lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        out.extend(s.strip() for s in line.replace(". ", ".\n").splitlines() if s.strip())
    return out


def side_by_side(left: str, right: str) -> list[DiffRow]:
    """Sentence-by-sentence comparison of two reads (original left, reviewer right)."""
    a, b = _lines(left), _lines(right)
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=[x.lower() for x in a], b=[x.lower() for x in b],
                                                       autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [DiffRow(a[i], b[j], "equal") for i, j in zip(range(i1, i2), range(j1, j2))]
        elif tag == "delete":
            rows += [DiffRow(a[i], "", "delete") for i in range(i1, i2)]
        elif tag == "insert":
            rows += [DiffRow("", b[j], "insert") for j in range(j1, j2)]
        else:
            n = max(i2 - i1, j2 - j1)
            for k in range(n):
                left_s = a[i1 + k] if i1 + k < i2 else ""
                right_s = b[j1 + k] if j1 + k < j2 else ""
                rows.append(DiffRow(left_s, right_s, "replace" if left_s and right_s else
                                    ("delete" if left_s else "insert")))
    return rows


def queue_review(review_sr: Dataset, outbox=None):
    """Write the review SR to the durable outbox (stored on the archive like a report; no workitem)."""
    from .outbox import Outbox, OutboxItem

    return (outbox or Outbox()).enqueue(OutboxItem.create("peer-review", [review_sr]))


def load_reviews(datasets: Iterable[Dataset]) -> list[PeerReview]:
    """The peer reviews among ``datasets`` (e.g. every SR a QIDO search for Modality=SR returned); others skipped."""
    return [review_from_sr(ds) for ds in datasets if is_review_sr(ds)]


def is_signed_report(ds: Dataset) -> bool:
    """A VERIFIED Basic Diagnostic Imaging Report (TID 2000) - not a preliminary, a measurement SR or a review."""
    return (not is_review_sr(ds) and ds.get("VerificationFlag") == "VERIFIED"
            and any(t.get("TemplateIdentifier") == "2000" for t in ds.get("ContentTemplateSequence", [])))


def latest_signed_report(datasets: Iterable[Dataset]) -> Dataset | None:
    """Of a study's SRs, the newest signed report version (what a reviewer should review): a VERIFIED TID 2000
    report that no other given SR names as its predecessor; ties broken by verification time."""
    reports = [ds for ds in datasets if is_signed_report(ds)]
    superseded = {ref.ReferencedSOPInstanceUID
                  for ds in reports for st in ds.get("PredecessorDocumentsSequence", [])
                  for se in st.ReferencedSeriesSequence for ref in se.ReferencedSOPSequence}
    current = [ds for ds in reports if ds.SOPInstanceUID not in superseded]
    if not current:
        return None
    return max(current, key=lambda ds: str(ds.VerifyingObserverSequence[0].get("VerificationDateTime", "")))
