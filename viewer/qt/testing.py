"""Helpers that drive a viewer widget with real Qt mouse events (for GUI tests, demos and benches).

Owns synthetic gestures: press/move/release with sub-pixel positions, sent through Qt's event system so they
take the same path as a user's mouse (``QTest.mouseMove`` does not carry held buttons reliably); and a shown
StackViewport of a given size with the conversion from patient points to widget positions.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication


def _send(widget, etype, pos: QPointF, button, buttons, modifiers=Qt.NoModifier) -> None:
    gpos = QPointF(widget.mapToGlobal(pos.toPoint()))
    ev = QMouseEvent(etype, pos, gpos, button, buttons, modifiers)
    QApplication.sendEvent(widget, ev)


def drag(widget, start, end, button=Qt.LeftButton, steps: int = 8, modifiers=Qt.NoModifier) -> None:
    """Press at ``start``, move in ``steps`` to ``end`` and release (widget coordinates, floats allowed)."""
    x0, y0 = start
    x1, y1 = end
    _send(widget, QEvent.MouseButtonPress, QPointF(x0, y0), button, button, modifiers)
    for s in range(1, steps + 1):
        t = s / steps
        _send(widget, QEvent.MouseMove, QPointF(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t), Qt.NoButton, button,
              modifiers)
    _send(widget, QEvent.MouseButtonRelease, QPointF(x1, y1), button, Qt.NoButton, modifiers)


def click(widget, pos, button=Qt.LeftButton, modifiers=Qt.NoModifier) -> None:
    p = QPointF(*pos)
    _send(widget, QEvent.MouseButtonPress, p, button, button, modifiers)
    _send(widget, QEvent.MouseButtonRelease, p, button, Qt.NoButton, modifiers)


def shown_stack_view(qtbot, size: int = 600):
    """A visible, exposed StackViewport of ``size`` x ``size``; its measurements collect in ``view.results``."""
    from viewer.qt.viewport import StackViewport

    v = StackViewport()
    qtbot.addWidget(v)
    v.resize(size, size)
    v.show()
    qtbot.waitExposed(v)
    v.results = []
    v.measurementAdded.connect(v.results.append)
    return v


def qt_pos(view, patient_point) -> tuple[float, float]:
    """The widget (Qt) position at which ``patient_point`` is drawn."""
    x, y = view.patient_to_display(patient_point)
    ratio = view.canvas.devicePixelRatioF()
    return x / ratio, view.canvas.height() - 1 - y / ratio
