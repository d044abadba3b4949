"""Plain-Python event hooks for the viewer widgets (used instead of Qt ``Signal`` for Python-emitted events).

Why: with PySide6 6.12.0, every ``SignalInstance.emit()`` called from Python drops one reference to ``True``
(checked on this machine: ``sys.getrefcount(True)`` falls by one per emit, connected or not). A viewer emits on
every scroll step and window/level change, so after some thousands of frames CPython aborts with
"bool_dealloc: deallocating True or False". Signals that Qt emits from C++ (QTimer.timeout, ...) are not affected.

``EventHook`` keeps the same ``connect`` / ``disconnect`` / ``emit`` API, so callers need no change, and
``event()`` declares one per widget instance like a Qt ``Signal`` class attribute.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class EventHook:
    """A list of callbacks called synchronously, in connection order, by :meth:`emit`."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[..., Any]] = []

    def connect(self, fn: Callable[..., Any]) -> None:
        self._subscribers.append(fn)

    def disconnect(self, fn: Callable[..., Any] | None = None) -> None:
        if fn is None:
            self._subscribers.clear()
        else:
            self._subscribers.remove(fn)

    def emit(self, *args: Any) -> None:
        for fn in list(self._subscribers):
            fn(*args)


class event:
    """Class attribute that gives each instance its own :class:`EventHook`."""

    def __set_name__(self, owner, name: str) -> None:
        self._attr = f"_event_{name}"

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        hook = obj.__dict__.get(self._attr) if hasattr(obj, "__dict__") else None
        if hook is None:
            hook = EventHook()
            setattr(obj, self._attr, hook)
        return hook
