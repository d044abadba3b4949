"""Background prefetch of the reader's next studies.

Owns :class:`Prefetcher`: a daemon thread that takes the next N items of the reader's worklist (most urgent
first: the worklist's own STAT/deadline order), pins each study in the cache (assigned, not yet reported:
never evicted) and fetches it with :class:`~cloud_client.retrieve.StudyFetcher`. It yields to the study being
read: :meth:`pause` holds even a running download until :meth:`resume`; :meth:`stop` cancels a running fetch.
Errors are logged (no patient data) and retried on the next round.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import AuthError, CloudError, FetchCancelled
from .retrieve import FetchResult, StudyFetcher
from .worklist import WorklistClient, WorklistItem

log = logging.getLogger(__name__)


@dataclass
class PrefetchStatus:
    fetched: list[str] = field(default_factory=list)   # study UIDs completely local
    failed: list[str] = field(default_factory=list)
    current: str | None = None
    auth_failed: bool = False


class Prefetcher:
    """``Prefetcher(worklist, fetcher, count=3, interval_s=30)``; ``start()``, ``run_once()``, ``stop()``."""

    def __init__(self, worklist: WorklistClient, fetcher: StudyFetcher, *, count: int = 3,
                 interval_s: float = 30.0, include_pool: bool = False,
                 on_fetched: Callable[[str, FetchResult], None] | None = None) -> None:
        self.worklist = worklist
        self.fetcher = fetcher
        self.count = count
        self.interval_s = interval_s
        self.include_pool = include_pool
        self.on_fetched = on_fetched
        self.status = PrefetchStatus()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None

    def next_items(self) -> list[WorklistItem]:
        items = [i for i in self.worklist.my_items(include_pool=self.include_pool) if i.study_uid]
        return items[: self.count]

    def run_once(self) -> list[str]:
        """Fetch the next ``count`` studies now (in this thread). Returns the study UIDs made local.

        Studies this prefetcher pinned that are no longer on the reader's list (reported, reassigned) are
        unpinned, so LRU eviction can reclaim them."""
        done = []
        everything = [i for i in self.worklist.my_items(include_pool=self.include_pool) if i.study_uid]
        items = everything[: self.count]
        cache = self.fetcher.cache
        wanted = {i.study_uid for i in everything}
        for study in cache.pinned("prefetch") - wanted:
            cache.unpin(study)
        for item in items:
            if self._stop.is_set():
                break
            while self._paused.is_set() and not self._stop.is_set():
                self._wake.wait(0.2)
            study = item.study_uid
            self.status.current = study
            try:
                result = self.fetcher.fetch_study(study, cancel=self._cancelled, pin="prefetch")
            except FetchCancelled:
                break
            except AuthError:
                self.status.auth_failed = True
                log.warning("Prefetch stopped: the archive wants you to sign in again.")
                break
            except CloudError as exc:
                log.warning("Prefetch of a study failed (%s); will retry", type(exc).__name__)
                self.status.failed.append(study)
                continue
            finally:
                self.status.current = None
            done.append(study)
            if study not in self.status.fetched:
                self.status.fetched.append(study)
            if self.on_fetched is not None:
                self.on_fetched(study, result)
        return done

    def _cancelled(self) -> bool:
        """Polled by the running fetch between parts: stop ends it; pause holds it (the connection stalls, so
        the study being read gets the bandwidth) until resumed."""
        while self._paused.is_set() and not self._stop.is_set():
            time.sleep(0.1)
        return self._stop.is_set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except AuthError:
                self.status.auth_failed = True
            except CloudError as exc:
                log.warning("Prefetch round failed (%s)", type(exc).__name__)
            except Exception:
                log.exception("Prefetch round crashed")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="rr-prefetch", daemon=True)
            self._thread.start()

    def poke(self) -> None:
        """Run a round now (e.g. the worklist changed)."""
        self._wake.set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
