"""Screenshots of the real workstation on the demo data (for docs/screenshots), taken under Xvfb.

Owns one scripted session: start the demo cloud, sign in as reader1, capture the worklist, open the chest
study (hanging protocol PA + lateral), fill the report by macro and dictation events, sign it, let reader2 sign
the head CT, then sign in as qa and capture a blind review with the score chart. Run with
``xvfb-run -a -s "-screen 0 1920x1200x24" python -m app.screenshots docs/screenshots``.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def _wait(app, cond, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        app.processEvents()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _settle(app, seconds=0.6):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _shot(app, window, path: Path) -> None:
    _settle(app)
    screen = app.primaryScreen()
    g = window.frameGeometry()
    pix = screen.grabWindow(0, g.x(), g.y(), g.width(), g.height())   # X framebuffer: includes VTK's GL
    pix.save(str(path))
    print(f"wrote {path}", flush=True)


def _sign_as(cloud, user: str, study_uid: str, impression: str) -> None:
    """Another reader signs a study's report through the workstation calls (no window)."""
    from app.cli_demo import demo_profile
    from app.services import Workstation
    from app.session import sign_in
    from app.settings import WorkstationSettings
    from cloud_client.archive import ArchiveSink
    from reporting import signing

    ws = Workstation(sign_in(demo_profile(cloud, user), user), WorkstationSettings())
    try:
        item = next(i for i in ws.list_worklist() if i.study_uid == study_uid)
        ws.claim(item)
        report = ws.open_report(item)
        if report.template.macros:
            report.apply_macro(report.template.macros[0].id)
        for f in report.template.fields:
            if f.required and not report.get(f.id):
                report.set_field(f.id, "Fall at home, headache.")
        report.set_field(report.template.impression_section.fields[0].id, impression)
        if not signing.has_key(user):
            signing.generate_key(user, f"{user}-pin")
        ws.sign_report(report, f"{user}-pin")
        ws.outbox.deliver_due(ArchiveSink(ws.session.web, ws.worklist, audit=ws.audit), force=True)
    finally:
        ws.close()


