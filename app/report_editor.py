"""Report editor: the template's fields as editors on the reporting model, with macros, autosave, validation,
PIN-protected signing, critical-result communication and addenda.

Owns the widgets only. The :class:`reporting.model.Report` is the single source of truth: typing calls
``set_field``; dictation and macros change the model and the editors follow its events. Focus and cursor are
mirrored into the model so dictated text goes where the reader is. Signing runs on a worker through the
workstation (:meth:`app.services.Workstation.sign_report`).
"""
from __future__ import annotations

import datetime as dt
import logging

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from reporting.model import (
    ACR_CATEGORIES,
    ADDENDUM_FIELD,
    Communication,
    EventKind,
    Person,
    Report,
    ReportEvent,
    ReportState,
)
from reporting.templates import default_library

from .workers import run_task

log = logging.getLogger(__name__)

LATERALITY = ("", "right", "left", "bilateral", "none")


class _FocusWatch(QObject):
    def __init__(self, editor: ReportEditor) -> None:
        super().__init__(editor)
        self._editor = editor

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.FocusIn:
            fid = obj.property("field_id")
            if fid:
                self._editor._user_focus(fid, obj)
        return False


class FieldEditor:
    """Uniform access to one field's widget (text box, pick list, number line, laterality)."""

    def __init__(self, field_id: str, widget: QWidget) -> None:
        self.field_id = field_id
        self.widget = widget
        widget.setProperty("field_id", field_id)

    def text(self) -> str:
        w = self.widget
        if isinstance(w, QPlainTextEdit):
            return w.toPlainText()
        if isinstance(w, QComboBox):
            return w.currentText()
        return w.text()

    def set_text(self, text: str) -> None:
        w = self.widget
        if isinstance(w, QPlainTextEdit):
            if w.toPlainText() != text:
                w.setPlainText(text)
        elif isinstance(w, QComboBox):
            if w.findText(text) < 0:
                w.addItem(text)
            w.setCurrentText(text)
        elif w.text() != text:
            w.setText(text)

    def cursor(self) -> int:
        w = self.widget
        if isinstance(w, QPlainTextEdit):
            return w.textCursor().position()
        if isinstance(w, QLineEdit):
            return w.cursorPosition()
        return len(self.text())

    def set_cursor(self, pos: int) -> None:
        w = self.widget
        pos = max(0, min(pos, len(self.text())))
        if isinstance(w, QPlainTextEdit):
            c = w.textCursor()
            c.setPosition(pos)
            w.setTextCursor(c)
        elif isinstance(w, QLineEdit):
            w.setCursorPosition(pos)

    def set_read_only(self, ro: bool) -> None:
        w = self.widget
        if isinstance(w, (QPlainTextEdit, QLineEdit)):
            w.setReadOnly(ro)
        else:
            w.setEnabled(not ro)


class CriticalResultDialog(QDialog):
    """Flag a critical finding and record its communication (ACR practice parameter)."""

    def __init__(self, parent=None, finding: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Critical result")
        self.finding = QLineEdit(finding)
        self.category = QComboBox()
        for k, v in ACR_CATEGORIES.items():
            self.category.addItem(f"Category {k}: act within {v}", k)
        self.recipient = QLineEdit()
        self.recipient.setPlaceholderText("e.g. Dr. Ward, ED attending")
        self.method = QComboBox()
        self.method.setEditable(True)
        self.method.addItems(["phone", "in person", "secure message", "page"])
        self.when = QLineEdit(dt.datetime.now().astimezone().isoformat(timespec="minutes"))
        self.read_back = QCheckBox("The recipient read the finding back")
        self.message = QLabel("")
        self.message.setObjectName("statusBad")
        form = QFormLayout()
        form.addRow("Finding", self.finding)
        form.addRow("Urgency", self.category)
        form.addRow("Told to", self.recipient)
        form.addRow("How", self.method)
        form.addRow("When", self.when)
        form.addRow("", self.read_back)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Record")
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.message)
        lay.addWidget(buttons)

    def _check(self) -> None:
        if not self.finding.text().strip():
            self.message.setText("Describe the critical finding.")
            return
        self.accept()

    def communication(self, by: str) -> Communication | None:
        if not self.recipient.text().strip():
            return None
        return Communication(recipient=self.recipient.text().strip(), method=self.method.currentText(),
                             communicated_at=self.when.text().strip(), read_back_confirmed=self.read_back.isChecked(),
                             communicated_by=by)


