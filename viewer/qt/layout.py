"""Viewport layouts: a grid of image views in 1x1, 1x2, 2x1 or 2x2, with one active view; hanging plans applied.

Owns the arrangement: which cell holds which view, and ``apply_plan`` that turns a ``viewer.hanging.HangingPlan``
(chosen by the core from modality/body part/description) into views - a stack view, or an MPR view where the plan
asks for a reformat - with the plan's windows, labels and links. Viewports are kept when the layout shrinks, so
switching back is instant and keeps their state.
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
        self.linker = None
        self.set_layout(layout)

    def apply_plan(self, plan, volumes) -> list:
        """Show a hanging plan. ``volumes``: series UID -> Volume for the series the plan names.

        Cells whose assignment has no series (nothing suitable) stay empty. Returns the views in plan order.
        """
        from viewer.qt.compare import ViewLinker
        from viewer.qt.mpr import MprViewport

        name = f"{plan.rows}x{plan.cols}"
        self.set_layout(name)
        if getattr(self, "linker", None) is not None:
            self.linker.detach()
        for a in sorted(plan.viewports, key=lambda a: a.index):
            want_mpr = bool(a.reformat)
            cur = self._all[a.index]
            if want_mpr != isinstance(cur, MprViewport) or (want_mpr and cur.orientation != a.reformat):
                new = MprViewport(self, a.reformat) if want_mpr else StackViewport(self)
                new.canvas.installEventFilter(self)
                self._grid.replaceWidget(cur, new)
                cur.hide()
                cur.deleteLater()
                self._all[a.index] = new
                new.show()
                cur = new
            cur.label = a.label
            vol = volumes.get(a.series_uid) if a.series_uid else None
            if vol is None:
                continue
            cur.set_volume(vol)
            if a.window:
                cur.apply_preset(a.window)
        self.set_active(self.viewports[0])
        shown = [v for v in self.viewports if v.volume is not None]
        self.linker = ViewLinker(shown, scroll=plan.link_scroll, window=plan.link_window) if shown else None
        if self.linker is not None:
            self.linker.align_centres()
        return self.viewports

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
