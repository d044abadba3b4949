"""Long work off the Qt thread: a QRunnable that runs a plain function and reports back through signals.

Owns :class:`Task` and :func:`run_task`. The function runs on ``QThreadPool.globalInstance()`` and may accept a
``progress`` keyword (a callable taking any value) which is delivered on the GUI thread through the ``progress``
signal. Results arrive through ``done``; errors through ``failed`` as a message a user can act on
(:class:`cloud_client.errors.CloudError` messages are already worded for the reader; anything else becomes a
generic sentence, with the exception type - never its text, which may hold patient data - in the log).
"""
from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

_alive: set[Task] = set()          # keep tasks (and their signal objects) alive until they finish
_alive_lock = threading.Lock()


def user_message(exc: BaseException) -> str:
    """Words for the reader. Cloud, vault and value errors carry safe messages; others get a generic one."""
    try:
        from cloud_client.errors import CloudError
    except ImportError:  # pragma: no cover - cloud_client is part of every build
        CloudError = ()  # type: ignore[assignment]
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, CloudError) or names & _WORDED_FOR_READERS:
        return str(exc)
    if isinstance(exc, (ValueError, PermissionError, FileNotFoundError)) and getattr(exc, "user_facing", False):
        return str(exc)
    return f"Something went wrong ({type(exc).__name__}). The details are in the ReadRoom log."


# Exception classes of the core packages whose messages are written for the reader and hold no patient data.
_WORDED_FOR_READERS = {"VaultError", "NoKeyringError", "UserFacingError", "SigningError", "ValidationFailed",
                       "NeedsConfirmation", "ReportLockedError", "StateError", "ModelNotFoundError", "AudioError",
                       "SeriesError", "TemplateError", "OutboxError"}


class UserFacingError(Exception):
    """An error whose message is written for the reader (no patient data)."""


class TaskSignals(QObject):
    progress = Signal(object)
    done = Signal(object)
    failed = Signal(str, object)      # user message, the exception
    finished = Signal()


class Task(QRunnable):
    def __init__(self, fn: Callable[..., Any], *args, **kwargs) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = TaskSignals()
        self.cancelled = threading.Event()
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        if "progress" in params:
            self.kwargs["progress"] = self.signals.progress.emit
        if "cancelled" in params:
            self.kwargs["cancelled"] = self.cancelled

    def cancel(self) -> None:
        self.cancelled.set()

    def run(self) -> None:  # runs on a pool thread
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            log.warning("Background task %s failed: %s", getattr(self.fn, "__name__", "task"), type(exc).__name__,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            try:
                self.signals.failed.emit(user_message(exc), exc)
            except RuntimeError:
                pass
        else:
            try:
                self.signals.done.emit(result)
            except RuntimeError:
                pass
        finally:
            try:
                self.signals.finished.emit()
            except RuntimeError:
                pass
            with _alive_lock:
                _alive.discard(self)


def run_task(fn: Callable[..., Any], *args, on_done: Callable[[Any], None] | None = None,
             on_error: Callable[[str, BaseException], None] | None = None,
             on_progress: Callable[[Any], None] | None = None, pool: QThreadPool | None = None,
             **kwargs) -> Task:
    """Run ``fn(*args, **kwargs)`` on the thread pool; callbacks run on the GUI thread."""
    task = Task(fn, *args, **kwargs)
    if on_done is not None:
        task.signals.done.connect(on_done)
    if on_error is not None:
        task.signals.failed.connect(on_error)
    if on_progress is not None:
        task.signals.progress.connect(on_progress)
    with _alive_lock:
        _alive.add(task)
    (pool or QThreadPool.globalInstance()).start(task)
    return task


def wait_for_all(timeout_ms: int = 10000) -> bool:
    """Wait for pool tasks (used on shutdown and by tests)."""
    return QThreadPool.globalInstance().waitForDone(timeout_ms)
