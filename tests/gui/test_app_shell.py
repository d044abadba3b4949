"""The workstation shell without a cloud: window, settings persistence, idle lock, shortcuts, workers."""
from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.gui

pytest.importorskip("pytestqt")


@pytest.fixture
def offline_session():
    """A signed-in session object for an archive that is not running (nothing listens on port 9)."""
    from app.session import PasswordVerifier, ReaderSession
    from cloud_client.profiles import ServerProfile
    from cloud_client.session import DicomWebSession

    profile = ServerProfile(name="offline", base_url="http://127.0.0.1:9/dicom-web", user="reader1",
                            connect_timeout_s=0.5, timeout_s=1.0)
    web = DicomWebSession(profile, password="pw")
    return ReaderSession(profile=profile, web=web, user="reader1", roles={"reader"},
                         verifier=PasswordVerifier.from_password("secret-pw"))


@pytest.fixture
def window(qtbot, offline_session):
    from app.cli_gui import application, open_workstation

    application()
    win = open_workstation(offline_session)
    qtbot.addWidget(win)
    yield win
    win.close()
    assert win.ws.prefetcher is None and win.ws.outbox_worker is None and win.ws.events is None  # no threads outlive the window
    from app.workers import wait_for_all

    wait_for_all(5000)
    win.ws.close()


def test_window_opens_and_reports_unreachable_archive(window, qtbot):
    assert window.isVisible()
    assert window.windowTitle() == "ReadRoom - reader1"
    # the worklist query runs off the GUI thread and its failure is shown in words, not a traceback
    qtbot.waitUntil(lambda: window.worklist.notice.isVisible(), timeout=15000)
    assert "cannot be reached" in window.worklist.notice.text()
    assert "Traceback" not in window.worklist.notice.text()
    assert window.status.outbox.text() in ("All reports sent",) or "waiting to send" in window.status.outbox.text()


def test_settings_persist_across_sessions(qtbot):
    from app.settings import WorkstationSettings, load_settings
    from app.settings_dialog import SettingsDialog
    from cloud_client import profiles
    from cloud_client.profiles import ServerProfile

    profile = ServerProfile(name="night", base_url="http://127.0.0.1:8042/dicom-web", user="reader1")
    dlg = SettingsDialog(WorkstationSettings(profile_name="night"), profile, devices=["USB dictation mic"])
    qtbot.addWidget(dlg)
    dlg.cache_gb.setValue(7)
    dlg.prefetch.setValue(5)
    dlg.model_dir.setText("/opt/models/vosk-en")
    dlg.microphone.setCurrentIndex(dlg.microphone.findData("USB dictation mic"))
    from PySide6.QtGui import QKeySequence

    dlg.ptt_key.setKeySequence(QKeySequence("F8"))
    dlg.idle.setValue(3)
    dlg.save()
    assert dlg.result() == dlg.DialogCode.Accepted

    again = load_settings()   # a new session reads what was saved
    assert again.dictation_model_dir == "/opt/models/vosk-en"
    assert again.microphone_device == "USB dictation mic"
    assert again.push_to_talk_key == "F8"
    assert again.idle_lock_minutes == 3
    saved = profiles.get_profile("night")
    assert saved.prefetch_count == 5
    assert saved.cache_max_bytes == 7 * 1024 ** 3

    # reopened dialog shows the saved values
    dlg2 = SettingsDialog(again, saved, devices=[])
    qtbot.addWidget(dlg2)
    assert dlg2.cache_gb.value() == 7 and dlg2.prefetch.value() == 5
    assert dlg2.microphone.currentData() == "USB dictation mic"   # kept though not connected now
    assert "not connected" in dlg2.microphone.currentText()


def test_settings_refuse_plain_http_to_remote_host(qtbot):
    from app.settings import WorkstationSettings, settings_path
    from app.settings_dialog import SettingsDialog

    dlg = SettingsDialog(WorkstationSettings(), None, devices=[])
    qtbot.addWidget(dlg)
    dlg.server.setText("http://pacs.example.org/dicom-web")
    dlg.user.setText("reader1")
    dlg.save()
    assert not dlg.message.isHidden() and "http" in dlg.message.text()
    assert not settings_path().exists()


