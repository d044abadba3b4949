"""Idle lock: after N minutes without keyboard or mouse input the workstation hides patient data and asks for
the reader's password.

Owns :class:`IdleWatcher` (an application-wide event filter plus a timer) and :class:`LockScreen` (an opaque
cover over the main window). The password is checked against the in-memory verifier made at sign-in, so
unlocking works while the archive is unreachable.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

_INPUT_EVENTS = {QEvent.KeyPress, QEvent.MouseButtonPress, QEvent.MouseMove, QEvent.Wheel,
                 QEvent.TouchBegin}


class IdleWatcher(QObject):
    idle = Signal()

    def __init__(self, minutes: int, parent=None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.idle.emit)
        self.set_minutes(minutes)
        QApplication.instance().installEventFilter(self)

    def set_minutes(self, minutes: int) -> None:
        self.set_timeout_ms(int(minutes) * 60_000)

    def set_timeout_ms(self, ms: int) -> None:
        self._timeout_ms = ms
        if ms > 0:
            self._timer.start(ms)
        else:
            self._timer.stop()

    def eventFilter(self, obj, event) -> bool:
        if event.type() in _INPUT_EVENTS and self._timeout_ms > 0:
            self._timer.start(self._timeout_ms)
        return False

    def stop(self) -> None:
        self._timer.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)


class LockScreen(QWidget):
    """Opaque cover over its parent. ``check`` returns True for the right password."""

    unlocked = Signal()

    def __init__(self, parent: QWidget, check, user: str) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.setStyleSheet("LockScreen { background: #0b0c0e; }")
        self._check = check
        title = QLabel("ReadRoom is locked")
        title.setObjectName("lockTitle")
        who = QLabel(f"Signed in as {user}. Enter your password to continue.")
        who.setObjectName("hint")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.Password)
        self.password.setMaximumWidth(320)
        self.password.returnPressed.connect(self.try_unlock)
        self.message = QLabel("")
        self.message.setObjectName("statusBad")
        button = QPushButton("Unlock")
        button.setObjectName("primary")
        button.clicked.connect(self.try_unlock)
        lay = QVBoxLayout(self)
        lay.addStretch(1)
        for w in (title, who, self.password, self.message, button):
            lay.addWidget(w, 0, Qt.AlignHCenter)
        lay.addStretch(2)
        self.hide()

    def lock(self) -> None:
        self.setGeometry(self.parentWidget().rect())
        self.password.clear()
        self.message.clear()
        self.raise_()
        self.show()
        self.password.setFocus()

    @property
    def locked(self) -> bool:
        return self.isVisible()

    def try_unlock(self) -> None:
        """``check`` answers True (right), False (wrong) or None (cannot be checked right now)."""
        ok = self._check(self.password.text())
        if ok:
            self.hide()
            self.password.clear()
            self.unlocked.emit()
            return
        self.message.setText("That password is not right." if ok is False else
                             "The password cannot be checked right now (the archive is unreachable). Try again.")
        self.password.selectAll()

    def resize_to_parent(self) -> None:
        if self.isVisible():
            self.setGeometry(self.parentWidget().rect())
