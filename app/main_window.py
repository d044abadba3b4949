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

    def __init__(self, workstation, settings: WorkstationSettings | None = None) -> None:
        super().__init__()
        self.ws = workstation
        self.settings = settings or workstation.settings
        self.setWindowTitle(f"ReadRoom - {workstation.user}")
        self.resize(1600, 1000)
        self.current_item = None

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
        self.lock_screen = LockScreen(self, workstation.session.verifier.check if workstation.session.verifier
                                      else (lambda _p: True), workstation.user)
        self.idle = IdleWatcher(self.settings.idle_lock_minutes, self)
        self.idle.idle.connect(self.lock)

        self.worklist.open_requested.connect(self.open_item)
        self.worklist.message.connect(self._worklist_message)
        self.worklist.items_loaded.connect(self._worklist_loaded)

        self._outbox_timer = QTimer(self)
        self._outbox_timer.timeout.connect(self.refresh_outbox)
        self._outbox_timer.start(5000)

    # -- construction ---------------------------------------------------------------------------------------
    def _make_reading_page(self) -> QWidget:
        from .reading_page import ReadingPage

        page = ReadingPage(self.ws, self)
        page.closed.connect(self._reading_closed)
        page.fetch_progress.connect(self._fetch_progress)
        return page

    def _make_qa_page(self) -> QWidget:
        if not self.ws.session.is_qa:
            w = QWidget()
            lay = QVBoxLayout(w)
            lay.addWidget(QLabel("QA peer review is for QA reviewers."))
            return w
        from .qa_page import QAPage

        return QAPage(self.ws, self)

    def _build_actions(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        self.addToolBar(tb)

        def add(name: str, slot, *, toolbar: bool = True, checkable: bool = False) -> QAction:
            sc = next(s for s in shortcuts.SHORTCUTS if s.action == name)
            act = QAction(sc.text, self)
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
        if self.ws.session.is_qa:
            add("qa_mode", lambda: self.show_page(PAGE_QA))
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
        if self.ws.session.is_qa and not self.ws.session.roles - {"qa", "reader"}:
            pass

    # -- study ----------------------------------------------------------------------------------------------
    def open_item(self, item) -> None:
        self.current_item = item
        self.show_page(PAGE_READING)
        self.reading.open_item(item)
        self.study_opened.emit(item)

    def release_current(self) -> None:
        item = self.current_item
        if item is None:
            return
        run_task(self.ws.release, item, on_done=lambda _r: self._released(),
                 on_error=lambda m, _e: self._worklist_message(m))

    def _released(self) -> None:
        self.reading.close_study()
        self.current_item = None
        self.show_page(PAGE_WORKLIST)
        self.worklist.refresh()

    def _reading_closed(self) -> None:
        self.current_item = None
        self.show_page(PAGE_WORKLIST)
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
        if hasattr(self.ws, "prefetch"):
            self.ws.prefetch(items, on_progress=self.status.set_prefetch)

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
        save_settings(settings)
        self.idle.set_minutes(settings.idle_lock_minutes)
        if hasattr(self.reading, "apply_settings"):
            self.reading.apply_settings(settings)

    def lock(self) -> None:
        self.lock_screen.lock()

    def show_shortcuts(self) -> None:
        text = "\n".join(f"{s.keys:>14}   {s.text}" for s in shortcuts.SHORTCUTS)
        QMessageBox.information(self, "Keyboard shortcuts", text)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.lock_screen.resize_to_parent()

    def closeEvent(self, event) -> None:
        self.idle.stop()
        if hasattr(self.reading, "shutdown"):
            self.reading.shutdown()
        super().closeEvent(event)
