"""Dictation panel: the talk button, push_to_talk key, live partial text, level meter, and the wiring of the
dictation core's events into the focused report field.

Owns the Qt side of dictation only. The engine (:mod:`dictation.engine`) runs on its own worker thread and
emits plain events; they are marshalled to the GUI thread here and applied to the report model through
:class:`dictation.apply.DictationApplier` over :class:`app.report_target.ReportTextTarget`. Requests only the
reader may answer (sign, critical result) are forwarded to the report editor, never acted on silently.
Without a speech model the panel says what to install and where.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from dictation.apply import DictationApplier, template_dictation_data
from dictation.events import (
    CommandEvent,
    ConfirmRequest,
    ErrorEvent,
    FinalText,
    LevelEvent,
    PartialText,
    StoppedEvent,
)

from .report_target import ReportTextTarget
from .workers import run_task

log = logging.getLogger(__name__)

COMMAND_MODE_KEY = "F6"


def key_name(event) -> str:
    """Qt key event -> the key name used in settings ("F4", "Ctrl+Space")."""
    mods = event.modifiers() & ~Qt.KeypadModifier
    return QKeySequence(event.keyCombination().key() | mods).toString() if mods else \
        QKeySequence(event.key()).toString()


class _TalkKeyFilter(QObject):
    """Application-wide: the talk key works wherever the focus is, and never types into a field."""

    def __init__(self, panel: DictationPanel) -> None:
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, obj, event) -> bool:
        t = event.type()
        if t in (QEvent.KeyPress, QEvent.KeyRelease, QEvent.ShortcutOverride) and self.panel.isVisible():
            name = key_name(event)
            if name in (self.panel.talk_key, COMMAND_MODE_KEY):
                if t == QEvent.ShortcutOverride:
                    event.accept()
                    return True
                if event.isAutoRepeat():
                    return True
                if t == QEvent.KeyPress:
                    self.panel.controller.key_pressed(name)
                else:
                    self.panel.controller.key_released(name)
                return True
        return False


class DictationPanel(QWidget):
    engine_event = Signal(object)        # any dictation event, delivered on the GUI thread
    message = Signal(str)

    def __init__(self, settings, editor, parent=None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.editor = editor
        self.applier: DictationApplier | None = None
        self.engine = None
        self.model_error: str | None = None
        self._loading = False
        self.mode = "dictation"               # or "command": only voice commands (restricted grammar)
        self.source_factory = self._microphone   # the audio source for each recording (tests give a WAV)

        self.button = QPushButton("Dictate")
        self.button.setObjectName("dictate")
        self.button.setCheckable(True)
        self.button.clicked.connect(self._button_clicked)
        self.mode_label = QLabel("")
        self.mode_label.setObjectName("hint")
        self.meter = QProgressBar()
        self.meter.setRange(-60, 0)
        self.meter.setValue(-60)
        self.meter.setTextVisible(False)
        self.meter.setFixedHeight(8)
        self.partial = QLabel("")
        self.partial.setWordWrap(True)
        self.partial.setStyleSheet("font-style: italic; color: #9aa0a8;")
        self.notice = QLabel("")
        self.notice.setObjectName("banner")
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.notice.hide()
        row = QHBoxLayout()
        row.addWidget(self.button)
        row.addWidget(self.mode_label, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addLayout(row)
        lay.addWidget(self.meter)
        lay.addWidget(self.partial)
        lay.addWidget(self.notice)

        from dictation.audio import KeyBindings, TalkController

        self.controller = TalkController(on_start=self.start, on_stop=self.stop,
                                         mode=settings.dictation_mode,
                                         keys=KeyBindings(talk=(settings.push_to_talk_key,),
                                                          command_mode=(COMMAND_MODE_KEY,)),
                                         on_command_mode=self.toggle_command_mode)
        self.engine_event.connect(self.handle_event)   # queued: the engine emits on its worker thread
        self._key_filter = _TalkKeyFilter(self)
        from PySide6.QtWidgets import QApplication

        QApplication.instance().installEventFilter(self._key_filter)
        self._update_mode_label()
        self.check_model()

    # -- configuration --------------------------------------------------------------------------------------
    @property
    def talk_key(self) -> str:
        return self.settings.push_to_talk_key

    def apply_settings(self, settings) -> None:
        from dictation.audio import KeyBindings

        self.settings = settings
        self.controller.mode = settings.dictation_mode
        self.controller.keys = KeyBindings(talk=(settings.push_to_talk_key,), command_mode=(COMMAND_MODE_KEY,))
        self._drop_engine()                # model, language or device may have changed
        self._update_mode_label()
        self.check_model()

    def check_model(self) -> bool:
        """Is there a usable speech model? If not, say what to install."""
        from dictation.models import ModelNotFoundError, resolve_model_dir

        try:
            self.model_dir = resolve_model_dir(self.settings.dictation_model_dir or None)
        except ModelNotFoundError as exc:
            self.model_error = str(exc)
            self.show_notice(self.model_error)
            self.button.setToolTip(self.model_error)
            return False
        self.model_error = None
        self.notice.hide()
        self.button.setToolTip(f"Hold {self.talk_key} to dictate" if self.settings.dictation_mode ==
                               "push_to_talk" else f"Press {self.talk_key} to start and stop dictation")
        return True

    def _update_mode_label(self) -> None:
        how = (f"hold {self.talk_key}" if self.settings.dictation_mode == "push_to_talk"
               else f"{self.talk_key} starts/stops")
        mode = "commands only" if self.mode == "command" else "dictation"
        self.mode_label.setText(f"{mode} · {how} · {COMMAND_MODE_KEY} switches mode")

    def show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))
        if text:
            self.message.emit(text)

    # -- the report being dictated into ---------------------------------------------------------------------
    def set_report(self, report) -> None:
        if report is None:
            self.applier = None
            return
        normals, macros, _terms = template_dictation_data(report.template)
        self.applier = DictationApplier(ReportTextTarget(report), normals, macros)
        self._drop_engine()                # macros/terms belong to the template: rebuilt on the next start

    def _drop_engine(self) -> None:
        if self.engine is not None and self.engine.running:
            self.engine.cancel()
        self.engine = None

    # -- recording ------------------------------------------------------------------------------------------
    def _button_clicked(self, checked: bool) -> None:
        if checked:
            self.start()
        else:
            self.stop()

    def start(self) -> None:
        if self.model_error and not self.check_model():
            self.button.setChecked(False)
            self.controller.recording = False
            return
        if self.applier is None:
            self.show_notice("Open a study first: dictation types into its report.")
            self.button.setChecked(False)
            self.controller.recording = False
            return
        self.button.setChecked(True)
        self.partial.setText("Listening…")
        if self.engine is None:
            if self._loading:
                return
            self._loading = True
            self.partial.setText("Loading the speech model…")
            run_task(self._build_engine, on_done=self._engine_ready, on_error=self._engine_failed)
            return
        self._start_source()

    def _build_engine(self):
        from dictation.commands import load_vocabulary
        from dictation.engine import DictationEngine
        from dictation.models import inspect_model_dir, load_model

        info = inspect_model_dir(self.model_dir)
        model = load_model(info.path)
        report = self.applier.target.report
        _normals, macros, terms = template_dictation_data(report.template)
        return DictationEngine(model, load_vocabulary(self.settings.dictation_language or "en"),
                               macros=list(macros), terms=terms, mode=self.mode,
                               supports_grammar=info.supports_grammar, on_event=self.engine_event.emit)

    def _engine_ready(self, engine) -> None:
        self._loading = False
        self.engine = engine
        if self.button.isChecked():
            self._start_source()

    def _engine_failed(self, message: str, exc) -> None:
        self._loading = False
        self.button.setChecked(False)
        self.controller.recording = False
        self.show_notice(str(exc) if type(exc).__name__ == "ModelNotFoundError" else message)

    def _microphone(self):
        from dictation.audio import MicrophoneSource

        return MicrophoneSource(self.settings.microphone_device or None)

    def _start_source(self) -> None:
        from dictation.audio import AudioError

        try:
            self.engine.start(self.source_factory())
        except (AudioError, RuntimeError) as exc:
            self.button.setChecked(False)
            self.controller.recording = False
            self.show_notice(str(exc))

    def stop(self) -> None:
        self.button.setChecked(False)
        self.controller.recording = False
        if self.engine is not None and self.engine.running:
            self.engine.stop()
        self.meter.setValue(-60)

    def toggle_command_mode(self) -> None:
        self.mode = "dictation" if self.mode == "command" else "command"
        if self.engine is not None:
            self.engine.set_mode(self.mode)
        self._update_mode_label()

    # -- events (from the engine, or fed directly) ----------------------------------------------------------
    def feed(self, event) -> None:
        """Apply one dictation event now (the same path as the engine's events; used by tests and replays)."""
        self.handle_event(event)

    def handle_event(self, ev) -> None:
        if isinstance(ev, PartialText):
            self.partial.setText(ev.text)
            return
        if isinstance(ev, LevelEvent):
            self.meter.setValue(int(max(-60.0, min(0.0, ev.rms_dbfs))))
            return
        if isinstance(ev, ErrorEvent):
            self.show_notice(ev.message)
            self.stop()
            return
        if isinstance(ev, StoppedEvent):
            self.button.setChecked(False)
            self.controller.recording = False
            self.partial.setText("")
            self.meter.setValue(-60)
            return
        if isinstance(ev, (FinalText, CommandEvent, ConfirmRequest)):
            self.partial.setText("")
            if self.applier is None:
                return
            try:
                request = self.applier.apply(ev)
            except Exception as exc:  # noqa: BLE001 - e.g. the report is signed: say so, keep the audio path
                self.show_notice(str(exc))
                return
            if request is not None:
                self._app_request(request)

    def _app_request(self, req) -> None:
        if req.kind == "confirm" and req.action == "sign_report":
            self.editor.sign()           # validation, confirmation and the PIN prompt: nothing signs silently
        elif req.kind == "critical_result":
            self.editor.open_critical_dialog()
        elif req.kind == "message":
            self.show_notice(req.message)

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.cancel()
            self.engine.join(2.0)
            self.engine = None
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self._key_filter)
