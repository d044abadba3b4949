"""Linked viewing: scrolling by patient position and window/level shared between views; the prior-comparison
widget (current study left, prior right).

Owns the linking rules. Cross-sectional stacks scroll together by patient position along the first view's slice
normal: each other view shows the slice nearest to the driving slice's position plus that view's offset. The
offset is 0 when the series share a Frame of Reference; otherwise the volumes' centres are aligned until the
reader re-links (``link_scrolling``) with the same anatomy on screen - as PACS do. Window/level changes are copied
between linked views. Views without a stack (single radiographs) take part in window linking only.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QHBoxLayout, QWidget

from viewer.qt.viewport import StackViewport


class ViewLinker:
    """Links the scrolling (stack views) and/or window (any image views) of several views; any may drive."""

    def __init__(self, views: list[StackViewport], scroll: bool = True, window: bool = True) -> None:
        self.views = list(views)
        self.scroll_linked = scroll
        self.wl_linked = window
        self.offsets = [0.0] * len(self.views)   # mm along the normal, relative to views[0]
        self._busy = False
        for v in self.views:
            v.sliceChanged.connect(lambda _k, src=v: self._follow(src))
            v.windowLevelChanged.connect(lambda w, lv, src=v: self._copy_wl(src, w, lv))

    def detach(self) -> None:
        self.scroll_linked = self.wl_linked = False

    def _stacks(self) -> list[StackViewport]:
        return [v for v in self.views if isinstance(v, StackViewport) and v.volume is not None
                and v.volume.shape[0] > 1
                and (v.volume.metadata or {}).get("kind", "stack") == "stack"]

    def _normal(self) -> np.ndarray:
        stacks = self._stacks()
        return stacks[0].slice_normal() if stacks else np.array([0.0, 0.0, 1.0])

    def loc(self, view: StackViewport, k: int | None = None) -> float:
        return float(view.slice_position(k) @ self._normal())

    def align_centres(self) -> None:
        """Offsets for series without a shared Frame of Reference: their middle slices show the same level."""
        ref = self.views[0]
        ref_for = (ref.volume.metadata or {}).get("frame_of_reference_uid")
        for n, v in enumerate(self.views):
            same = bool(ref_for) and ref_for == (v.volume.metadata or {}).get("frame_of_reference_uid")
            if n == 0 or same or v not in self._stacks() or ref not in self._stacks():
                self.offsets[n] = 0.0
            else:
                self.offsets[n] = self.loc(v, v.volume.shape[0] // 2) - self.loc(ref, ref.volume.shape[0] // 2)

    def relink(self) -> None:
        """Take the slices on screen now as the same anatomy."""
        ref = self.views[0]
        for n, v in enumerate(self.views):
            if v in self._stacks() and ref in self._stacks():
                self.offsets[n] = self.loc(v) - self.loc(ref)

    def sync_from(self, source: StackViewport) -> None:
        self._follow(source)

    def _follow(self, source: StackViewport) -> None:
        stacks = self._stacks()
        if not self.scroll_linked or self._busy or source not in stacks:
            return
        self._busy = True
        try:
            want = self.loc(source) - self.offsets[self.views.index(source)]   # position in views[0]'s terms
            for v in stacks:
                if v is source:
                    continue
                target = want + self.offsets[self.views.index(v)]
                locs = np.array([self.loc(v, k) for k in range(v.volume.shape[0])])
                v.set_slice(int(np.argmin(np.abs(locs - target))))
        finally:
            self._busy = False

    def _copy_wl(self, source: StackViewport, w: float, lv: float) -> None:
        if not self.wl_linked or self._busy:
            return
        self._busy = True
        try:
            for v in self.views:
                if v is not source and v.volume is not None and (v.window, v.level) != (w, lv):
                    v.set_window_level(w, lv)
        finally:
            self._busy = False


class PriorComparison(QWidget):
    """Two StackViewports side by side: ``current`` (left) and ``prior`` (right), scroll and window linked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.current = StackViewport(self)
        self.prior = StackViewport(self)
        lay.addWidget(self.current)
        lay.addWidget(self.prior)
        self.linker = ViewLinker([self.current, self.prior])

    @property
    def offset_mm(self) -> float:
        return self.linker.offsets[1]

    def set_volumes(self, current, prior) -> None:
        self.current.set_volume(current)
        self.prior.set_volume(prior)
        self.prior.set_window_level(self.current.window, self.current.level, emit=False)
        self.linker.align_centres()
        self.linker.sync_from(self.current)

    def link_scrolling(self, linked: bool = True) -> None:
        """(Re)link scrolling; the slices on screen now are taken as showing the same anatomy."""
        self.linker.scroll_linked = linked
        if linked:
            self.linker.relink()

    def link_window_level(self, linked: bool = True) -> None:
        self.linker.wl_linked = linked
