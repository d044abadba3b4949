"""QA mode against a real cloud: reader1 signs a report that reaches the archive; the qa user reviews it blind,
reveals and compares, scores it with RADPEER, and the review (an SR on the archive) shows in the per-reader chart."""
from __future__ import annotations

import datetime as dt
import time

import pydicom
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.integration, pytest.mark.slow]

pytest.importorskip("pytestqt")


@pytest.fixture(scope="module")
def qa_cloud(tmp_path_factory):
    from tests.fixtures.cloud import _require_servers, stow, wait_for_workitems

    _require_servers()
    from cloud.demo_data import write_ct_series
    from cloud.launcher import CloudProcess

    root = tmp_path_factory.mktemp("qa-cloud")
    c = CloudProcess(root / "cloud", seed_demo=False).start()
    files = write_ct_series(root / "ct", n_slices=6, rows=64, cols=64, key="qa-chest")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.BodyPartExamined = "CHEST"
        ds.StudyDescription = "CT CHEST"
        ds.StudyDate = dt.date.today().strftime("%Y%m%d")
        ds.save_as(f)
    stow(c, files)
    c.qa_study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert wait_for_workitems(c, c.qa_study, timeout=120)
    yield c
    c.stop()


def _signed_in(cloud, user: str):
    from app.services import Workstation
    from app.session import sign_in
    from app.settings import WorkstationSettings
    from cloud_client.profiles import ServerProfile

    profile = ServerProfile(name=f"qa-test-{user}", base_url=cloud.base_url, user=user, prefetch_count=0)
    return sign_in(profile, user), Workstation, WorkstationSettings


def _reader1_signs_a_report(cloud) -> None:
    """The reading half, through the same workstation calls the GUI uses."""
    from cloud_client.archive import ArchiveSink
    from reporting import signing

    session, Workstation, WorkstationSettings = _signed_in(cloud, "reader1")
    ws = Workstation(session, WorkstationSettings())
    try:
        item = next(i for i in ws.list_worklist() if i.study_uid == cloud.qa_study)
        ws.claim(item)
        report = ws.open_report(item)
        report.apply_macro(report.template.macros[0].id) if report.template.macros else None
        for f in report.template.fields:
            if f.required and not report.get(f.id):
                report.set_field(f.id, "Chest pain.")
        report.set_field(report.template.impression_section.fields[0].id,
                         "No pulmonary embolism. Small right pleural effusion.")
        signing.generate_key("reader1", "reader1-pin")
        ws.sign_report(report, "reader1-pin")
        sink = ArchiveSink(ws.session.web, ws.worklist, audit=ws.audit)
        ws.outbox.deliver_due(sink, force=True)
        assert ws.outbox_pending() == 0, "the signed report did not reach the archive"
    finally:
        ws.close()


def test_blind_peer_review_flow_and_score_chart(qtbot, qa_cloud):
    _reader1_signs_a_report(qa_cloud)

    from app.cli_gui import application, open_workstation
    from app.main_window import PAGE_QA

    application()
    session, *_ = _signed_in(qa_cloud, "qa")
    win = open_workstation(session)
    qtbot.addWidget(win)
    try:
        assert "qa_mode" in win.actions
        qa = win.qa_page
        with qtbot.waitSignal(qa.loaded, timeout=60000):
            win.show_page(PAGE_QA)
        assert win.pages.currentIndex() == PAGE_QA
        assert qa.list.count() == 1 and "reader1" in qa.list.item(0).text()
        stale = (list(qa.reports), list(qa.reviews))   # a list read now, delivered late below
        qa.list.setCurrentRow(0)
        # blind: the original is hidden and scoring is impossible before the reviewer's own read
        assert qa.original.toPlainText() == "" and not qa.submit_button.isEnabled()
        # the reviewer looks at the images first (no claim, no report editing), then comes back
        loaded = []
        win.reading.study_loaded.connect(loaded.append)
        qa.images_button.click()
        assert win.pages.currentIndex() == 1 and win.editor.report is None
        qtbot.waitUntil(lambda: bool(loaded), timeout=60000)
        assert win.reading.panes and win.reading.panes[0].volume is not None
        with qtbot.waitSignal(qa.loaded, timeout=60000):       # coming back refreshes the list ...
            win.reading.close_study_and_return()
        assert win.pages.currentIndex() == PAGE_QA
        assert qa.review is not None and qa.list.currentRow() == 0   # ... and keeps the review under way
        qa.reveal()
        assert "impression" in qa.message.text().lower()
        qa.my_impression.setPlainText("Pulmonary embolism in the right lower lobe. Small right pleural effusion.")
        qa._loaded(stale)                                      # a refresh landing while the reviewer types
        assert qa.review is not None and qa.list.currentRow() == 0
        assert qa.my_impression.toPlainText().startswith("Pulmonary embolism")
        qa.reveal()
        assert "No pulmonary embolism" in qa.original.toPlainText()
        assert not qa.reveal_button.isEnabled() and qa.my_impression.isReadOnly()   # the own read is fixed
        tags = [qa.diff.item(r, 0).data(0x0100) for r in range(qa.diff.rowCount())]
        assert "equal" in tags and ("replace" in tags or "insert" in tags)
        qa.score.setCurrentIndex(qa.score.findData("2b"))
        qa.submit()
        assert "comment" in qa.message.text().lower()          # 2b needs a comment
        qa.comment.setText("Missed segmental embolus.")
        with qtbot.waitSignal(qa.review_submitted, timeout=30000):
            qa.submit()
        summary = {s.reader: s for s in qa.chart.summary}
        assert summary["reader1"].counts["2b"] == 1 and summary["reader1"].total == 1
        heights = list(qa.chart.bars["2b"].opts["height"])
        assert heights == [1]
        qa._loaded(stale)            # a list read before the review was queued, arriving after it
        assert qa.list.count() == 0 and qa.review is None
        summary = {s.reader: s for s in qa.chart.summary}
        assert summary["reader1"].total == 1
        # the review SR is delivered to the archive by the outbox and read back from there
        deadline = time.monotonic() + 60
        while win.ws.outbox_pending() and time.monotonic() < deadline:
            qtbot.wait(200)
        assert win.ws.outbox_pending() == 0
        with qtbot.waitSignal(qa.loaded, timeout=60000):   # the list read back from the archive has the review:
            qa.refresh()                                    # it is counted once, not once more as a local copy
        assert {s.reader: s.total for s in qa.chart.summary} == {"reader1": 1} and qa.list.count() == 0
        win.ws.outbox = type(win.ws.outbox)(win.ws.outbox.directory / "elsewhere")   # only the archive now
        reports, reviews = win.ws.qa_worklist()
        assert [r.score.value for r in reviews] == ["2b"] and reviews[0].reviewed_reader == "reader1"
        assert reports == []                                    # already reviewed by qa: not offered again
    finally:
        win.close()
        from app.workers import wait_for_all

        wait_for_all(20000)
        win.ws.close()
