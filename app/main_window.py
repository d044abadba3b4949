"""The main window: worklist page, reading page (viewer + report + dictation), QA page, status bar, idle lock.

Owns the layout of the workstation and the wiring between panels: the worklist panel asks to open a claimed
study; the reading page streams it in; the report editor and dictation panel work on the open study; the
status bar shows connection, outbox and prefetch state. Every long call goes through :mod:`app.workers`.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QStackedWidget, QToolBar, QVBoxLayout, QWidget

from . import shortcuts
from .idle_lock import IdleWatcher, LockScreen
from .settings import WorkstationSettings, save_settings
from .status_bar import WorkstationStatusBar
from .workers import run_task
from .worklist_panel import WorklistPanel

log = logging.getLogger(__name__)

PAGE_WORKLIST, PAGE_READING, PAGE_QA = 0, 1, 2


class MainWindow(QMainWindow):
    study_opened = Signal(object)
    worklist_changed = Signal(object)    # a UPS event message, emitted from the listener thread (queued here)

    def __init__(self, workstation, settings: WorkstationSettings | None = None) -> None:
        super().__init__()
        self.ws = workstation
        self.settings = settings or workstation.settings
        self.setWindowTitle(f"ReadRoom - {workstation.user}")
        self.resize(1600, 1000)
        self.current_item = None
        self._return_page = PAGE_WORKLIST

        self.pages = QStackedWidget()
        self.worklist = WorklistPanel(workstation)
        self.pages.addWidget(self.worklist)
        self.reading = self._make_reading_page()
        self.pages.addWidget(self.reading)
        self.qa_page = self._make_qa_page()
        self.pages.addWidget(self.qa_page)
        self.setCentralWidget(self.pages)

        self.status = WorkstationStatusBar(self)
        self.setStatusBar(self.status)
        self.status.set_connection(True, f"Connected to {workstation.session.profile.base_url} as "
                                         f"{workstation.user}")

        self.actions: dict[str, QAction] = {}
        self._build_actions()
        self.lock_screen = LockScreen(self, self._check_unlock_password, workstation.user)
        self.lock_screen.unlocked.connect(self._unlocked)
        self.idle = IdleWatcher(self.settings.idle_lock_minutes, self)
        self.idle.idle.connect(self.lock)

        self.worklist.open_requested.connect(self.open_item)
        self.worklist.open_signed.connect(self.open_signed)
        self.worklist.message.connect(self._worklist_message)
        self.worklist.items_loaded.connect(self._worklist_loaded)
        self.worklist.auth_failed.connect(self.sign_in_again)
        self.reauth_dialog = None

        self._outbox_timer = QTimer(self)
        self._outbox_timer.timeout.connect(self.refresh_outbox)
        self._outbox_timer.start(5000)

    # -- construction ---------------------------------------------------------------------------------------
    def _make_reading_page(self) -> QWidget:
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QSplitter

        from .dictation_panel import DictationPanel
        from .reading_page import ReadingPage
        from .report_editor import ReportEditor

        page = ReadingPage(self.ws, self)
        page.closed.connect(self._reading_closed)
        page.fetch_progress.connect(self._fetch_progress)
        page.measurement_made.connect(self._measurement_made)
        page.auth_failed.connect(lambda: self.sign_in_again())
        self.editor = ReportEditor(self.ws)
        self.dictation = DictationPanel(self.settings, self.editor)
        self.editor.report_changed.connect(self.dictation.set_report)
        self.editor.report_signed.connect(self._report_signed)
        side = QSplitter(Qt.Vertical)
        side.addWidget(self.editor)
        side.addWidget(self.dictation)
        side.setStretchFactor(0, 5)
        side.setStretchFactor(1, 1)
        page.set_side_widget(side)
        return page

    @property
    def is_qa_reviewer(self) -> bool:
        """QA review is offered to the demo's reviewer and to every reader who says in Settings that they
        peer-review (RADPEER reviewers are radiologists reading their peers' reports)."""
        return self.ws.session.is_qa or bool(getattr(self.settings, "qa_reviewer", False))

    def _make_qa_page(self) -> QWidget:
        if not self.is_qa_reviewer:
            w = QWidget()
            lay = QVBoxLayout(w)
            lay.addWidget(QLabel("QA peer review is for QA reviewers."))
            return w
        from .qa_page import QAPage

        page = QAPage(self.ws, self)
        page.open_images.connect(self.open_for_review)
        return page

    def _build_actions(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        self.addToolBar(tb)

        def add(name: str, slot, *, toolbar: bool = True, checkable: bool = False) -> QAction:
            sc = next(s for s in shortcuts.SHORTCUTS if s.action == name)
            act = QAction(sc.label or sc.text, self)
            act.setShortcut(QKeySequence(sc.keys))
            act.setToolTip(f"{sc.text} ({sc.keys})")
            act.setCheckable(checkable)
            act.triggered.connect(slot)
            self.addAction(act)
            if toolbar:
                tb.addAction(act)
            self.actions[name] = act
            return act

        add("show_worklist", lambda: self.show_page(PAGE_WORKLIST))
        add("show_reading", lambda: self.show_page(PAGE_READING))
        add("refresh_worklist", self.worklist.refresh)
        add("open_next", self.worklist.claim_and_open)
        add("release", self.release_current)
        add("normal_macro", lambda: self.editor.apply_macro(), toolbar=False)
        add("sign", lambda: self.editor.sign(), toolbar=False)
        add("next_field", lambda: self.editor.report and self.editor.report.focus_next("keyboard"),
            toolbar=False)
        add("previous_field", lambda: self.editor.report and self.editor.report.focus_previous("keyboard"),
            toolbar=False)
        if self.is_qa_reviewer:
            add("qa_mode", lambda: self.show_page(PAGE_QA))
        self._toolbar, self._add_action = tb, add
        tb.addSeparator()
        add("settings", self.open_settings)
        add("lock", self.lock)
        add("help", self.show_shortcuts, toolbar=False)

    # -- pages ----------------------------------------------------------------------------------------------
    def show_page(self, page: int) -> None:
        self.pages.setCurrentIndex(page)
        if page == PAGE_QA and hasattr(self.qa_page, "refresh"):
            self.qa_page.refresh()

    def start(self) -> None:
        """After show(): load the worklist (and the QA list for reviewers)."""
        self.worklist.refresh()
        self.refresh_outbox()
        if hasattr(self.ws, "start_background"):
            self.ws.start_background()
        # Pushed worklist changes (a new STAT assignment) refresh the list within a second; a burst of events
        # (a study routed: state report + assignment) makes one refresh. The 60 s poll stays as a safety net.
        self._event_refresh = QTimer(self)
        self._event_refresh.setSingleShot(True)
        self._event_refresh.setInterval(300)
        self._event_refresh.timeout.connect(self.worklist.refresh_if_idle)
        self.worklist_changed.connect(self._worklist_event)
        if hasattr(self.ws, "start_events"):
            self.ws.start_events(self.worklist_changed.emit)
        self._prefetch_timer = QTimer(self)
        self._prefetch_timer.timeout.connect(self._show_prefetch)
        self._prefetch_timer.start(2000)

    def _worklist_event(self, message) -> None:
        """A pushed UPS event: refresh soon if it concerns this reader's list (a burst makes one refresh; the
        timer is not restarted by later events, so a steady stream cannot hold the refresh back)."""
        if self.worklist.concerns_me(message) and not self._event_refresh.isActive():
            self._event_refresh.start()

    # -- study ----------------------------------------------------------------------------------------------
    def open_item(self, item) -> None:
        self.current_item = item
        self._return_page = PAGE_WORKLIST
        self.show_page(PAGE_READING)
        self.reading.open_item(item)
        self.editor.set_report(None)
        run_task(self.ws.open_report, item, on_done=lambda r: self._report_ready(item, r),
                 on_error=lambda m, _e: self.status.showMessage(m, 15_000))
        self.study_opened.emit(item)

    def open_for_review(self, study_uid: str) -> None:
        """Show a study's images for peer review: no claim, no report editing; back returns to QA."""
        from cloud_client.worklist import WorklistItem

        item = WorklistItem(workitem_uid="", study_uid=study_uid, state="COMPLETED", priority="")
        self.current_item = None
        self.editor.set_report(None)
        self._return_page = PAGE_QA
        self.show_page(PAGE_READING)
        self.reading.open_item(item)

    def open_signed(self, study_uid: str) -> None:
        """Reopen a study whose report was signed here: images plus the signed report, ready for an addendum."""
        from cloud_client.worklist import WorklistItem

        item = WorklistItem(workitem_uid="", study_uid=study_uid, state="COMPLETED", priority="")
        self.current_item = item
        self._return_page = PAGE_WORKLIST
        self.show_page(PAGE_READING)
        self.reading.open_item(item)
        self.editor.set_report(None)
        run_task(self.ws.open_report, item, on_done=lambda r: self._report_ready(item, r),
                 on_error=lambda m, _e: self.status.showMessage(m, 15_000))

    def _report_ready(self, item, report) -> None:
        if self.current_item is item:           # the reader may have moved on meanwhile
            self.editor.set_report(report)

    def _measurement_made(self, m) -> None:
        from .measurement_link import apply_to_report

        try:
            note = apply_to_report(self.editor.report, m)
        except Exception as exc:  # noqa: BLE001 - the viewer keeps the measurement either way
            from .workers import user_message

            note = user_message(exc)
        if note:
            self.status.showMessage(note, 5000)

    def _report_signed(self, _result) -> None:
        items, keys = self.reading.collect_annotations()
        if items or keys:
            run_task(self.ws.save_measurements, items, keys, on_done=lambda _i: self.refresh_outbox(),
                     on_error=lambda m, _e: self.status.showMessage(m, 15_000))
        self.refresh_outbox()
        self.status.showMessage("Report signed. It is in the outbox and will be sent to the archive.", 15_000)
        self.worklist.refresh()

    def release_current(self) -> None:
        from .worklist_panel import RELEASE_TEXT

        item = self.current_item
        if item is None or not self.worklist.confirm("Release this study?", RELEASE_TEXT):
            return
        run_task(self.ws.release, item, on_done=lambda _r: self._released(),
                 on_error=lambda m, _e: self._worklist_message(m))

    def _released(self) -> None:
        self.reading.close_study()
        self.editor.set_report(None)
        self.current_item = None
        self.show_page(PAGE_WORKLIST)
        self.worklist.refresh()

    def _reading_closed(self) -> None:
        self.current_item = None
        page, self._return_page = self._return_page, PAGE_WORKLIST
        self.show_page(page)
        if page == PAGE_WORKLIST:
            self.worklist.refresh()

    def _fetch_progress(self, p) -> None:
        self.status.set_fetch(p.done, p.total, getattr(p, "rate_mb_s", None), getattr(p, "eta_s", None))

    def _worklist_message(self, message: str) -> None:
        self.status.showMessage(message, 10_000)
        if "sign in" in message.lower():
            self.status.set_connection(False, "Sign in again")
        elif "cannot be reached" in message.lower():
            self.status.set_connection(False, "Archive unreachable - retrying")

    def _worklist_loaded(self, items) -> None:
        self.status.set_connection(True, f"Connected as {self.ws.user}")
        if getattr(self.ws, "prefetcher", None) is not None:
            self.ws.prefetcher.poke()

    def _show_prefetch(self) -> None:
        p = getattr(self.ws, "prefetcher", None)
        if p is None:
            self.status.set_prefetch(0, 0)
            return
        wanted = [i.study_uid for i in self.worklist.model.items if i.study_uid][: p.count]
        fetched = set(p.status.fetched)
        self.status.set_prefetch(sum(1 for uid in wanted if uid in fetched), len(wanted))

    # -- outbox ---------------------------------------------------------------------------------------------
    def refresh_outbox(self) -> None:
        pending = getattr(self.ws, "outbox_pending", None)
        if callable(pending):
            try:
                self.status.set_outbox_pending(pending())
            except Exception as exc:  # noqa: BLE001 - the outbox must never break the window
                log.warning("Outbox count failed: %s", type(exc).__name__)

    # -- settings, lock, help -------------------------------------------------------------------------------
    def open_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        dlg = SettingsDialog(self.settings, self.ws.session.profile, self)
        if dlg.exec():
            self.apply_settings(dlg.settings, dlg.profile)

    def apply_settings(self, settings: WorkstationSettings, profile=None) -> None:
        self.settings = settings
        self.ws.settings = settings
        if profile is not None:
            self.ws.session.profile.prefetch_count = profile.prefetch_count
            self.ws.session.profile.cache_max_bytes = profile.cache_max_bytes
            self.ws.cache.max_bytes = profile.cache_max_bytes
            if self.ws.prefetcher is not None:
                self.ws.prefetcher.count = profile.prefetch_count
                self.ws.prefetcher.include_pool = settings.show_shared_pool
                self.ws.prefetcher.poke()
            elif profile.prefetch_count > 0:
                self.ws.start_prefetch()
        save_settings(settings)
        self.idle.set_minutes(settings.idle_lock_minutes)
        self.dictation.apply_settings(settings)
        self._apply_qa_role()

    def _apply_qa_role(self) -> None:
        """Offer or withdraw the QA page after the reviewer setting changed (no restart needed)."""
        has_page = "qa_mode" in self.actions
        if self.is_qa_reviewer == has_page:
            return
        if self.pages.currentIndex() == PAGE_QA:
            self.show_page(PAGE_WORKLIST)
        if not self.is_qa_reviewer and self._return_page == PAGE_QA:
            self._return_page = PAGE_WORKLIST        # leaving images opened for a review goes to the worklist
        old = self.qa_page
        self.qa_page = self._make_qa_page()
        self.pages.insertWidget(PAGE_QA, self.qa_page)
        self.pages.removeWidget(old)
        old.deleteLater()
        if self.is_qa_reviewer:
            act = self._add_action("qa_mode", lambda: self.show_page(PAGE_QA), toolbar=False)
            self._toolbar.insertAction(self.actions["settings"], act)
        else:
            act = self.actions.pop("qa_mode")
            self._toolbar.removeAction(act)
            self.removeAction(act)
            act.deleteLater()

    def lock(self) -> None:
        """Hide everything behind the lock screen; no shortcut works and the microphone closes until unlocked."""
        self.dictation.stop()
        for act in self.actions.values():
            act.setEnabled(False)
        self.lock_screen.lock()

    def sign_in_again(self) -> None:
        """The archive refused the session's credentials (expired or changed password): ask again, keep
        everything open (study, draft, outbox), and carry on."""
        from .login_dialog import LoginDialog
        from .session import sign_in_again

        if self.reauth_dialog is not None and self.reauth_dialog.isVisible():
            return
        session = self.ws.session
        dlg = LoginDialog(session.profile, self, sign_in=lambda _p, pw, _r: sign_in_again(session, pw))
        dlg.setWindowTitle("Sign in again")
        dlg.server.setEnabled(False)
        dlg.user.setEnabled(False)
        dlg.password.clear()
        dlg.show_error("The archive asks you to sign in again (your password may have expired).")
        dlg.signed_in.connect(lambda _s: self._signed_in_again())
        self.reauth_dialog = dlg
        dlg.open()

    def _signed_in_again(self) -> None:
        self.status.set_connection(True, f"Connected as {self.ws.user}")
        self.worklist.refresh()

    def _check_unlock_password(self, password: str) -> bool | None:
        """The sign-in password: checked against the in-memory hash made at sign-in, or - when the session was
        opened with a keyring password and has none - by asking the archive."""
        verifier = self.ws.session.verifier
        if verifier is not None:
            return verifier.check(password)
        if not password:
            return False
        from cloud_client.errors import AuthError, CloudError
        from cloud_client.session import DicomWebSession

        try:
            with DicomWebSession(self.ws.session.profile, password=password) as probe:
                probe.check_sign_in()
            return True
        except AuthError:
            return False
        except CloudError:
            return None

    def _unlocked(self) -> None:
        for act in self.actions.values():
            act.setEnabled(True)

    def show_shortcuts(self) -> None:
        text = "\n".join(f"{s.keys:>14}   {s.text}" for s in shortcuts.SHORTCUTS)
        QMessageBox.information(self, "Keyboard shortcuts", text)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.lock_screen.resize_to_parent()

    def closeEvent(self, event) -> None:
        self.idle.stop()
        self._outbox_timer.stop()
        if hasattr(self, "_prefetch_timer"):
            self._prefetch_timer.stop()
        self.ws.stop_background()
        self.reading.shutdown()
        self.editor.shutdown()
        self.dictation.shutdown()
        super().closeEvent(event)