def test_idle_lock_hides_and_unlocks_with_password(window, qtbot):
    window.idle.set_timeout_ms(50)
    qtbot.waitUntil(lambda: window.lock_screen.locked, timeout=3000)
    cover = window.lock_screen
    assert cover.geometry() == window.rect()
    assert not window.actions["refresh_worklist"].isEnabled()      # no shortcut reaches the hidden window
    cover.password.setText("wrong")
    cover.try_unlock()
    assert cover.locked and "not right" in cover.message.text()
    window.idle.set_timeout_ms(0)
    cover.password.setText("secret-pw")
    cover.try_unlock()
    assert not cover.locked
    assert window.actions["refresh_worklist"].isEnabled()


def test_shortcuts_unique_and_bound(window):
    from app import shortcuts

    shortcuts.check_unique()
    assert window.actions["refresh_worklist"].shortcut().toString() == "F5"
    assert window.actions["lock"].shortcut().toString() == "Ctrl+L"
    assert "qa_mode" not in window.actions            # reader1 is not a QA reviewer


def test_task_runs_off_gui_thread_and_reports_progress(qtbot):
    from app.cli_gui import application
    from app.workers import run_task

    application()
    seen = {}
    progress = []

    def work(progress):
        seen["thread"] = threading.current_thread()
        for i in range(3):
            progress(i)
        return 42

    results = []
    run_task(work, on_done=results.append, on_progress=progress.append)
    qtbot.waitUntil(lambda: results == [42], timeout=5000)
    assert seen["thread"] is not threading.main_thread()
    assert progress == [0, 1, 2]


def test_task_error_is_worded_without_exception_text(qtbot):
    from app.cli_gui import application
    from app.workers import run_task

    application()
    errors = []

    def boom():
        raise KeyError("SYNTHETIC^PATIENT")

    run_task(boom, on_error=lambda m, e: errors.append(m))
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert "SYNTHETIC" not in errors[0] and "KeyError" in errors[0]


def test_signed_report_waits_in_outbox_while_archive_is_down(window, qtbot):
    """Signing works offline: the report is durable in the outbox and the status bar says it is waiting."""
    from cloud_client.worklist import WorklistItem

    item = WorklistItem(workitem_uid="2.25.11", study_uid="2.25.12", state="IN PROGRESS", priority="MEDIUM",
                        modality="DX", body_part="CHEST", study_description="XR CHEST")
    window.editor.set_report(window.ws.open_report(item))
    ed = window.editor
    ed.apply_macro()
    ed.report.set_field("indication", "Cough")
    ed.report.set_field("impression", "Normal chest.")
    ed._ask_pin = lambda _p: "123456"
    ed._confirm = lambda _t, _x: True
    with qtbot.waitSignal(ed.report_signed, timeout=30000):
        ed.sign()
    window.refresh_outbox()
    assert window.status.outbox.text() == "1 report waiting to send"


def test_push_to_talk_key_starts_dictation_and_is_not_typed(window, qtbot):
    from PySide6.QtCore import Qt

    from cloud_client.worklist import WorklistItem

    item = WorklistItem(workitem_uid="2.25.21", study_uid="2.25.22", state="IN PROGRESS", priority="MEDIUM",
                        modality="DX", body_part="CHEST", study_description="XR CHEST")
    window.editor.set_report(window.ws.open_report(item))
    window.show_page(1)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    field = window.editor.editors["lungs"].widget
    field.setFocus()
    qtbot.waitUntil(field.hasFocus, timeout=3000)
    window.dictation.show_notice("")            # the start-up notice is cleared; the key press must bring it
    assert window.dictation.notice.isHidden()
    qtbot.keyPress(field, Qt.Key_F4)
    qtbot.keyRelease(field, Qt.Key_F4)
    # no speech model in the test home: the press tried to start and says what to install
    assert "install-model" in window.dictation.notice.text() and not window.dictation.notice.isHidden()
    assert field.toPlainText() == "" and not window.dictation.button.isChecked()


