"""The workstation's connection to the other parts: one object the Qt widgets call (from worker threads).

Owns the wiring of a signed-in :class:`~app.session.ReaderSession` to the cloud client (worklist, instance
cache, retrieval, prefetch, audit), the reporting core (drafts, signing, outbox) and the dictation core. It is
Qt-free so the same calls can be exercised headless; each method is a plain blocking call that the GUI runs
through :func:`app.workers.run_task`.
"""
from __future__ import annotations

import logging
import threading

from cloud_client.worklist import WorklistClient, WorklistItem

from .session import ReaderSession
from .settings import WorkstationSettings

log = logging.getLogger(__name__)


class Workstation:
    def __init__(self, session: ReaderSession, settings: WorkstationSettings) -> None:
        self.session = session
        self.settings = settings
        self.cache = _make_cache(session)
        self.worklist = WorklistClient(session.web, session.user, cache=self.cache)
        self._lock = threading.Lock()

    @property
    def user(self) -> str:
        return self.session.user

    # -- worklist ---------------------------------------------------------------------------------------------
    def list_worklist(self) -> list[WorklistItem]:
        return self.worklist.my_items(include_pool=self.settings.show_shared_pool)

    def claim(self, item: WorklistItem) -> WorklistItem:
        claimed = self.worklist.claim(item.workitem_uid)
        if self.cache is not None and claimed.study_uid:
            self.cache.pin(claimed.study_uid)
        return claimed

    def release(self, item: WorklistItem) -> None:
        self.worklist.release(item.workitem_uid)

    def priors(self, item: WorklistItem):
        return self.worklist.priors(item)

    # -- studies --------------------------------------------------------------------------------------------
    def load_study(self, study_uid: str, progress=None, cancelled: threading.Event | None = None):
        """Stream a study into progressive volumes; ``progress`` receives study_loader events."""
        from .study_loader import StudyLoader

        loader = StudyLoader(self.session.web.metadata, self.fetch)
        return loader.load(study_uid, progress or (lambda _e: None), cancelled)

    def fetch(self, study_uid: str, *, on_instance, on_progress, cancelled: threading.Event | None = None):
        """The cloud client's streaming retrieval into the encrypted cache (first-needed slice first)."""
        from cloud_client import retrieve

        return retrieve.fetch_study(self.session.web, study_uid, cache=self.cache, on_instance=on_instance,
                                    on_progress=on_progress, cancel=cancelled)

    def close(self) -> None:
        try:
            if self.cache is not None:
                self.cache.close()
        finally:
            self.session.close()


def _make_cache(session: ReaderSession):
    try:
        from cloud_client.cache import InstanceCache
    except ImportError:
        return None
    return InstanceCache(max_bytes=session.profile.cache_max_bytes)
