"""Dictation-model setup step: download, verify (sha256) and unpack a Vosk speech model.

Owns the catalogue of models we offer (:data:`ENGLISH_SMALL`, with the archive's published size and SHA-256),
:func:`download` (streamed, resumable-safe via a ``.part`` file), :func:`verify_sha256`, :func:`unpack_model`
(safe extraction of zip or tar archives into the models folder, atomically) and :func:`install_model`, which
chains them and records the model folder in the dictation settings. Used by ``readroom dictation
install-model`` and first-run setup; tests drive it with local archives only.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    name: str          # folder name once unpacked
    url: str
    sha256: str        # of the archive as published
    size: int | None   # bytes, when known
    language: str
    licence: str = "Apache-2.0"


#: The small US-English model (about 40 MB), the default for dictation. SHA-256 of the archive as published by
#: alphacephei.com (41,205,931 bytes).
ENGLISH_SMALL = ModelSpec(
    name="vosk-model-small-en-us-0.15",
    url="https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
    sha256="30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
    size=41_205_931,
    language="en",
)
CATALOGUE = {"en": ENGLISH_SMALL, ENGLISH_SMALL.name: ENGLISH_SMALL}


class ModelInstallError(Exception):
    """Downloading or unpacking the model failed; the message says what to do."""


class ChecksumError(ModelInstallError):
    pass


Progress = Callable[[int, int | None], None]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ChecksumError` unless the file's SHA-256 is ``expected``."""
    actual = sha256_file(path)
    if actual.lower() != expected.strip().lower():
        raise ChecksumError(f"The downloaded file {path.name} is damaged or not the expected model (SHA-256 "
                            f"{actual[:16]}... instead of {expected[:16]}...). It was not installed; try again.")


def download(url: str, dest: Path, expected_size: int | None = None, progress: Progress | None = None,
             timeout: float = 60.0, session=None) -> Path:
    """Stream ``url`` to ``dest`` (written as ``dest.part`` and renamed when complete)."""
    import requests

    http = session or requests.Session()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with http.get(url, stream=True, timeout=timeout) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("Content-Length") or 0) or expected_size
            done = 0
            with open(part, "wb") as fh:
                for chunk in resp.iter_content(CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    except requests.RequestException as exc:
        part.unlink(missing_ok=True)
        raise ModelInstallError(f"Could not download the speech model from {url} ({exc.__class__.__name__}). "
                                "Check the internet connection, or download the file yourself and run "
                                "`readroom dictation install-model --archive FILE`.") from exc
    if expected_size is not None and done != expected_size:
        part.unlink(missing_ok=True)
        raise ModelInstallError(f"The download of {url} was incomplete ({done} of {expected_size} bytes); try again.")
    os.replace(part, dest)
    return dest


def _safe_members(names: list[str]) -> None:
    for name in names:
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
            raise ModelInstallError(f"The model archive contains an unsafe path ({name!r}); it was not installed.")


def _extract(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _safe_members(zf.namelist())
            for info in zf.infolist():
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ModelInstallError("The model archive contains a symbolic link; it was not installed.")
            zf.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _safe_members([m.name for m in members])
            if any(not (m.isfile() or m.isdir()) for m in members):
                raise ModelInstallError("The model archive contains links or devices; it was not installed.")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(into, filter="data")
            else:  # Python < 3.11.4: the member checks above already refuse unsafe entries
                tf.extractall(into)
    else:
        raise ModelInstallError(f"{archive.name} is not a zip or tar archive.")


def _model_root(tree: Path) -> Path:
    """The folder inside an extracted archive that holds am/ and conf/ (the archive's top folder, usually)."""
    candidates = [tree] + sorted(p for p in tree.rglob("*") if p.is_dir())
    for c in candidates:
        if ((c / "am" / "final.mdl").is_file() or (c / "final.mdl").is_file()) and (c / "conf").is_dir():
            return c
    raise ModelInstallError("The archive does not contain a Vosk model (no am/final.mdl and conf/ folder).")


def unpack_model(archive: Path, models_root: Path, name: str | None = None) -> Path:
    """Extract ``archive`` and move its model folder to ``models_root/name`` atomically; returns that path.
    An existing model of that name is replaced only after the new one unpacked completely."""
    models_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_root, prefix=".unpack-") as tmp:
        tmp_path = Path(tmp)
        _extract(archive, tmp_path / "x")
        root = _model_root(tmp_path / "x")
        target = models_root / (name or (root.name if root != tmp_path / "x" else archive.stem))
        staged = tmp_path / "staged"
        shutil.move(str(root), staged)
        if target.exists():
            old = tmp_path / "old"
            os.replace(target, old)
        os.replace(staged, target)
    return target


def install_model(spec: ModelSpec = ENGLISH_SMALL, models_root: Path | None = None, archive: Path | None = None,
                  progress: Progress | None = None, save_setting: bool = True, session=None) -> Path:
    """Download (unless ``archive`` is given), verify and unpack ``spec``; point the dictation settings at it."""
    from dictation import models

    root = models_root or models.models_root()
    if archive is None:
        downloads = root / ".downloads"
        archive = download(spec.url, downloads / Path(spec.url).name, spec.size, progress, session=session)
        cleanup = True
    else:
        archive = Path(archive)
        if not archive.is_file():
            raise ModelInstallError(f"{archive} does not exist.")
        cleanup = False
    try:
        verify_sha256(archive, spec.sha256)
        target = unpack_model(archive, root, spec.name)
    finally:
        if cleanup:
            archive.unlink(missing_ok=True)
    models.inspect_model_dir(target)  # raises if the unpacked folder is not a usable model
    if save_setting:
        settings = models.DictationSettings.load()
        settings.model_dir = str(target)
        settings.language = spec.language
        settings.save()
    log.info("installed speech model %s", spec.name)
    return target