def test_theme_stylesheet_and_icon_load(qtbot):
    from app import theme
    from app.cli_gui import application

    app = application()
    assert "QTableView" in app.styleSheet() and theme.stylesheet() == app.styleSheet()
    assert not app.windowIcon().isNull()
    assert app.palette().color(app.palette().ColorRole.Window).lightness() < 40     # dark reading room


def test_worklist_model_orders_stat_first_and_highlights_overdue(qtbot):
    import datetime as dt

    from PySide6.QtCore import Qt

    from app import theme
    from app.worklist_panel import WorklistModel
    from cloud_client.worklist import WorklistItem

    now = dt.datetime(2026, 12, 4, 3, 0, tzinfo=dt.UTC)

    def item(uid, priority, deadline_min, scheduled_min=-30):
        return WorklistItem(workitem_uid=uid, study_uid=uid + ".1", state="SCHEDULED", priority=priority,
                            scheduled=now + dt.timedelta(minutes=scheduled_min),
                            deadline=now + dt.timedelta(minutes=deadline_min))

    model = WorklistModel(now=lambda: now)
    model.set_items([item("routine-late", "MEDIUM", -20), item("stat", "HIGH", 25), item("routine", "LOW", 200),
                     item("stat-soon", "HIGH", 10)])
    assert [i.workitem_uid for i in model.items] == ["stat-soon", "stat", "routine-late", "routine"]
    assert [model.index(r, 0).data() for r in range(4)] == ["STAT", "STAT", "ROUTINE", "ROUTINE"]
    late = model.index(2, 1)
    assert late.data() == "overdue 20 min"
    assert late.data(Qt.BackgroundRole) == theme.OVERDUE_BG and late.data(Qt.ForegroundRole) == theme.STAT
    assert model.index(0, 1).data() == "in 10 min" and model.index(0, 1).data(Qt.BackgroundRole) == theme.DUE_SOON_BG
    assert model.index(3, 1).data() == "in 3 h 20 min" and model.index(3, 1).data(Qt.BackgroundRole) is None
    assert model.index(0, 2).data() == "30 min"                 # waiting since it was scheduled
    assert model.index(0, 0).data(Qt.ForegroundRole) == theme.STAT


def test_level_meter_follows_engine_levels(qtbot):
    from app.cli_gui import application
    from app.dictation_panel import DictationPanel
    from app.settings import WorkstationSettings
    from dictation.events import LevelEvent

    application()
    panel = DictationPanel(WorkstationSettings(), editor=None)
    qtbot.addWidget(panel)
    panel.feed(LevelEvent(rms_dbfs=-18.0, peak_dbfs=-6.0))
    assert panel.meter.value() == -18
    panel.feed(LevelEvent(rms_dbfs=-90.0, peak_dbfs=-80.0))
    assert panel.meter.value() == -60                            # clamped to the meter's floor
    panel.shutdown()


def test_item_claimed_on_another_workstation_is_not_opened_here(window, qtbot):
    from cloud_client.worklist import WorklistItem

    elsewhere = WorklistItem(workitem_uid="2.25.41", study_uid="2.25.42", state="IN PROGRESS", priority="MEDIUM",
                             assigned_to="reader1", held_here=False)
    window.worklist.model.set_items([elsewhere])
    window.worklist.select_row(0)
    opened = []
    window.worklist.open_requested.connect(opened.append)
    window.worklist.claim_and_open()
    assert not opened and "another workstation" in window.worklist.notice.text()
    assert window.worklist.model.index(0, 7).data() == "in progress"


