"""Settings dialog: server profile, cache size, prefetch count, dictation model, microphone, push-to-talk key,
idle lock.

Owns the form. Values are saved through :mod:`app.settings` (workstation choices) and
:mod:`cloud_client.profiles` (the server profile, including cache size and prefetch count).
"""
from __future__ import annotations

import logging

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cloud_client import profiles as profiles_mod
from cloud_client.profiles import ServerProfile

from .settings import WorkstationSettings, save_settings

log = logging.getLogger(__name__)

GIB = 1024 ** 3


def list_input_devices() -> list[str]:
    """Names of audio input devices (empty when PortAudio or a device is missing)."""
    try:
        import sounddevice as sd

        return [d["name"] for d in sd.query_devices() if d.get("max_input_channels", 0) > 0]
    except Exception as exc:  # noqa: BLE001 - PortAudio missing, no devices: the dialog still works
        log.info("No audio devices listed: %s", type(exc).__name__)
        return []


class SettingsDialog(QDialog):
    def __init__(self, settings: WorkstationSettings, profile: ServerProfile | None, parent=None,
                 devices: list[str] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("ReadRoom settings")
        self.setMinimumWidth(520)
        self._settings = settings
        self._profile = profile

        # -- server
        self.server = QLineEdit(profile.base_url if profile else "")
        self.user = QLineEdit(profile.user if profile else "")
        self.allow_http = QCheckBox("Allow unencrypted http:// (trusted private network only)")
        self.allow_http.setChecked(bool(profile and profile.allow_insecure_http))
        self.connections = QSpinBox()
        self.connections.setRange(1, 16)
        self.connections.setValue(profile.parallel_connections if profile else 4)
        self.cache_gb = QSpinBox()
        self.cache_gb.setRange(1, 2000)
        self.cache_gb.setSuffix(" GB")
        self.cache_gb.setValue(max(1, round((profile.cache_max_bytes if profile else 20 * GIB) / GIB)))
        self.prefetch = QSpinBox()
        self.prefetch.setRange(0, 50)
        self.prefetch.setValue(profile.prefetch_count if profile else 3)
        self.shared_pool = QCheckBox("Also show unassigned studies from the shared pool")
        self.shared_pool.setChecked(settings.show_shared_pool)
        self.qa_reviewer = QCheckBox("I peer-review other readers' reports (QA review page, F9)")
        self.qa_reviewer.setChecked(settings.qa_reviewer)
        server_box = QGroupBox("Archive")
        f = QFormLayout(server_box)
        f.addRow("Address", self.server)
        f.addRow("User", self.user)
        f.addRow("", self.allow_http)
        f.addRow("Parallel downloads", self.connections)
        f.addRow("Local cache size", self.cache_gb)
        f.addRow("Prefetch next studies", self.prefetch)
        f.addRow("", self.shared_pool)
        f.addRow("", self.qa_reviewer)

        # -- dictation
        self.model_dir = QLineEdit(settings.dictation_model_dir)
        self.model_dir.setPlaceholderText("folder of a Vosk model, e.g. vosk-model-en-us-0.22")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_model)
        row = QWidget()
        rl = QHBoxLayout(row)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.model_dir, 1)
        rl.addWidget(browse)
        self.microphone = QComboBox()
        self.microphone.addItem("System default", "")
        for name in (devices if devices is not None else list_input_devices()):
            self.microphone.addItem(name, name)
        if settings.microphone_device and self.microphone.findData(settings.microphone_device) < 0:
            self.microphone.addItem(f"{settings.microphone_device} (not connected)", settings.microphone_device)
        self.microphone.setCurrentIndex(max(0, self.microphone.findData(settings.microphone_device)))
        self.ptt_key = QKeySequenceEdit(QKeySequence(settings.push_to_talk_key))
        self.mode = QComboBox()
        self.mode.addItem("Hold the key to talk", "push_to_talk")
        self.mode.addItem("Press once to start, again to stop", "toggle")
        self.mode.setCurrentIndex(max(0, self.mode.findData(settings.dictation_mode)))
        self.language = QComboBox()
        try:
            from dictation.commands import available_languages

            languages = available_languages()
        except Exception:  # noqa: BLE001 - vocabularies missing: only the current choice is offered
            languages = []
        for lang in sorted(set(languages) | {settings.dictation_language}):
            self.language.addItem(lang, lang)
        self.language.setCurrentIndex(max(0, self.language.findData(settings.dictation_language)))
        dict_box = QGroupBox("Dictation")
        d = QFormLayout(dict_box)
        d.addRow("Speech model", row)
        d.addRow("Microphone", self.microphone)
        d.addRow("Push-to-talk key", self.ptt_key)
        d.addRow("Mode", self.mode)
        d.addRow("Command language", self.language)

        # -- security
        self.idle = QSpinBox()
        self.idle.setRange(0, 240)
        self.idle.setSuffix(" min")
        self.idle.setSpecialValueText("never")
        self.idle.setValue(settings.idle_lock_minutes)
        sec_box = QGroupBox("Security")
        s = QFormLayout(sec_box)
        s.addRow("Lock when idle after", self.idle)

        self.message = QLabel("")
        self.message.setObjectName("bannerError")
        self.message.setWordWrap(True)
        self.message.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        for w in (server_box, dict_box, sec_box, self.message, buttons):
            lay.addWidget(w)

    def _browse_model(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Vosk model folder", self.model_dir.text())
        if path:
            self.model_dir.setText(path)

    def result_settings(self) -> WorkstationSettings:
        key = self.ptt_key.keySequence().toString() or self._settings.push_to_talk_key
        return WorkstationSettings(
            profile_name=self._profile.name if self._profile else (self._settings.profile_name or "default"),
            dictation_model_dir=self.model_dir.text().strip(),
            microphone_device=self.microphone.currentData() or "",
            push_to_talk_key=key,
            dictation_mode=self.mode.currentData(),
            dictation_language=self.language.currentData() or "en",
            idle_lock_minutes=self.idle.value(),
            show_shared_pool=self.shared_pool.isChecked(),
            qa_reviewer=self.qa_reviewer.isChecked(),
        )

    def result_profile(self) -> ServerProfile | None:
        if not self.server.text().strip() or not self.user.text().strip():
            return self._profile
        data = self._profile.to_json() if self._profile else {"name": self._settings.profile_name or "default"}
        data.update(base_url=self.server.text().strip(), user=self.user.text().strip(),
                    allow_insecure_http=self.allow_http.isChecked(),
                    parallel_connections=self.connections.value(),
                    cache_max_bytes=self.cache_gb.value() * GIB, prefetch_count=self.prefetch.value())
        return ServerProfile.from_json(data)

    def save(self) -> None:
        try:
            profile = self.result_profile()
            if profile is not None:
                profiles_mod.check_transport(profile)
            settings = self.result_settings()
        except Exception as exc:  # noqa: BLE001 - ValueError / InsecureConnectionError: worded for the reader
            self.message.setText(str(exc))
            self.message.show()
            return
        if profile is not None:
            profiles_mod.save_profile(profile)
            settings.profile_name = profile.name
            self._profile = profile
        save_settings(settings)
        self._settings = settings
        self.accept()

    @property
    def settings(self) -> WorkstationSettings:
        return self._settings

    @property
    def profile(self) -> ServerProfile | None:
        return self._profile
