"""Prior comparison: the current study left, a prior right, with linked scrolling and linked window/level.

Owns the linking rules. Cross-sectional stacks scroll together by patient position along the current stack's
normal: the prior shows the slice nearest to the current slice's position plus an offset. The offset is 0 when
both series share a Frame of Reference; otherwise it is set when linking starts, from the slices then on screen
(the reader first aligns the same anatomy, then links - as PACS do). Window/level changes are copied both ways.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QHBoxLayout, QWidget

from viewer.qt.viewport import StackViewport


class PriorComparison(QWidget):
    """Two StackViewports side by side: ``current`` (left) and ``prior`` (right)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.current = StackViewport(self)
        self.prior = StackViewport(self)
        lay.addWidget(self.current)
        lay.addWidget(self.prior)
        self.scroll_linked = True
        self.wl_linked = True
        self.offset_mm = 0.0
        self._busy = False
        self.current.sliceChanged.connect(lambda _k: self._follow(self.current, self.prior, +1))
        self.prior.sliceChanged.connect(lambda _k: self._follow(self.prior, self.current, -1))
        self.current.windowLevelChanged.connect(lambda w, lv: self._copy_wl(self.prior, w, lv))
        self.prior.windowLevelChanged.connect(lambda w, lv: self._copy_wl(self.current, w, lv))

    def set_volumes(self, current, prior) -> None:
        self.current.set_volume(current)
        self.prior.set_volume(prior)
        self.prior.set_window_level(self.current.window, self.current.level, emit=False)
        same_for = (current.metadata or {}).get("frame_of_reference_uid")
        same_for = bool(same_for) and same_for == (prior.metadata or {}).get("frame_of_reference_uid")
        self.offset_mm = 0.0
        if not same_for:
            # different scanners/sessions: align the volumes' centres along the normal until the reader re-links
            self.offset_mm = self._loc(self.prior, self.prior.volume.shape[0] // 2) - \
                self._loc(self.current, self.current.volume.shape[0] // 2)
        self._follow(self.current, self.prior, +1)

    def link_scrolling(self, linked: bool = True) -> None:
        """(Re)link scrolling; the slices on screen now are taken as showing the same anatomy."""
        self.scroll_linked = linked
        if linked:
            self.offset_mm = self._loc(self.prior) - self._loc(self.current)

    def link_window_level(self, linked: bool = True) -> None:
        self.wl_linked = linked

    def _normal(self) -> np.ndarray:
        return self.current.slice_normal()

    def _loc(self, view: StackViewport, k: int | None = None) -> float:
        return float(view.slice_position(k) @ self._normal())

    def _follow(self, source: StackViewport, target: StackViewport, sign: int) -> None:
        if not self.scroll_linked or self._busy or source.volume is None or target.volume is None:
            return
        if target.volume.shape[0] < 2:
            return
        self._busy = True
        try:
            want = self._loc(source) + sign * self.offset_mm
            locs = np.array([self._loc(target, k) for k in range(target.volume.shape[0])])
            target.set_slice(int(np.argmin(np.abs(locs - want))))
        finally:
            self._busy = False

    def _copy_wl(self, target: StackViewport, w: float, lv: float) -> None:
        if self.wl_linked and not self._busy and (target.window, target.level) != (w, lv):
            self._busy = True
            try:
                target.set_window_level(w, lv)
            finally:
                self._busy = False
