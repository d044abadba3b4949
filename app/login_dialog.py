"""Sign-in dialog: archive address, user, password; the check runs off the GUI thread.

Owns the Qt form only; the sign-in itself is :func:`app.session.sign_in`. A wrong password or an unreachable
archive is shown in words inside the dialog, which stays open for another try.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
)

from cloud_client.profiles import ServerProfile

from . import session as session_mod
from .workers import run_task


def _stored_password(profile: ServerProfile | None) -> str | None:
    """The password the reader asked to remember (OS keyring only; never READROOM_PASSWORD in a form)."""
    if profile is None:
        return None
    from cloud_client import secrets

    try:
        return secrets.get_secret(profile.secret_name)
    except secrets.NoKeyringError:
        return None


class LoginDialog(QDialog):
    signed_in = Signal(object)  # ReaderSession

    def __init__(self, profile: ServerProfile | None = None, parent=None, sign_in=session_mod.sign_in) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sign in to ReadRoom")
        self.setMinimumWidth(440)
        self._sign_in = sign_in
        self._profile = profile
        self.session: session_mod.ReaderSession | None = None

        title = QLabel("ReadRoom")
        title.setObjectName("lockTitle")
        hint = QLabel("Sign in with your reading account.")
        hint.setObjectName("hint")
        self.server = QLineEdit(profile.base_url if profile else "https://")
        self.server.setPlaceholderText("https://archive.example/dicom-web")
        self.user = QLineEdit(profile.user if profile else "")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.Password)
        stored = _stored_password(profile)
        if stored:                       # remembered in the keyring: Enter signs in
            self.password.setText(stored)
        self.remember = QCheckBox("Remember password in the system keyring")
        self.remember.setChecked(bool(stored))
        self.message = QLabel("")
        self.message.setObjectName("bannerError")
        self.message.setWordWrap(True)
        self.message.hide()

        form = QFormLayout()
        form.addRow("Archive", self.server)
        form.addRow("User", self.user)
        form.addRow("Password", self.password)
        form.addRow("", self.remember)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Sign in")
        self.buttons.accepted.connect(self.try_sign_in)
        self.buttons.rejected.connect(self.reject)

        lay = QVBoxLayout(self)
        lay.addWidget(title)
        lay.addWidget(hint)
        lay.addLayout(form)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)
        (self.password if profile and profile.user else self.user).setFocus()

    def show_error(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def build_profile(self) -> ServerProfile:
        base = self._profile
        name = base.name if base else "default"
        data = base.to_json() if base else {}
        data.update(name=name, base_url=self.server.text().strip(), user=self.user.text().strip())
        return ServerProfile.from_json(data)

    def try_sign_in(self) -> None:
        if not self.user.text().strip() or not self.server.text().strip():
            self.show_error("Enter the archive address and your user name.")
            return
        try:
            profile = self.build_profile()
        except ValueError as exc:
            self.show_error(str(exc))
            return
        self.message.hide()
        self.buttons.setEnabled(False)
        self.setCursor(Qt.BusyCursor)
        run_task(self._sign_in, profile, self.password.text(), self.remember.isChecked(),
                 on_done=self._ok, on_error=self._failed)

    def _ok(self, session) -> None:
        self.unsetCursor()
        self.buttons.setEnabled(True)
        self.session = session
        self.signed_in.emit(session)
        self.accept()

    def _failed(self, message: str, _exc) -> None:
        self.unsetCursor()
        self.buttons.setEnabled(True)
        self.show_error(message)
        self.password.selectAll()
        self.password.setFocus()
