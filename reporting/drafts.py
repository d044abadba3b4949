"""Crash-proof report drafts.

Owns the encrypted draft files in :func:`cloud_client.paths.drafts_dir` (one per study, named by a hash of the
Study Instance UID so no identifier appears in a file name) and the :class:`Autosaver` that writes them shortly
after every change and at least every few seconds while there are unsaved changes. Files are written with
:mod:`cloud_client.vault` (AES-GCM, purpose ``b"draft"``, atomic rename), so a crash or ``kill -9`` leaves either
the previous draft or the new one - never a torn file - and the draft comes back when the study is reopened.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cloud_client import paths
from cloud_client.vault import Vault, VaultError, default_vault

from .model import EventKind, Report, ReportEvent, ReportState
from .templates import TemplateLibrary

log = logging.getLogger(__name__)
PURPOSE = b"draft"


@dataclass(frozen=True)
class DraftInfo:
    study_uid: str
    report_id: str
    template_id: str
    saved_at: float
    path: Path


class DraftStore:
    def __init__(self, directory: Path | None = None, vault: Vault | None = None) -> None:
        self._directory = Path(directory) if directory else None
        self._vault = vault

    @property
    def directory(self) -> Path:
        return self._directory or paths.drafts_dir()

    @property
    def vault(self) -> Vault:
        return self._vault or default_vault()

    def path_for(self, study_uid: str) -> Path:
        return self.directory / (hashlib.sha256(study_uid.encode()).hexdigest()[:40] + ".draft")

    def save_snapshot(self, snapshot: dict) -> None:
        data = dict(snapshot, saved_at=time.time())
        self.vault.write_file(self.path_for(snapshot["study"]["study_uid"]),
                              json.dumps(data, ensure_ascii=False).encode("utf-8"), PURPOSE)

    def save(self, report: Report) -> None:
        self.save_snapshot(report.to_dict())

    def _read(self, path: Path) -> dict | None:
        try:
            return json.loads(self.vault.read_file(path, PURPOSE))
        except (VaultError, ValueError) as exc:
            damaged = path.with_suffix(".damaged")
            log.warning("A report draft could not be read (%s); it was set aside as %s", exc, damaged.name)
            try:
                path.replace(damaged)
            except OSError:
                pass
            return None

    def load(self, study_uid: str, library: TemplateLibrary | None = None) -> Report | None:
        """The saved draft for this study, or None."""
        path = self.path_for(study_uid)
        if not path.exists():
            return None
        data = self._read(path)
        if data is None:
            return None
        try:
            report = Report.from_dict(data, library)
        except KeyError as exc:
            log.warning("A report draft uses a template that is no longer installed (%s)", exc)
            return None
        if report.state not in (ReportState.DRAFT, ReportState.PRELIMINARY):
            return None  # a stale copy of something already signed
        return report

    def has_draft(self, study_uid: str) -> bool:
        return self.path_for(study_uid).exists()

    def delete(self, study_uid: str) -> None:
        try:
            self.path_for(study_uid).unlink()
        except FileNotFoundError:
            pass

    def list(self) -> list[DraftInfo]:
        out = []
        for p in sorted(self.directory.glob("*.draft")):
            if p.name.startswith("."):
                continue  # the vault's temp file of a write in progress
            data = self._read(p)
            if data:
                out.append(DraftInfo(data["study"]["study_uid"], data["report_id"], data["template_id"],
                                     data.get("saved_at", 0.0), p))
        return out


class Autosaver:
    """Saves a report's draft ``debounce_s`` after each change, and every ``interval_s`` while changes remain.

    The snapshot is taken on the thread that made the change (so the writer never sees a half-edited report);
    the encryption and write run on a background thread. ``stop()`` writes what is pending.
    """

    def __init__(self, report: Report, store: DraftStore | None = None, interval_s: float = 3.0,
                 debounce_s: float = 0.3) -> None:
        self.report = report
        self.store = store or DraftStore()
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # held while a draft file is being written
        self._closed = False
        self._pending: dict | None = None
        self._last_change = 0.0
        self._last_save = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = None
        self.saves = 0
        self.last_error: Exception | None = None

    def start(self) -> Autosaver:
        self._unsubscribe = self.report.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._run, name="report-autosave", daemon=True)
        self._thread.start()
        return self

    def _on_event(self, event: ReportEvent) -> None:
        if event.kind == EventKind.FOCUS_CHANGED:
            return
        if self.report.state not in (ReportState.DRAFT, ReportState.PRELIMINARY):
            # signed: the outbox holds it now. Wait for a write in flight, drop what is pending, write no more -
            # so an edit made just before "Sign" cannot bring the draft back after signing deleted it.
            with self._write_lock, self._lock:
                self._pending = None
                self._closed = True
            return
        snapshot = self.report.to_dict()
        with self._lock:
            self._pending = snapshot
            self._last_change = time.monotonic()
        self._wake.set()

    def flush(self) -> bool:
        """Write the pending snapshot now; True if something was written."""
        with self._write_lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        with self._lock:
            snapshot, self._pending = self._pending, None
        if snapshot is None or self._closed:
            return False
        try:
            self.store.save_snapshot(snapshot)
            self.saves += 1
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - keep editing even if the disk is full; retry next tick
            self.last_error = exc
            log.error("Saving the report draft failed: %s", exc)
            with self._lock:
                if self._pending is None:
                    self._pending = snapshot
            return False
        finally:
            self._last_save = time.monotonic()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=min(self.interval_s, 1.0))
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                pending = self._pending is not None
                since_change = time.monotonic() - self._last_change
            if not pending:
                continue
            since_save = time.monotonic() - self._last_save
            # wait out the debounce, but wake at once for stop() (which flushes itself)
            waiting = since_change < self.debounce_s and since_save < self.interval_s
            if waiting and self._stop.wait(min(self.debounce_s - since_change, self.interval_s - since_save)):
                break
            self.flush()

    def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