class ReportEditor(QWidget):
    report_signed = Signal(object)        # the signing result from the workstation
    sign_failed = Signal(str)
    autosaved = Signal(int)               # number of saves so far
    report_changed = Signal(object)       # a new Report is being edited (study opened, addendum started)
    _model_event = Signal(object)         # ReportEvent, marshalled to the GUI thread

    def __init__(self, workstation, parent=None, ask_pin=None, confirm=None) -> None:
        super().__init__(parent)
        self.ws = workstation
        self.report: Report | None = None
        self.autosaver = None
        self.editors: dict[str, FieldEditor] = {}
        self._updating = False           # widgets being set from the model: ignore their change signals
        self._from_widget = False        # the model is being changed from a widget: don't echo it back
        self._unsubscribe = None
        self._saves_seen = 0
        self._ask_pin = ask_pin or self._ask_pin_dialog
        self._confirm = confirm or self._confirm_dialog
        self._focus_watch = _FocusWatch(self)
        self._model_event.connect(self._on_model_event)   # direct on the GUI thread, queued from others

        self.title = QLabel("Report")
        self.title.setObjectName("sectionTitle")
        self.template = QComboBox()
        self.template.setToolTip("Template (chosen from the study; change it here)")
        for t in default_library().all():
            self.template.addItem(t.title, t.id)
        self.template.activated.connect(self._template_chosen)
        self.state = QLabel("")
        self.state.setObjectName("hint")
        self.saved = QLabel("")
        self.saved.setObjectName("hint")
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addWidget(self.template, 1)
        head2 = QHBoxLayout()
        head2.addWidget(self.state)
        head2.addStretch(1)
        head2.addWidget(self.saved)

        self.macros = QHBoxLayout()
        self.warnings = QLabel("")
        self.warnings.setObjectName("banner")
        self.warnings.setWordWrap(True)
        self.warnings.hide()

        self.form_host = QWidget()
        self.form = QVBoxLayout(self.form_host)
        self.form.setContentsMargins(2, 2, 2, 2)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form_host)
        self.scroll = scroll

        self.critical_button = QPushButton("Critical result…")
        self.critical_button.setObjectName("danger")
        self.critical_button.clicked.connect(self.open_critical_dialog)
        self.addendum_button = QPushButton("Addendum")
        self.addendum_button.clicked.connect(self.start_addendum)
        self.addendum_button.setEnabled(False)
        self.sign_button = QPushButton("Sign…")
        self.sign_button.setObjectName("primary")
        self.sign_button.clicked.connect(self.sign)
        foot = QHBoxLayout()
        foot.addWidget(self.critical_button)
        foot.addStretch(1)
        foot.addWidget(self.addendum_button)
        foot.addWidget(self.sign_button)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(head)
        lay.addLayout(head2)
        lay.addLayout(self.macros)
        lay.addWidget(self.warnings)
        lay.addWidget(scroll, 1)
        lay.addLayout(foot)

        self._save_timer = QTimer(self)
        self._save_timer.timeout.connect(self._poll_autosave)
        self._save_timer.start(300)
        self.setEnabled(False)

    # -- report in ------------------------------------------------------------------------------------------
    def set_report(self, report: Report | None) -> None:
        self._detach()
        self.report = report
        self.setEnabled(report is not None)
        if report is None:
            self._rebuild()
            self.report_changed.emit(None)
            return
        self._unsubscribe = report.subscribe(self._model_event.emit)
        from reporting.drafts import Autosaver

        if report.editable or report.is_addendum:
            self.autosaver = Autosaver(report, self.ws.draft_store(), interval_s=3.0).start()
        self._saves_seen = 0
        self.saved.setText("Draft restored" if getattr(report, "_restored", False) else "")
        self._rebuild()
        self.report_changed.emit(report)

    def _detach(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self.autosaver is not None:
            self.autosaver.stop()
            self.autosaver = None

    def _rebuild(self) -> None:
        for lay in (self.form, self.macros):
            while lay.count():
                w = lay.takeAt(0).widget()
                if w is not None:
                    w.setParent(None)
        self.editors.clear()
        r = self.report
        if r is None:
            return
        self._updating = True
        try:
            idx = self.template.findData(r.template.id)
            self.template.setCurrentIndex(idx)
            for m in r.template.macros:
                b = QPushButton(m.title)
                b.setToolTip("Fill the normal report (Ctrl+N for the first)")
                b.clicked.connect(lambda _c=False, mid=m.id: self.apply_macro(mid))
                self.macros.addWidget(b)
            if r.is_addendum:
                self._add_section_title("Addendum")
                self._add_field(ADDENDUM_FIELD, "Addendum", "text", (), None, r.addendum_text)
            for s in r.template.sections:
                self._add_section_title(s.title)
                for f in s.fields:
                    self._add_field(f.id, f.label + (" *" if f.required else ""), f.type, f.options, f.unit,
                                    r.values.get(f.id, ""))
            self.form.addStretch(1)
        finally:
            self._updating = False
        self._refresh_state()
        fe = self.editors.get(r.focus_field)
        if fe is not None:
            fe.set_cursor(r.cursor)

    def _add_section_title(self, title: str) -> None:
        lbl = QLabel(title)
        lbl.setObjectName("sectionTitle")
        self.form.addWidget(lbl)

    def _add_field(self, fid, label, ftype, options, unit, value) -> None:
        if ftype == "choice":
            w = QComboBox()
            w.setEditable(True)
            w.addItems(["", *options])
            w.currentTextChanged.connect(lambda _t, f=fid: self._user_edit(f))
        elif ftype == "laterality":
            w = QComboBox()
            w.addItems(list(LATERALITY))
            w.currentTextChanged.connect(lambda _t, f=fid: self._user_edit(f))
        elif ftype in ("number", "measurement"):
            w = QLineEdit()
            if unit:
                w.setPlaceholderText(unit)
            w.textEdited.connect(lambda _t, f=fid: self._user_edit(f))
            w.cursorPositionChanged.connect(lambda _o, _n, f=fid: self._user_cursor(f))
        else:
            w = QPlainTextEdit()
            w.setTabChangesFocus(True)
            w.setMinimumHeight(48)
            w.setMaximumHeight(96 if fid not in ("impression", ADDENDUM_FIELD) else 160)
            w.textChanged.connect(lambda f=fid: self._user_edit(f))
            w.cursorPositionChanged.connect(lambda f=fid: self._user_cursor(f))
        fe = FieldEditor(fid, w)
        fe.set_text(value)
        w.installEventFilter(self._focus_watch)
        self.editors[fid] = fe
        cap = QLabel(label)
        cap.setObjectName("hint")
        self.form.addWidget(cap)
        self.form.addWidget(w)

    # -- user -> model --------------------------------------------------------------------------------------
    def _user_edit(self, fid: str) -> None:
        if self._updating or self.report is None:
            return
        fe = self.editors[fid]
        self._from_widget = True
        try:
            if self.report.focus_field != fid:
                self.report.focus(fid)
            self.report.set_field(fid, fe.text(), source="user")
            self.report.set_cursor(fe.cursor())
        except Exception as exc:  # noqa: BLE001 - locked report: show why, restore the model's text
            self.show_warning(str(exc))
            self._updating = True
            fe.set_text(self.report.get(fid))
            self._updating = False
        finally:
            self._from_widget = False

    def _user_cursor(self, fid: str) -> None:
        if self._updating or self._from_widget or self.report is None or self.report.focus_field != fid:
            return
        self._from_widget = True
        try:
            self.report.set_cursor(self.editors[fid].cursor())
        finally:
            self._from_widget = False

    def _user_focus(self, fid: str, _widget) -> None:
        if self._updating or self.report is None:
            return
        self._from_widget = True
        try:
            if self.report.focus_field != fid:
                self.report.focus(fid)
            self.report.set_cursor(self.editors[fid].cursor())
        finally:
            self._from_widget = False

    # -- model -> widgets -----------------------------------------------------------------------------------
    def _on_model_event(self, ev: ReportEvent) -> None:
        r = self.report
        if r is None:
            return
        if self._from_widget:
            if ev.kind == EventKind.FIELD_CHANGED:
                self.saved.setText("Unsaved changes…")
            return
        if ev.kind in (EventKind.TEMPLATE_CHANGED, EventKind.STATE_CHANGED):
            self._rebuild()
            return
        if ev.kind in (EventKind.FIELD_CHANGED, EventKind.MEASUREMENT_LINKED) and ev.field_id in self.editors:
            fe = self.editors[ev.field_id]
            if ev.source != "user" or fe.text() != r.get(ev.field_id):
                self._updating = True
                try:
                    fe.set_text(r.get(ev.field_id))
                    if ev.field_id == r.focus_field:
                        fe.set_cursor(r.cursor)
                finally:
                    self._updating = False
        elif ev.kind == EventKind.FOCUS_CHANGED and ev.field_id in self.editors:
            fe = self.editors[ev.field_id]      # focus/cursor moved by dictation, a shortcut or the model
            self._updating = True
            try:
                if not fe.widget.hasFocus():
                    fe.widget.setFocus()
                fe.set_cursor(r.cursor)
                self.scroll.ensureWidgetVisible(fe.widget, 10, 40)
            finally:
                self._updating = False
        elif ev.kind == EventKind.CRITICAL_CHANGED:
            self._refresh_state()
        if ev.kind != EventKind.FOCUS_CHANGED:
            self.saved.setText("Unsaved changes…")

    def _poll_autosave(self) -> None:
        a = self.autosaver
        if a is None:
            return
        if a.last_error is not None:
            self.saved.setText("Draft NOT saved - check disk space")
            self.saved.setObjectName("statusBad")
        elif a.saves != self._saves_seen:
            self._saves_seen = a.saves
            self.saved.setText(f"Draft saved {dt.datetime.now().strftime('%H:%M:%S')}")
            self.saved.setObjectName("statusOk")
            self.autosaved.emit(a.saves)
        else:
            return
        self.saved.style().unpolish(self.saved)
        self.saved.style().polish(self.saved)

    def _refresh_state(self) -> None:
        r = self.report
        if r is None:
            return
        text = r.state.value.capitalize()
        if r.is_addendum:
            text = "Addendum (draft)" if r.editable else f"Addendum {r.state.value}"
        if r.critical_results:
            pending = sum(1 for c in r.critical_results if not c.communicated)
            text += f" · {len(r.critical_results)} critical result(s)" + (f", {pending} not confirmed"
                                                                         if pending else "")
        self.state.setText(text)
        signed = not r.editable and not (r.is_addendum and r.state in (ReportState.DRAFT,))
        for fid, fe in self.editors.items():
            fe.set_read_only(signed or (r.is_addendum and fid != ADDENDUM_FIELD))
        self.sign_button.setEnabled(not signed)
        self.template.setEnabled(r.editable and not r.is_addendum)
        for i in range(self.macros.count()):
            w = self.macros.itemAt(i).widget()
            if w is not None:
                w.setEnabled(r.editable and not r.is_addendum)
        self.addendum_button.setEnabled(r.state in (ReportState.FINAL, ReportState.AMENDED) and not r.is_addendum)

    # -- actions --------------------------------------------------------------------------------------------
    def _template_chosen(self, index: int) -> None:
        if self._updating or self.report is None:
            return
        tid = self.template.itemData(index)
        if tid != self.report.template.id:
            try:
                self.report.change_template(default_library().get(tid))
            except Exception as exc:  # noqa: BLE001 - signed report
                self.show_warning(str(exc))

    def apply_macro(self, macro_id: str | None = None) -> None:
        r = self.report
        if r is None or not r.template.macros:
            return
        try:
            r.apply_macro(macro_id or r.template.macros[0].id)
        except Exception as exc:  # noqa: BLE001
            self.show_warning(str(exc))

    def show_warning(self, text: str) -> None:
        self.warnings.setText(text)
        self.warnings.setVisible(bool(text))

    def open_critical_dialog(self, finding: str = "") -> CriticalResultDialog | None:
        if self.report is None:
            return None
        dlg = CriticalResultDialog(self, finding)
        if dlg.exec():
            self.record_critical(dlg)
        return dlg

    def record_critical(self, dlg: CriticalResultDialog) -> None:
        who = self.ws.person()
        cr = self.report.flag_critical(dlg.finding.text().strip(), dlg.category.currentData(), who)
        comm = dlg.communication(who.name)
        if comm is not None:
            self.report.record_communication(cr, comm)
        if hasattr(self.ws, "audit_critical"):
            self.ws.audit_critical(self.report, cr)

    # -- signing --------------------------------------------------------------------------------------------
    def _ask_pin_dialog(self, prompt: str) -> str | None:
        pin, ok = QInputDialog.getText(self, "Sign report", prompt, QLineEdit.Password)
        return pin if ok and pin else None

    def _confirm_dialog(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No,
                                    QMessageBox.No) == QMessageBox.Yes

    def validation(self):
        from reporting.validation import validate

        return validate(self.report, self.ws.present_measurement_ids())

    def sign(self) -> bool:
        """Validate, confirm warnings, ask the PIN, then sign on a worker. False when it did not start."""
        r = self.report
        if r is None:
            return False
        result = self.validation()
        if result.errors:
            self.show_warning("Cannot sign yet:\n" + "\n".join(i.message for i in result.errors))
            fe = next((self.editors[i.field_id] for i in result.errors if i.field_id in self.editors), None)
            if fe is not None:
                fe.widget.setFocus()
            return False
        if result.warnings and not self._confirm(
                "Sign with warnings?", "Please check:\n\n" + "\n".join(f"• {i.message}" for i in result.warnings)
                + "\n\nSign anyway?"):
            self.show_warning("\n".join(i.message for i in result.warnings))
            return False
        if any(not c.communicated for c in r.critical_results) and not self._confirm(
                "Critical result not confirmed", "A critical result has no confirmed communication yet. "
                                                 "Sign anyway?"):
            return False
        user = self.ws.user
        # The SR is built while the reader types the PIN; signing then only writes the time into it (and builds
        # it anew if anything changed meanwhile).
        prepared = self.ws.prepare_signing(r)
        if not self.ws.has_signing_key():
            pin = self._ask_pin("You have no signing key on this workstation yet. Choose a PIN (at least 6 "
                                "characters) to protect it:")
            if not pin:
                return False
            if len(pin) < 6:
                self.show_warning("The PIN must have at least 6 characters.")
                return False
            self.ws.create_signing_key(pin)
        else:
            pin = self._ask_pin(f"PIN for {user}'s signing key:")
            if not pin:
                return False
        self.show_warning("")
        self.sign_button.setEnabled(False)
        self.saved.setText("Signing…")
        run_task(self.ws.sign_report, r, pin, prepared=prepared, on_done=lambda res: self._signed(res, r),
                 on_error=lambda m, e: self._sign_failed(m, e, r))
        return True

    def _signed(self, result, report=None) -> None:
        if report is not None and report is not self.report:     # the reader moved on while it was signing
            self.report_signed.emit(result)
            return
        if self.autosaver is not None:
            self.autosaver.stop()
            self.autosaver = None
        self.saved.setText("Signed - queued for sending")
        self._refresh_state()
        self.report_signed.emit(result)

    def _sign_failed(self, message: str, _exc, report=None) -> None:
        if report is not None and report is not self.report:
            self.sign_failed.emit(message)
            return
        self.sign_button.setEnabled(True)
        self.saved.setText("")
        self.show_warning(message)
        self.sign_failed.emit(message)

    def start_addendum(self) -> None:
        r = self.report
        if r is None:
            return
        try:
            addendum = self.ws.start_addendum(r)
        except Exception as exc:  # noqa: BLE001 - worded by the reporting core
            self.show_warning(str(exc))
            return
        self.set_report(addendum)
        fe = self.editors.get(ADDENDUM_FIELD)
        if fe is not None:
            fe.widget.setFocus()

    def shutdown(self) -> None:
        self._detach()


def person_for(user: str) -> Person:
    return Person(user_id=user, display_name=user)