def main(out: str) -> int:
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("READROOM_HOME", tempfile.mkdtemp(prefix="readroom-shots-"))
    from app.cli_demo import choose_keyring, demo_profile, start_cloud, wait_for_worklist
    from app.cli_gui import application, open_workstation
    from app.main_window import PAGE_QA
    from app.session import sign_in

    choose_keyring()
    cloud = start_cloud(600)
    app = application()
    try:
        # reader2 (neuro, body) has tonight's STAT head CT: the worklist screenshot shows STAT first
        session = sign_in(demo_profile(cloud, "reader2"), "reader2")
        wait_for_worklist(session, 300)
        win = open_workstation(session)
        win.resize(1800, 1100)
        win.move(0, 0)
        _wait(app, lambda: win.worklist.model.rowCount() > 0, what="worklist")
        _shot(app, win, out_dir / "app-worklist.png")
        # tonight's STAT: the head CT, hung as brain + bone windows by the hanging protocol
        win.worklist.select_row(0)
        loaded = []
        win.reading.study_loaded.connect(loaded.append)
        win.worklist.claim_and_open()
        _wait(app, lambda: bool(loaded), timeout=300, what="head CT")
        for vp in win.reading.panes:
            vp.set_slice(int(vp.volume.shape[0] * 0.62))
        _shot(app, win, out_dir / "app-reading.png")
        win.close()
        win.ws.close()

        session = sign_in(demo_profile(cloud, "reader1"), "reader1")
        wait_for_worklist(session, 300)
        win = open_workstation(session)
        win.resize(1800, 1100)
        win.move(0, 0)
        _wait(app, lambda: win.worklist.model.rowCount() > 0, what="worklist")

        chest = next(i for i in win.worklist.model.items if i.body_part == "CHEST")
        win.worklist.select_row(win.worklist.model.items.index(chest))
        loaded = []
        win.reading.study_loaded.connect(loaded.append)
        win.worklist.claim_and_open()
        _wait(app, lambda: bool(loaded), what="chest study")

        from dictation.events import Command, CommandEvent, FinalText, PartialText

        ed = win.editor
        _wait(app, lambda: ed.report is not None, what="report")
        ed.apply_macro()
        ed.report.set_field("indication", "Cough and fever for three days.")
        ed.report.focus("lungs")
        ed.report.set_field("lungs", "")
        win.dictation.feed(FinalText(1, "patchy opacity in the right lower lobe", "patchy opacity ..."))
        win.dictation.feed(CommandEvent(1, Command("period")))
        ed.report.set_field("impression", "")
        win.dictation.feed(CommandEvent(2, Command("go_to", "impression")))
        win.dictation.feed(FinalText(2, "right lower lobe pneumonia", "right lower lobe pneumonia"))
        win.dictation.feed(CommandEvent(2, Command("period")))
        win.dictation.feed(PartialText("recommend follow up radiograph in six"))
        _wait(app, lambda: ed.saved.text().startswith("Draft saved"), what="autosave")
        _shot(app, win, out_dir / "app-report.png")
        win.close()
        win.ws.close()

        # reports by two readers on the archive, then the QA reviewer
        from cloud_client import secrets
        from reporting import signing

        print(f"keyring in use: {type(secrets._backend()).__name__}", flush=True)
        if not signing.has_key("reader1"):
            signing.generate_key("reader1", "reader1-pin")
        head = next(s for s in cloud.seeded if s.body_part == "HEAD")
        chest_uid = chest.study_uid
        s1 = sign_in(demo_profile(cloud, "reader1"), "reader1")
        _sign_report_open(s1, chest_uid)
        _sign_as(cloud, "reader2", head.study_uid, "Small acute subdural haematoma over the left convexity.")
        qa_session = sign_in(demo_profile(cloud, "qa"), "qa")
        win = open_workstation(qa_session)
        win.resize(1800, 1100)
        win.move(0, 0)
        qa = win.qa_page
        got = []
        qa.loaded.connect(lambda: got.append(1))
        win.show_page(PAGE_QA)
        _wait(app, lambda: bool(got), what="QA list")
        # first review (reader2), submitted
        row = next(i for i, r in enumerate(qa.reports) if r.reader == "reader2")
        qa.list.setCurrentRow(row)
        qa.my_impression.setPlainText("Acute subdural haematoma over the left convexity.")
        qa.reveal()
        qa.score.setCurrentIndex(qa.score.findData("1"))
        sub = []
        qa.review_submitted.connect(sub.append)
        qa.submit()
        _wait(app, lambda: bool(sub), what="review")
        row = next(i for i, r in enumerate(qa.reports) if r.reader == "reader1")
        qa.list.setCurrentRow(row)
        qa.my_impression.setPlainText("Right lower lobe pneumonia. Small right pleural effusion.")
        qa.reveal()
        qa.score.setCurrentIndex(qa.score.findData("2a"))
        qa.comment.setText("Small effusion not mentioned.")
        _shot(app, win, out_dir / "app-qa.png")
        win.close()
        win.ws.close()
    finally:
        cloud.stop()
    return 0


def _sign_report_open(session, study_uid: str) -> None:
    """reader1's chest report (draft from the screenshot session) is signed and sent."""
    from app.services import Workstation
    from app.settings import WorkstationSettings
    from cloud_client.archive import ArchiveSink

    ws = Workstation(session, WorkstationSettings())
    try:
        item = next(i for i in ws.list_worklist() if i.study_uid == study_uid)
        report = ws.open_report(item)
        ws.sign_report(report, "reader1-pin")
        ws.outbox.deliver_due(ArchiveSink(ws.session.web, ws.worklist, audit=ws.audit), force=True)
    finally:
        ws.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