def test_signed_report_can_be_reopened_for_an_addendum(window, qtbot):
    from cloud_client.worklist import WorklistItem

    item = WorklistItem(workitem_uid="2.25.51", study_uid="2.25.52", state="IN PROGRESS", priority="MEDIUM",
                        modality="DX", body_part="CHEST", study_description="XR CHEST NIGHT")
    ed = window.editor
    ed.set_report(window.ws.open_report(item))
    ed.apply_macro()
    ed.report.set_field("indication", "Cough")
    ed.report.set_field("impression", "Normal chest.")
    ed._ask_pin = lambda _p: "123456"
    ed._confirm = lambda _t, _x: True
    with qtbot.waitSignal(ed.report_signed, timeout=30000):
        ed.sign()
    ed.set_report(None)
    window.worklist.refresh()
    qtbot.waitUntil(lambda: window.worklist.recent.count() == 1, timeout=10000)
    assert "XR CHEST NIGHT" in window.worklist.recent.item(0).text()
    window.worklist.recent.itemDoubleClicked.emit(window.worklist.recent.item(0))
    qtbot.waitUntil(lambda: ed.report is not None, timeout=10000)
    assert window.pages.currentIndex() == 1
    assert ed.report.state.value == "final" and ed.addendum_button.isEnabled()
    assert ed.editors["impression"].text() == "Normal chest."
    ed.start_addendum()
    assert ed.report.is_addendum and ed.report.predecessor is not None


def test_unlock_without_a_local_verifier_asks_the_archive(window, qtbot):
    """A session opened with a keyring password has no in-memory hash; with the archive down the lock says so
    and stays locked (it never opens on an unchecked password)."""
    window.ws.session.verifier = None
    window.lock()
    cover = window.lock_screen
    cover.password.setText("anything")
    cover.try_unlock()
    assert cover.locked and "cannot be checked" in cover.message.text()
    cover.password.setText("")
    cover.try_unlock()
    assert cover.locked and "not right" in cover.message.text()


def test_no_display_is_said_in_words(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    for argv in (["-m", "app.cli"], ["-m", "app.cli", "demo"]):
        r = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=60, check=False,
                           cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
        assert r.returncode == 2 and "No display" in r.stderr and "xvfb-run" in r.stderr


def test_unexpected_error_is_logged_and_shown_without_patient_data(qtbot, monkeypatch, caplog):
    import sys

    from PySide6.QtWidgets import QMessageBox

    from app.cli_gui import application, install_error_hook

    application()
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda _p, _t, text: shown.append(text)))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)       # restored after the test
    install_error_hook()
    try:
        raise KeyError("SYNTHETIC^PATIENT RRDEMO-0001")
    except KeyError as exc:
        with caplog.at_level("ERROR"):
            sys.excepthook(type(exc), exc, exc.__traceback__)
    assert shown and "KeyError" in shown[0] and "draft is saved" in shown[0]
    assert "SYNTHETIC" not in shown[0] and "RRDEMO" not in shown[0]
    assert "KeyError" in caplog.text and "SYNTHETIC" not in caplog.text and "RRDEMO" not in caplog.text


def test_study_loader_asks_again_for_images_a_retrieval_left_out(tmp_path):
    """When a retrieval ends with an image missing (the cloud client logs "finished with N instances missing"),
    the loader fetches that series once more, so the pane does not stay on "loading"."""
    import pydicom

    from app.study_loader import SeriesReady, SlicesArrived, StudyLoader
    from cloud.demo_data import write_ct_series

    files = write_ct_series(tmp_path, n_slices=6, rows=32, cols=32, key="retry")
    datasets = [pydicom.dcmread(f) for f in files]
    meta = []
    for ds in datasets:
        head = pydicom.dcmread(files[datasets.index(ds)], stop_before_pixels=True)
        meta.append(head.to_json_dict())
    calls = []

    def fetch(study_uid, *, on_instance, on_progress, on_metadata, cancel=None, series_uids=None):
        calls.append(series_uids)
        if on_metadata is not None:
            on_metadata(meta)
        dropped = datasets[3] if len(calls) == 1 else None        # the first retrieval loses one image
        for ds in datasets:
            if ds is not dropped:
                on_instance(str(ds.SOPInstanceUID), ds)

    events = []
    result = StudyLoader(fetch).load(str(datasets[0].StudyInstanceUID), events.append)
    assert result.retried and len(calls) == 2
    assert calls[1] == [str(datasets[0].SeriesInstanceUID)]
    volume = next(e.volume for e in events if isinstance(e, SeriesReady))
    arrived = sorted(k for e in events if isinstance(e, SlicesArrived) for k in e.slices)
    assert arrived == list(range(6)) and volume.shape[0] == 6


