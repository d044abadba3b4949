"""Viewport layouts: a grid of StackViewports in 1x1, 1x2 or 2x2, with one active viewport.

Owns the arrangement only; what each viewport shows is decided by the caller (hanging protocols live in
``viewer.hanging``; the app wires them). Viewports are kept when the layout shrinks, so switching back is instant
and keeps their state.
"""
from __future__ import annotations

from PySide6.QtWidgets import QGridLayout, QWidget

from viewer.qt.events import event
from viewer.qt.viewport import StackViewport

LAYOUTS = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1), "2x2": (2, 2)}


class ViewportGrid(QWidget):
    """Rows x columns of viewports; ``viewports`` lists the visible ones in reading order (left-right, top-down)."""

    activeChanged = event()

    def __init__(self, parent: QWidget | None = None, layout: str = "1x1") -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self._all: list[StackViewport] = []
        self.layout_name = ""
        self.active: StackViewport | None = None
        self.set_layout(layout)

    @property
    def viewports(self) -> list[StackViewport]:
        rows, cols = LAYOUTS[self.layout_name]
        return self._all[: rows * cols]

    def set_layout(self, name: str) -> list[StackViewport]:
        if name not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}")
        rows, cols = LAYOUTS[name]
        while len(self._all) < rows * cols:
            v = StackViewport(self)
            v.canvas.installEventFilter(self)
            self._all.append(v)
        for v in self._all:
            self._grid.removeWidget(v)
            v.hide()
        for n, v in enumerate(self._all[: rows * cols]):
            self._grid.addWidget(v, n // cols, n % cols)
            v.show()
        for r in range(2):
            self._grid.setRowStretch(r, 1 if r < rows else 0)
        for c in range(2):
            self._grid.setColumnStretch(c, 1 if c < cols else 0)
        self.layout_name = name
        if self.active not in self.viewports:
            self.set_active(self._all[0])
        return self.viewports

    def set_active(self, view: StackViewport) -> None:
        self.active = view
        for v in self._all:
            v.setStyleSheet("border: 2px solid #2a82da;" if v is view else "")
        self.activeChanged.emit(view)

    def eventFilter(self, obj, event):
        from PySide6.QtCore import QEvent

        if event.type() == QEvent.MouseButtonPress:
            for v in self._all:
                if v.canvas is obj and v is not self.active:
                    self.set_active(v)
        return False
