"""Worklist panel: my studies, STAT first, with waiting time and a live deadline countdown; claim and release.

Owns the Qt table model over :class:`cloud_client.worklist.WorklistItem` values and the panel around it. All
network calls (search, claim, release) run off the GUI thread through :mod:`app.workers`. A lost claim race is
shown as an inline notice ("taken by another reader") and the row disappears; nothing is retried blindly.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from . import theme
from .workers import run_task

log = logging.getLogger(__name__)

URGENT = {"HIGH", "STAT"}
_ROOT = QModelIndex()
RELEASE_TEXT = ("Give this study back? Your claim is withdrawn (the procedure step is cancelled with a reason) and "
                "the study goes back to the scheduler to be assigned again. Your draft stays on this workstation.")
COLUMNS = ("Priority", "Due", "Waiting", "Patient", "Exam", "Description", "Site", "State")


def is_stat(item) -> bool:
    return str(getattr(item, "priority", "") or "").upper() in URGENT


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC).astimezone()


def sort_key(item) -> tuple:
    deadline = _aware(getattr(item, "deadline", None))
    return (0 if is_stat(item) else 1, deadline is None,
            deadline.timestamp() if deadline else 0.0)


def format_duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 3600:
        return f"{seconds // 60} min"
    hours, rest = divmod(seconds, 3600)
    if hours < 48:
        return f"{hours} h {rest // 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def due_text(deadline: dt.datetime | None, now: dt.datetime) -> tuple[str, str]:
    """(text, state) where state is 'overdue', 'soon' (< 15 min), 'ok' or 'none'."""
    deadline = _aware(deadline)
    if deadline is None:
        return "-", "none"
    left = (deadline - now).total_seconds()
    if left < 0:
        return f"overdue {format_duration(left)}", "overdue"
    return f"in {format_duration(left)}", "soon" if left < 15 * 60 else "ok"


def waiting_text(scheduled: dt.datetime | None, now: dt.datetime) -> str:
    scheduled = _aware(scheduled)
    if scheduled is None:
        return "-"
    return format_duration(max(0.0, (now - scheduled).total_seconds()))


def exam_text(item) -> str:
    parts = [getattr(item, "modality", "") or "", getattr(item, "body_part", "") or ""]
    return " ".join(p for p in parts if p) or "-"


def patient_text(item) -> str:
    name = str(getattr(item, "patient_name", "") or "").replace("^", ", ", 1).replace("^", " ")
    extras = [x for x in (getattr(item, "patient_sex", "") or "", getattr(item, "patient_age", "") or "") if x]
    return f"{name} ({' '.join(extras)})" if extras else name


class WorklistModel(QAbstractTableModel):
    def __init__(self, parent=None, now: Callable[[], dt.datetime] | None = None) -> None:
        super().__init__(parent)
        self._items: list[Any] = []
        self._now = now or (lambda: dt.datetime.now().astimezone())

    # -- data in
    def set_items(self, items) -> None:
        self.beginResetModel()
        self._items = sorted(items, key=sort_key)
        self.endResetModel()

    def remove(self, workitem_uid: str) -> None:
        for row, item in enumerate(self._items):
            if item.workitem_uid == workitem_uid:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._items[row]
                self.endRemoveRows()
                return

    def replace(self, item) -> None:
        for row, old in enumerate(self._items):
            if old.workitem_uid == item.workitem_uid:
                self._items[row] = item
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
                return

    def tick(self) -> None:
        """Refresh countdowns (called every few seconds)."""
        if self._items:
            self.dataChanged.emit(self.index(0, 1), self.index(len(self._items) - 1, 2))

    def item(self, row: int):
        return self._items[row] if 0 <= row < len(self._items) else None

    @property
    def items(self) -> list:
        return list(self._items)

    # -- Qt model API
    def rowCount(self, parent=_ROOT) -> int:
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent=_ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        item = self._items[index.row()]
        col = index.column()
        now = self._now()
        if role == Qt.DisplayRole:
            if col == 0:
                return "STAT" if is_stat(item) else (str(getattr(item, "priority", "") or "ROUTINE")
                                                    .replace("MEDIUM", "ROUTINE").replace("LOW", "ROUTINE"))
            if col == 1:
                return due_text(getattr(item, "deadline", None), now)[0]
            if col == 2:
                return waiting_text(getattr(item, "scheduled", None), now)
            if col == 3:
                return patient_text(item)
            if col == 4:
                return exam_text(item)
            if col == 5:
                return getattr(item, "study_description", "") or ""
            if col == 6:
                return getattr(item, "clinic", "") or getattr(item, "site_id", "") or ""
            if col == 7:
                state = str(getattr(item, "state", "") or "")
                if state == "IN PROGRESS":
                    return "claimed by you" if getattr(item, "held_here", True) else "in progress"
                return "pool" if getattr(item, "assigned_to", "x") is None else state.lower()
        if role == Qt.ForegroundRole:
            if col == 0 and is_stat(item):
                return theme.STAT
            if col == 1 and due_text(getattr(item, "deadline", None), now)[1] == "overdue":
                return theme.STAT
        if role == Qt.BackgroundRole:
            state = due_text(getattr(item, "deadline", None), now)[1]
            if state == "overdue":
                return theme.OVERDUE_BG
            if state == "soon":
                return theme.DUE_SOON_BG
            if str(getattr(item, "state", "")) == "IN PROGRESS":
                return theme.HELD_BG
        if role == Qt.FontRole and col in (0, 1) and (is_stat(item) or
                                                       due_text(getattr(item, "deadline", None), now)[1] ==
                                                       "overdue"):
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ToolTipRole:
            return f"Workitem {item.workitem_uid}"
        if role == Qt.UserRole:
            return item
        return None


class WorklistPanel(QWidget):
    """``services`` provides ``list_worklist()``, ``claim(item)`` and ``release(item)`` (see app.services)."""

    open_requested = Signal(object)       # a WorklistItem we hold (IN PROGRESS), to be opened
    open_signed = Signal(str)             # study UID of a report signed here (to read it or add an addendum)
    items_loaded = Signal(list)
    claim_lost = Signal(str)              # message shown
    auth_failed = Signal()                # the archive wants the reader to sign in again
    message = Signal(str)

    def __init__(self, services, parent=None) -> None:
        super().__init__(parent)
        self.services = services
        self.model = WorklistModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setWordWrap(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(5, QHeaderView.Stretch)
        self.table.doubleClicked.connect(lambda _i: self.claim_and_open())

        self.title = QLabel("My worklist")
        self.title.setObjectName("sectionTitle")
        self.count = QLabel("")
        self.count.setObjectName("hint")
        self.notice = QLabel("")
        self.notice.setObjectName("banner")
        self.notice.setWordWrap(True)
        self.notice.hide()
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button = QPushButton("Claim && open")
        self.open_button.setObjectName("primary")
        self.open_button.clicked.connect(self.claim_and_open)
        self.release_button = QPushButton("Release")
        self.release_button.clicked.connect(self.release_selected)

        top = QHBoxLayout()
        top.addWidget(self.title)
        top.addWidget(self.count)
        top.addStretch(1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.release_button)
        top.addWidget(self.open_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(top)
        lay.addWidget(self.notice)
        lay.addWidget(self.table, 1)
        self.recent_title = QLabel("Signed on this workstation (open for an addendum)")
        self.recent_title.setObjectName("hint")
        self.recent = QListWidget()
        self.recent.setMaximumHeight(140)
        self.recent.itemDoubleClicked.connect(
            lambda it: self.open_signed.emit(it.data(Qt.UserRole)))
        lay.addWidget(self.recent_title)
        lay.addWidget(self.recent)

        self._tick = QTimer(self)
        self._tick.timeout.connect(self.model.tick)
        self._tick.start(15_000)
        self._poll = QTimer(self)                 # new assignments arrive without the reader asking
        self._poll.timeout.connect(self._auto_refresh)
        self._poll.start(60_000)
        self.busy = False
        self._pushed_retry = QTimer(self)            # one pending "refresh after the current one", however many
        self._pushed_retry.setSingleShot(True)       # events arrive meanwhile
        self._pushed_retry.setInterval(1000)
        self._pushed_retry.timeout.connect(self.refresh_if_idle)
        self.confirm = self._confirm_dialog     # (title, text) -> bool; tests replace it

    # -- helpers
    def _confirm_dialog(self, title: str, text: str) -> bool:
        from PySide6.QtWidgets import QMessageBox

        return QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No,
                                    QMessageBox.No) == QMessageBox.Yes

    def selected_item(self):
        rows = self.table.selectionModel().selectedRows()
        return self.model.item(rows[0].row()) if rows else None

    def select_row(self, row: int) -> None:
        self.table.selectRow(row)

    def show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.show()
        QTimer.singleShot(12_000, self.notice.hide)

    # -- actions
    def _auto_refresh(self) -> None:
        if self.refresh_button.isEnabled() and not self.busy:
            self.refresh()

    def concerns_me(self, message: dict) -> bool:
        """Does a UPS event (DICOM JSON) touch this reader's list: an item on it, an assignment to this reader,
        or (with the shared pool shown) a new item? Events about other readers' work are ignored."""
        def values(tag):
            return (message.get(tag) or {}).get("Value") or []

        uid = next(iter(values("00001000")), None)
        if uid is not None and any(i.workitem_uid == uid for i in self.model.items):
            return True
        me = self.services.user
        for performer in values("00404034"):
            for code in (performer.get("00404009") or {}).get("Value") or []:
                if me in ((code.get("00080100") or {}).get("Value") or []):
                    return True
        pool = bool(getattr(getattr(self.services, "settings", None), "show_shared_pool", False))
        return pool and "00404034" not in message and values("00741000") == ["SCHEDULED"]

    def refresh_if_idle(self) -> None:
        """A pushed change: refresh now, or once the refresh or claim that is running has finished."""
        if self.refresh_button.isEnabled() and not self.busy:
            self.refresh()
        elif not self._pushed_retry.isActive():
            self._pushed_retry.start()

    def refresh(self) -> None:
        self.refresh_button.setEnabled(False)
        run_task(self.services.list_worklist, on_done=self._loaded, on_error=self._failed)
        if hasattr(self.services, "recently_signed"):
            run_task(self.services.recently_signed, on_done=self._recent_loaded,
                     on_error=lambda m, _e: log.warning("recent reports not listed: %s", m))

    def _recent_loaded(self, summaries) -> None:
        self.recent.clear()
        for s in summaries:
            when = s.signed_at.replace("T", " ")[:16]
            text = f"{when}  {s.modality} {s.body_part}  {s.description}" + ("  (addendum)" if s.addendum else "")
            it = QListWidgetItem(text)
            it.setData(Qt.UserRole, s.study_uid)
            self.recent.addItem(it)
        self.recent_title.setVisible(bool(summaries))
        self.recent.setVisible(bool(summaries))

    def _loaded(self, items) -> None:
        self.refresh_button.setEnabled(True)
        selected = self.selected_item()
        self.model.set_items(items)
        stat = sum(1 for i in items if is_stat(i))
        self.count.setText(f"{len(items)} studies" + (f", {stat} STAT" if stat else ""))
        if selected is not None:
            for row, it in enumerate(self.model.items):
                if it.workitem_uid == selected.workitem_uid:
                    self.select_row(row)
        elif items:
            self.select_row(0)
        self.items_loaded.emit(self.model.items)

    def _failed(self, message: str, exc=None) -> None:
        self.refresh_button.setEnabled(True)
        self.open_button.setEnabled(True)
        self.release_button.setEnabled(True)
        self.busy = False
        self.show_notice(message)
        self.message.emit(message)
        if type(exc).__name__ == "AuthError" and getattr(exc, "status", None) != 403:  # 403: not a password matter
            self.auth_failed.emit()

    def claim_and_open(self) -> None:
        item = self.selected_item()
        if item is None or self.busy:
            return
        if str(getattr(item, "state", "")) == "IN PROGRESS":
            if getattr(item, "held_here", True):
                self.open_requested.emit(item)   # already ours, on this workstation
            else:
                self.show_notice("This study is being read on another workstation. Finish or release it there.")
            return
        self.busy = True
        self.open_button.setEnabled(False)
        run_task(self.services.claim, item, on_done=self._claimed, on_error=self._claim_failed)

    def _claimed(self, item) -> None:
        self.busy = False
        self.open_button.setEnabled(True)
        self.model.replace(item)
        self.open_requested.emit(item)

    def _claim_failed(self, message: str, exc) -> None:
        self.busy = False
        self.open_button.setEnabled(True)
        uid = getattr(exc, "workitem_uid", None)
        if type(exc).__name__ == "AlreadyClaimed" and uid:
            self.model.remove(uid)
            self.show_notice(message)
            self.claim_lost.emit(message)
            return
        self._failed(message, exc)

    def release_selected(self) -> None:
        item = self.selected_item()
        if item is None or str(getattr(item, "state", "")) != "IN PROGRESS":
            self.show_notice("Select a study you have claimed to release it.")
            return
        if not self.confirm("Release this study?", RELEASE_TEXT):
            return
        self.release_button.setEnabled(False)
        run_task(self.services.release, item, on_done=self._released, on_error=self._failed)

    def _released(self, _result) -> None:
        self.release_button.setEnabled(True)
        self.refresh()