def test_series_left_out_by_the_protocol_can_be_shown(qtbot, tmp_path):
    """The protocol (CT head: brain + bone of one series) places one series; another series of the study stays
    reachable from the series menu."""
    import pydicom

    from app.cli_gui import application
    from app.reading_page import ReadingPage
    from app.study_loader import LayoutPlanned, SeriesInfo, SeriesReady, SlicesArrived, plan_layout
    from cloud.demo_data import write_ct_series
    from viewer.loader import VolumeBuilder

    application()
    page = ReadingPage(workstation=None)
    qtbot.addWidget(page)
    page.show()
    series = []
    for key, n in (("menu-a", 5), ("menu-b", 3)):
        files = write_ct_series(tmp_path / key, n_slices=n, rows=32, cols=32, key=key)
        dss = [pydicom.dcmread(f) for f in files]
        series.append((SeriesInfo(series_uid=str(dss[0].SeriesInstanceUID), modality="CT", description=key),
                       dss))
    page._on_event(LayoutPlanned(plan_layout(series[0][1])))
    assert len(page.panes) == 2 and page.plan.protocol_id == "ct_head_brain_bone"
    for info, dss in series:
        b = VolumeBuilder(dss)
        page._on_event(SeriesReady(info, b.volume))
        for ds in dss:
            page._on_event(SlicesArrived(info.series_uid, b.add_instance(ds)))
    first, second = (s[0].series_uid for s in series)
    assert [p.volume.shape[0] for p in page.panes] == [5, 5]
    assert page.series_menu.count() == 2 and page.series_menu.isEnabled()
    page.series_menu.setCurrentIndex(1)
    page.series_menu.activated.emit(1)
    assert [p.volume.shape[0] for p in page.panes] == [3, 5]
    assert page.viewports == {first: [page.panes[1]], second: [page.panes[0]]}
    assert page.panes[0].arrived is None                      # all its slices were already there
    page.show_series(first)
    assert page.panes[0].volume.shape[0] == 5


def test_any_reader_who_peer_reviews_gets_the_qa_page_from_settings(window, qtbot):
    # RADPEER reviewers are radiologists: the QA page is not tied to a special user name. reader1 turns it on in
    # Settings, gets the page and its action at once (no restart), and can turn it off again.
    from app.main_window import PAGE_QA
    from app.qa_page import QAPage
    from app.settings import load_settings

    assert "qa_mode" not in window.actions and not isinstance(window.qa_page, QAPage)
    settings = window.settings
    settings.qa_reviewer = True
    window.apply_settings(settings)
    assert load_settings().qa_reviewer                                     # persisted
    assert isinstance(window.qa_page, QAPage) and window.pages.widget(PAGE_QA) is window.qa_page
    assert "qa_mode" in window.actions and window.actions["qa_mode"] in window._toolbar.actions()
    assert window.actions["qa_mode"].shortcut().toString() == "F9"
    window.actions["qa_mode"].trigger()          # its list query is still running when the page goes away below
    assert window.pages.currentIndex() == PAGE_QA
    settings.qa_reviewer = False
    window.apply_settings(settings)
    assert "qa_mode" not in window.actions and not isinstance(window.qa_page, QAPage)
    assert window.pages.currentIndex() != PAGE_QA and window.pages.count() == 3
