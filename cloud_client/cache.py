"""The encrypted local instance cache.

Owns ``paths.cache_dir()``: one encrypted file per SOP instance (AES-GCM through :mod:`cloud_client.vault`,
purpose ``b"cache"``; file names are hashes, so no UIDs or names show on disk), an SQLite index (WAL) of what is
there, LRU eviction under a size cap, and pins: a pinned study (being read, or assigned and not yet reported)
is never evicted.

Crash consistency: the file is written to a temp name and renamed into place *before* its index row is
committed (``put_many``: every file of the batch first, then one transaction for all their rows). Cache files are not fsynced (they can always be fetched again): after a power loss a file may be
empty or torn, but AES-GCM authentication then fails and the entry is dropped as a miss - never served; on open, temp files and files without an index row are removed, and a
row whose file is missing or fails its integrity check is dropped on first read (a miss, never bad data).
Thread-safe; several processes may share one cache (SQLite WAL + busy timeout).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from . import paths
from .part10 import read_part10
from .vault import Vault, VaultError, default_vault

log = logging.getLogger(__name__)

PURPOSE = b"cache"
DEFAULT_MAX_BYTES = 20 * 1024**3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    instance_number INTEGER,
    stored_at REAL NOT NULL,
    last_access REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(study_uid, series_uid);
CREATE INDEX IF NOT EXISTS instances_lru ON instances(last_access);
CREATE TABLE IF NOT EXISTS pins (
    study_uid TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    pinned_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class NewInstance:
    """One instance to store: its DICOM Part 10 bytes and the UIDs it is indexed under."""

    sop_uid: str
    study_uid: str
    series_uid: str
    data: bytes
    instance_number: int | None = None


@dataclass(frozen=True)
class CachedInstance:
    """Index entry of one cached instance."""

    sop_uid: str
    study_uid: str
    series_uid: str
    size: int
    instance_number: int | None


class InstanceCache:
    """Encrypted per-instance cache with an SQLite index. ``root`` defaults to ``paths.cache_dir()``.

    ``max_bytes``: size cap enforced on every put by LRU eviction of unpinned studies (0 = no cap).
    """

    def __init__(self, root: Path | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 vault: Vault | None = None, repair: bool = True) -> None:
        self.root = Path(root) if root is not None else paths.cache_dir()
        self.objects = self.root / "objects"
        if not self.objects.is_dir():
            # The whole fan-out at once (256 subdirectories, named by the first two hex digits of the file's
            # hash): a new cache then makes no directories while it is filled.
            self.objects.mkdir(parents=True, exist_ok=True)
            for i in range(256):
                (self.objects / f"{i:02x}").mkdir(exist_ok=True)
        self.max_bytes = max_bytes
        self._vault = vault or default_vault()
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "index.sqlite", timeout=30, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        if repair:
            self.repair()
        self._approx_total = self.total_bytes()

    # -- files ------------------------------------------------------------------------------------------------
    def _relpath(self, sop_uid: str) -> str:
        h = hashlib.sha256(sop_uid.encode()).hexdigest()
        return f"{h[:2]}/{h}.rrc"

    def repair(self) -> int:
        """Remove leftovers of a crash: temp files and files no index row names. Returns files removed."""
        with self._lock:
            known = {row[0] for row in self._db.execute("SELECT file FROM instances")}
        removed = 0
        for sub in self.objects.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                rel = f"{sub.name}/{f.name}"
                if f.name.startswith(".tmp-") or rel not in known:
                    # A file written but not yet indexed may belong to a concurrent writer: only remove
                    # ones older than a minute, or temp files.
                    try:
                        if f.name.startswith(".tmp-") and time.time() - f.stat().st_mtime < 60:
                            continue
                        if rel not in known and not f.name.startswith(".tmp-") and \
                                time.time() - f.stat().st_mtime < 60:
                            continue
                        f.unlink()
                        removed += 1
                    except OSError:
                        pass
        return removed

    # -- writing ----------------------------------------------------------------------------------------------
    def put(self, sop_uid: str, study_uid: str, series_uid: str, data: bytes,
            instance_number: int | None = None) -> None:
        """Store one instance's DICOM Part 10 bytes (encrypted). Replaces an existing entry."""
        self.put_many([NewInstance(sop_uid, study_uid, series_uid, data, instance_number)])

    def put_many(self, entries: Iterable[NewInstance]) -> None:
        """Store several instances: every file first, then all their index rows in one transaction.

        The same crash consistency as :meth:`put` (a row is only committed after its file is in place), with
        one SQLite commit instead of one per instance - what a retrieval writing a series uses."""
        rows = []
        for e in entries:
            rel = self._relpath(e.sop_uid)
            _write_replace(self.objects / rel, self._vault.encrypt(e.data, PURPOSE))
            now = time.time()
            rows.append((e.sop_uid, e.study_uid, e.series_uid, rel, len(e.data), e.instance_number, now, now))
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO instances (sop_uid, study_uid, series_uid, file, size,"
                    " instance_number, stored_at, last_access) VALUES (?,?,?,?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if self.max_bytes:
            with self._lock:
                self._approx_total += sum(r[4] for r in rows)
                over = self._approx_total > self.max_bytes
            if over:  # exact check only when the running estimate says so (other processes may share the cache)
                self.evict()
                with self._lock:
                    self._approx_total = self.total_bytes()

    def put_dataset(self, ds: pydicom.Dataset) -> None:
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        number = ds.get("InstanceNumber")
        self.put(ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, buf.getvalue(),
                 int(number) if number not in (None, "") else None)

    # -- reading ----------------------------------------------------------------------------------------------
    def has(self, sop_uid: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone() is not None

    def cached_sop_uids(self, study_uid: str) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT sop_uid FROM instances WHERE study_uid=?",
                                                   (study_uid,))}

    def get_bytes(self, sop_uid: str) -> bytes | None:
        """Decrypted Part 10 bytes, or None when not cached (a damaged entry is dropped and counts as a miss)."""
        with self._lock:
            row = self._db.execute("SELECT file FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone()
        if row is None:
            return None
        path = self.objects / row[0]
        try:
            data = self._vault.read_file(path, PURPOSE)
        except (OSError, VaultError) as exc:
            log.warning("Dropping damaged cache entry %s: %s", row[0], exc)
            self._drop(sop_uid, path)
            return None
        with self._lock:
            self._db.execute("UPDATE instances SET last_access=? WHERE sop_uid=?", (time.time(), sop_uid))
        return data

    def get_dataset(self, sop_uid: str) -> pydicom.Dataset:
        """The cached instance as a pydicom Dataset. Raises KeyError when it is not in the cache."""
        data = self.get_bytes(sop_uid)
        if data is None:
            raise KeyError(f"instance {sop_uid} is not in the local cache")
        try:
            return read_part10(data)  # = pydicom.dcmread(io.BytesIO(data)), faster
        except Exception as exc:  # noqa: BLE001 - decrypts but is no readable DICOM: damaged, fetch it again
            log.warning("Dropping a cache entry that is not readable DICOM (%s)", type(exc).__name__)
            with self._lock:
                row = self._db.execute("SELECT file FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone()
            if row is not None:
                self._drop(sop_uid, self.objects / row[0])
            raise KeyError(f"instance {sop_uid} in the local cache was damaged and has been dropped") from None

    def instances(self, study_uid: str, series_uid: str | None = None) -> list[CachedInstance]:
        q = "SELECT sop_uid, study_uid, series_uid, size, instance_number FROM instances WHERE study_uid=?"
        args: tuple = (study_uid,)
        if series_uid is not None:
            q += " AND series_uid=?"
            args += (series_uid,)
        q += " ORDER BY series_uid, instance_number, sop_uid"
        with self._lock:
            return [CachedInstance(*r) for r in self._db.execute(q, args)]

    def series_datasets(self, study_uid: str, series_uid: str) -> list[pydicom.Dataset]:
        """All cached instances of a series, ordered by InstanceNumber (damaged entries are skipped)."""
        out = []
        for inst in self.instances(study_uid, series_uid):
            try:
                out.append(self.get_dataset(inst.sop_uid))
            except KeyError:
                continue
        return out

    def studies(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT study_uid FROM instances")]

    # -- size, pins, eviction ---------------------------------------------------------------------------------
    def total_bytes(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(size),0) FROM instances").fetchone()[0])

    def study_bytes(self, study_uid: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(size),0) FROM instances WHERE study_uid=?",
                                        (study_uid,)).fetchone()[0])

    def pin(self, study_uid: str, reason: str = "reading") -> None:
        """Never evict this study. A "prefetch" pin never replaces a stronger one (e.g. "reading")."""
        with self._lock:
            current = self._db.execute("SELECT reason FROM pins WHERE study_uid=?", (study_uid,)).fetchone()
            if current is not None and reason == "prefetch" and current[0] != "prefetch":
                return
            self._db.execute("INSERT OR REPLACE INTO pins (study_uid, reason, pinned_at) VALUES (?,?,?)",
                             (study_uid, reason, time.time()))

    def unpin(self, study_uid: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pins WHERE study_uid=?", (study_uid,))

    def pinned(self, reason: str | None = None) -> set[str]:
        with self._lock:
            if reason is None:
                return {r[0] for r in self._db.execute("SELECT study_uid FROM pins")}
            return {r[0] for r in self._db.execute("SELECT study_uid FROM pins WHERE reason=?", (reason,))}

    def pin_reason(self, study_uid: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reason FROM pins WHERE study_uid=?", (study_uid,)).fetchone()
        return row[0] if row else None

    def evict(self, max_bytes: int | None = None) -> int:
        """Remove least-recently-used instances of unpinned studies until the total fits. Returns bytes freed."""
        cap = self.max_bytes if max_bytes is None else max_bytes
        freed = 0
        with self._lock:
            total = self.total_bytes()
            if total <= cap:
                return 0
            rows = self._db.execute(
                "SELECT sop_uid, file, size FROM instances WHERE study_uid NOT IN (SELECT study_uid FROM pins)"
                " ORDER BY last_access ASC").fetchall()
            for sop_uid, rel, size in rows:
                if total - freed <= cap:
                    break
                self._drop(sop_uid, self.objects / rel)
                freed += size
        if total - freed > cap:
            log.warning("Cache is over its size cap but the rest is pinned (studies being read).")
        return freed

    def remove_study(self, study_uid: str) -> None:
        with self._lock:
            rows = self._db.execute("SELECT sop_uid, file FROM instances WHERE study_uid=?",
                                    (study_uid,)).fetchall()
            for sop_uid, rel in rows:
                self._drop(sop_uid, self.objects / rel)

    def _drop(self, sop_uid: str, path: Path) -> None:
        with self._lock:
            self._db.execute("DELETE FROM instances WHERE sop_uid=?", (sop_uid,))
        try:
            os.unlink(path)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _write_replace(path: Path, blob: bytes) -> None:
    """Temp file + rename (readers see the old file or the whole new one). No fsync: see the module notes.
    The parent directory is made when missing (no mkdir call per file when it exists)."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{path.name}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    try:
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
