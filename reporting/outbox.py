"""The durable outbox: signed objects leave the workstation exactly once, and are never lost.

Owns the outbox folder (:func:`cloud_client.paths.outbox_dir`): each signed report (or addendum, or peer review)
is written there, encrypted with :mod:`cloud_client.vault` (purpose ``b"outbox"``, atomic rename), *before* any
network call. Delivery then goes through the narrow :class:`ReportSink` interface - ``store(datasets)`` (STOW-RS)
and ``complete_workitem(workitem_uid, output_sop_refs)`` (UPS final attributes + COMPLETED) - implemented by
``cloud_client.archive.ArchiveSink``, whose ``store_part10`` sends the persisted Part 10 bytes as they are. Progress (stored, completed) is written back after each step, so a crash,
``kill -9``, outage or restart resumes where it stopped; both steps are idempotent (same SOP Instance UIDs; the
sink treats an already COMPLETED workitem as done). :class:`ArchiveUnavailable` (and connection errors) mean
"retry later" with exponential backoff; other errors are kept with their message and retried slowly.
Delivered items move to ``outbox/sent`` (still encrypted) as the local record of what was signed.
A per-item file lock keeps two processes (GUI and ``readroom outbox --retry``) from sending the same item at once.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import json
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import pydicom
from pydicom.dataset import Dataset

from cloud_client import paths
from cloud_client.errors import ArchiveUnavailable, AuthError, CloudError
from cloud_client.vault import Vault, VaultError, default_vault

log = logging.getLogger(__name__)
PURPOSE = b"outbox"
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0

__all__ = ["ArchiveUnavailable", "Outbox", "OutboxItem", "OutboxWorker", "ReportSink", "SopRef"]


class SopRef(NamedTuple):
    """One stored object, as the UPS Output Information Sequence needs it. A tuple in the order
    ``cloud_client.archive`` expects: (sop_class_uid, sop_instance_uid, series_uid, study_uid)."""

    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str


class ReportSink(Protocol):
    """Where signed objects go: the archive (STOW-RS) and the worklist (UPS-RS)."""

    def store(self, datasets: Sequence[Dataset]) -> None:
        """Store the datasets; raise ArchiveUnavailable when the archive cannot be reached."""

    def complete_workitem(self, workitem_uid: str, output_sop_refs: Sequence[SopRef]) -> None:
        """Give the workitem its final attributes naming ``output_sop_refs`` and move it to COMPLETED.
        Already COMPLETED by us counts as success."""

    # Optional: ``store_part10(blobs, study_uids)`` stores the persisted Part 10 bytes as they are (no decode and
    # re-encode); the outbox uses it when the sink has it, else ``store(datasets)``.
    # Optional: ``store_part10_and_complete(blobs, study_uids, workitem_uid, output_sop_refs, on_stored)`` does both
    # steps in one call (the sink may overlap them, but completes the workitem only once the objects are stored,
    # and stores them even when the workitem is no longer held); ``on_stored()`` once they are stored.


def _dcm_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (ArchiveUnavailable, AuthError, ConnectionError, TimeoutError)):
        return True
    name = type(exc).__name__
    return name in {"ArchiveUnavailable", "ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout"}


def _safe_error(exc: BaseException) -> str:
    """Words about a failed delivery for the log and the UI. Cloud errors are worded without patient data; any
    other exception (a library error may quote dataset values) is named by its type only."""
    if isinstance(exc, CloudError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__} (details not shown: they may hold patient data)"


@dataclass
class OutboxItem:
    """A signed object waiting to be delivered: the DICOM datasets to store (the SR), the workitem to complete,
    the signed record, and optional extra files kept with it (``files``, name -> base64).
    ``kind``: "report", "addendum", "preliminary" or "peer-review"."""

    item_id: str  # the SR's SOP Instance UID
    kind: str
    created_at: float
    workitem_uid: str | None
    sop: SopRef
    datasets: list[str]  # base64 DICOM Part 10 bytes, stored in this order
    files: dict[str, str] = field(default_factory=dict)
    signed: dict | None = None  # the signed content and signature (reporting.workflow)
    stored: bool = False
    completed: bool = False
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""
    study_uids: list[str] = field(default_factory=list)  # of ``datasets``, in order (empty in older files)

    @property
    def done(self) -> bool:
        return self.stored and (self.completed or not self.workitem_uid)

    def dicom_datasets(self) -> list[Dataset]:
        return [pydicom.dcmread(io.BytesIO(b)) for b in self.part10()]

    def part10(self) -> list[bytes]:
        """The DICOM Part 10 files exactly as they were persisted."""
        return [base64.b64decode(b) for b in self.datasets]

    def file(self, name: str) -> bytes:
        return base64.b64decode(self.files[name])

    def to_json(self) -> bytes:
        # asdict() deep-copies every value (the base64 objects and the signed record) only to serialise them
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["sop"] = list(self.sop)
        return json.dumps(d).encode()

    @classmethod
    def from_json(cls, data: bytes) -> OutboxItem:
        d = {k: v for k, v in json.loads(data).items() if k in cls.__dataclass_fields__}  # tolerate older files
        d["sop"] = SopRef(**d["sop"]) if isinstance(d["sop"], dict) else SopRef(*d["sop"])
        return cls(**d)

    @classmethod
    def create(cls, kind: str, datasets: Sequence[Dataset], workitem_uid: str | None = None,
               files: dict[str, bytes] | None = None, signed: dict | None = None) -> OutboxItem:
        refs = [SopRef(str(d.SOPClassUID), str(d.SOPInstanceUID), str(d.SeriesInstanceUID),
                       str(d.StudyInstanceUID)) for d in datasets]
        return cls.create_encoded(kind, [_dcm_bytes(d) for d in datasets], refs, workitem_uid, files, signed)

    @classmethod
    def create_encoded(cls, kind: str, part10: Sequence[bytes], refs: Sequence[SopRef],
                       workitem_uid: str | None = None, files: dict[str, bytes] | None = None,
                       signed: dict | None = None) -> OutboxItem:
        """The same from objects already encoded as DICOM Part 10 files, with their references (in order)."""
        if len(part10) != len(refs) or not refs:
            raise ValueError("one reference per encoded object, at least one")
        return cls(item_id=refs[0].sop_instance_uid, kind=kind, created_at=time.time(), workitem_uid=workitem_uid,
                   sop=refs[0], datasets=[base64.b64encode(b).decode() for b in part10],
                   files={k: base64.b64encode(v).decode() for k, v in (files or {}).items()}, signed=signed,
                   study_uids=[r.study_uid for r in refs])


@dataclass(frozen=True)
class PendingSummary:
    """What the UI may show about a waiting item (no patient data)."""

    item_id: str
    kind: str
    created_at: float
    attempts: int
    stored: bool
    completed: bool
    next_attempt_at: float
    last_error: str


class Outbox:
    def __init__(self, directory: Path | None = None, vault: Vault | None = None,
                 backoff_base_s: float = BACKOFF_BASE_S, backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self._directory = Path(directory) if directory else None
        self._auto: tuple[str | None, Path] | None = None  # (READROOM_HOME, its outbox folder)
        self._vault = vault
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._listeners: list = []

    # ---- storage --------------------------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        if self._directory is not None:
            return self._directory
        # paths.outbox_dir() creates and checks its folders: asked once per READROOM_HOME, not on every access
        env = os.environ.get("READROOM_HOME")
        if self._auto is None or self._auto[0] != env or not self._auto[1].is_dir():
            self._auto = (env, paths.outbox_dir())
        return self._auto[1]

    @property
    def sent_directory(self) -> Path:
        p = self.directory / "sent"
        if not p.is_dir():
            p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def vault(self) -> Vault:
        return self._vault or default_vault()

    def _name(self, item_id: str) -> str:
        return hashlib.sha256(item_id.encode()).hexdigest()[:40] + ".outbox"

    def _path(self, item_id: str) -> Path:
        return self.directory / self._name(item_id)

    def _write(self, item: OutboxItem, path: Path | None = None) -> None:
        self.vault.write_file(path or self._path(item.item_id), item.to_json(), PURPOSE)

    def _read(self, path: Path) -> OutboxItem | None:
        try:
            return OutboxItem.from_json(self.vault.read_file(path, PURPOSE))
        except (VaultError, ValueError, KeyError, TypeError) as exc:
            why = str(exc) if isinstance(exc, VaultError) else type(exc).__name__  # others may quote the content
            log.error("An outbox file could not be read (%s): %s - it is kept for inspection", why, path.name)
            return None

    def subscribe(self, listener) -> None:
        """``listener(pending_count)`` after every change (the UI's "2 reports waiting to send")."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        n = self.pending_count()
        for fn in list(self._listeners):
            try:
                fn(n)
            except Exception:
                log.exception("outbox listener failed")

    def enqueue(self, item: OutboxItem) -> OutboxItem:
        """Persist ``item`` durably (fsync + rename). Call this before any network traffic. Idempotent."""
        if self._path(item.item_id).exists() or (self.sent_directory / self._name(item.item_id)).exists():
            existing = self.get(item.item_id)
            if existing is not None:
                return existing
        self._write(item)
        log.info("outbox: %s %s queued", item.kind, item.item_id)
        self._changed()
        return item

    @staticmethod
    def _files(directory: Path) -> list[Path]:
        return [p for p in directory.glob("*.outbox") if not p.name.startswith(".")]  # not the vault's temp files

    def items(self) -> list[OutboxItem]:
        out = [i for p in self._files(self.directory) if (i := self._read(p)) is not None]
        return sorted(out, key=lambda i: i.created_at)

    def sent(self) -> list[OutboxItem]:
        out = [i for p in self._files(self.sent_directory) if (i := self._read(p)) is not None]
        return sorted(out, key=lambda i: i.created_at)

    def get(self, item_id: str) -> OutboxItem | None:
        for p in (self._path(item_id), self.sent_directory / self._name(item_id)):
            if p.exists():
                return self._read(p)
        return None

    def pending(self) -> list[PendingSummary]:
        return [PendingSummary(i.item_id, i.kind, i.created_at, i.attempts, i.stored, i.completed,
                               i.next_attempt_at, i.last_error) for i in self.items()]

    def pending_count(self) -> int:
        return len(self._files(self.directory))

    def status_text(self) -> str:
        n = self.pending_count()
        if n == 0:
            return "All reports sent."
        return f"{n} report{'s' if n != 1 else ''} waiting to send"

    # ---- delivery -------------------------------------------------------------------------------------------
    def _backoff(self, attempts: int) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, attempts - 1)))
        return delay * (0.8 + 0.4 * random.random())

    def deliver_one(self, item_id: str, sink: ReportSink) -> bool:
        """Try to deliver one item now. True when it is fully delivered (or already was)."""
        path = self._path(item_id)
        lock_path = path.with_suffix(".lock")
        try:
            lock_fh = open(lock_path, "a+")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            return not path.exists()
        with lock_fh:
            try:
                fcntl.flock(lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another process is sending it right now
            try:
                if not path.exists():
                    return True  # delivered by someone else meanwhile
                item = self._read(path)
                if item is None:
                    return False
                return self._deliver_locked(item, sink)
            finally:
                try:
                    lock_path.unlink()
                except FileNotFoundError:
                    pass

    def _deliver_locked(self, item: OutboxItem, sink: ReportSink) -> bool:
        item.attempts += 1
        try:
            both = getattr(sink, "store_part10_and_complete", None)
            if both is not None and not item.stored and item.workitem_uid and not item.completed \
                    and len(item.study_uids) == len(item.datasets):
                both(item.part10(), item.study_uids, item.workitem_uid, [item.sop],
                     on_stored=lambda: setattr(item, "stored", True))  # kept if the completion then fails
                item.stored = item.completed = True
            if not item.stored:
                store_part10 = getattr(sink, "store_part10", None)
                if store_part10 is not None and len(item.study_uids) == len(item.datasets):
                    store_part10(item.part10(), item.study_uids)  # the persisted bytes, as they are
                else:
                    sink.store(item.dicom_datasets())
                item.stored = True  # written below on failure; a crash before that just stores again (idempotent)
            if item.workitem_uid and not item.completed:
                sink.complete_workitem(item.workitem_uid, [item.sop])
                item.completed = True
        except Exception as exc:
            transient = _is_transient(exc)
            item.last_error = _safe_error(exc)
            delay = self._backoff(item.attempts) if transient else max(self._backoff(item.attempts), 60.0)
            item.next_attempt_at = time.time() + delay
            self._write(item)
            if transient:
                log.warning("outbox: %s not sent yet (%s); next try in %.0f s", item.item_id, item.last_error, delay)
            else:
                log.error("outbox: %s was refused (%s); kept, next try in %.0f s", item.item_id, item.last_error,
                          delay)
            self._changed()
            if not transient:
                return False
            raise ArchiveUnavailable(item.last_error) from exc
        # delivered: move the (unchanged, still encrypted) file to sent/ - its place there is the record
        os.replace(self._path(item.item_id), self.sent_directory / self._name(item.item_id))
        _fsync_dir(self.sent_directory)
        _fsync_dir(self.directory)
        log.info("outbox: %s %s delivered", item.kind, item.item_id)
        self._changed()
        return True

    def deliver_due(self, sink: ReportSink, force: bool = False) -> int:
        """Deliver every item whose retry time has come (all of them with ``force``), oldest first.
        Stops at the first 'archive unavailable' (the others would fail the same way). Returns how many were
        delivered."""
        delivered = 0
        now = time.time()
        for item in self.items():
            if not force and item.next_attempt_at > now:
                continue
            try:
                if self.deliver_one(item.item_id, sink):
                    delivered += 1
            except ArchiveUnavailable:
                break
        return delivered

    def next_due_in(self) -> float | None:
        items = self.items()
        if not items:
            return None
        return max(0.0, min(i.next_attempt_at for i in items) - time.time())


class OutboxWorker:
    """Background delivery: tries at start, after :meth:`wake` (new item signed) and when a retry falls due."""

    def __init__(self, outbox: Outbox, sink: ReportSink, idle_poll_s: float = 30.0) -> None:
        self.outbox = outbox
        self.sink = sink
        self.idle_poll_s = idle_poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> OutboxWorker:
        self._thread = threading.Thread(target=self._run, name="report-outbox", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.outbox.deliver_due(self.sink)
            except Exception:
                log.exception("outbox delivery round failed")
            due = self.outbox.next_due_in()
            self._wake.wait(timeout=self.idle_poll_s if due is None else min(max(due, 0.05), self.idle_poll_s))
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
