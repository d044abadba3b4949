"""Reading page: the open study's viewports (progressively filled), its priors, and the report beside them.

Owns the layout of one reading session: a header (study, layout, priors), a grid of
:class:`viewer.qt.viewport.StackViewport` chosen by the hanging protocol, and the report/dictation column.
Loading runs on a worker (:class:`app.study_loader.StudyLoader`); its events arrive on the GUI thread and
become ``set_volume``/``slice_arrived`` calls, so the first image is on screen long before the study is local.
"""
from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from .study_loader import LayoutPlanned, LoadProgress, SeriesFailed, SeriesReady, SlicesArrived
from .workers import run_task

log = logging.getLogger(__name__)


def fallback_layout(n_series: int) -> tuple[int, int]:
    """Rows x cols when no hanging protocol fits: one pane per series, up to 2x2."""
    if n_series <= 1:
        return 1, 1
    if n_series == 2:
        return 1, 2
    return 2, 2


class ReadingPage(QWidget):
    closed = Signal()
    fetch_progress = Signal(object)
    first_image_shown = Signal(str)        # series UID of the first slice put on screen
    study_loaded = Signal(object)          # StudyLoad
    load_failed = Signal(str)
    prior_shown = Signal()
    measurement_made = Signal(object)      # a viewer measurement / key image, for the report
    annotations_restored = Signal(int)     # how many saved measurements/annotations were put back
    auth_failed = Signal()                 # the archive wants the reader to sign in again

    def __init__(self, workstation, parent=None) -> None:
        super().__init__(parent)
        self.ws = workstation
        self.item = None
        self.panes: list = []                            # StackViewports in grid order
        self.viewports: dict[str, list] = {}             # series UID -> the panes showing it
        self.pane_windows: dict[int, str] = {}           # pane index -> window preset from the protocol
        self.plan = None                                 # viewer.hanging.HangingPlan
        self.comparison = None                           # viewer.qt.compare.PriorComparison when comparing
        self.prior_volume = None
        self._task = None
        self._prior_task = None
        self._first_shown = False
        self._ready_infos: list = []
        self._generation = 0                             # bumps when a study closes: late callbacks are dropped
        self.volumes: dict[str, object] = {}
        self._arrived: dict[str, set] = {}
        self.load_result = None

        self.study_label = QLabel("No study open")
        self.study_label.setObjectName("sectionTitle")
        self.layout_label = QLabel("")
        self.layout_label.setObjectName("hint")
        self.priors = QComboBox()
        self.priors.setMinimumWidth(260)
        self.priors.addItem("No priors", None)
        self.priors.setEnabled(False)
        self.compare_button = QPushButton("Compare side by side")
        self.compare_button.setEnabled(False)
        self.compare_button.clicked.connect(self.open_selected_prior)
        from viewer.qt.tools import TOOLS

        self.tool = QComboBox()
        self.tool.setToolTip("Left mouse button tool (right-drag: window/level; wheel: scroll)")
        for name in ("scroll", "pan", "zoom", "wl", *TOOLS):
            self.tool.addItem(name.replace("wl", "window/level").capitalize(), name)
        self.tool.currentIndexChanged.connect(lambda _i: self._set_tool(self.tool.currentData()))
        self.view_mode = QComboBox()
        self.view_mode.addItem("Stack", "stack")
        self.view_mode.addItem("MPR", "mpr")
        self.view_mode.addItem("MPR + 3D", "mpr3d")
        self.view_mode.setEnabled(False)
        self.view_mode.setToolTip("Reformats need the whole series (enabled when it has arrived)")
        self.view_mode.currentIndexChanged.connect(lambda _i: self.set_view_mode(self.view_mode.currentData()))
        self.mpr = None
        self.window_preset = QComboBox()
        self.window_preset.setToolTip("Window presets (header windows first, CT presets for CT)")
        self.window_preset.addItem("Window", None)
        self.window_preset.activated.connect(self._preset_chosen)
        self.series_menu = QComboBox()
        self.series_menu.setToolTip("Show another series of this study in the first pane")
        self.series_menu.setEnabled(False)
        self.series_menu.setMinimumContentsLength(18)
        self.series_menu.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.series_menu.activated.connect(self._series_chosen)
        self.cine = QPushButton("Play")
        self.cine.setCheckable(True)
        self.cine.setEnabled(False)
        self.cine.setToolTip("Play multi-frame (cine) series at their recorded frame rate")
        self.cine.toggled.connect(self._cine_toggled)
        self.close_button = QPushButton("Back to worklist")
        self.close_button.clicked.connect(self.close_study_and_return)
        self.notice = QLabel("")
        self.notice.setObjectName("bannerError")
        self.notice.setWordWrap(True)
        self.notice.hide()
        head = QHBoxLayout()
        head.addWidget(self.study_label)
        head.addWidget(self.layout_label)
        head.addStretch(1)
        head.addWidget(QLabel("Tool:"))
        head.addWidget(self.tool)
        head.addWidget(self.series_menu)
        head.addWidget(self.window_preset)
        head.addWidget(self.cine)
        head.addWidget(self.view_mode)
        head.addWidget(QLabel("Priors:"))
        head.addWidget(self.priors)
        head.addWidget(self.compare_button)
        head.addWidget(self.close_button)

        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.placeholder = QLabel("Open a study from the worklist (F2).")
        self.placeholder.setAlignment(Qt.AlignCenter)
        self.placeholder.setObjectName("hint")
        self.grid.addWidget(self.placeholder, 0, 0)

        self.side = QWidget()          # report editor + dictation live here
        self.side_layout = QVBoxLayout(self.side)
        self.side_layout.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.grid_host)
        self.splitter.addWidget(self.side)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([1150, 450])

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(head)
        lay.addWidget(self.notice)
        lay.addWidget(self.splitter, 1)

    # -- side column ----------------------------------------------------------------------------------------
    def set_side_widget(self, widget: QWidget) -> None:
        while self.side_layout.count():
            old = self.side_layout.takeAt(0).widget()
            if old is not None:
                old.setParent(None)
        self.side_layout.addWidget(widget)

    # -- opening ----------------------------------------------------------------------------------------------
    def open_item(self, item) -> None:
        self.close_study()
        self.item = item
        desc = " ".join(x for x in (item.modality, item.body_part, "-", item.study_description) if x)
        self.study_label.setText(desc)
        self._first_shown = False
        g = self._generation
        self._task = run_task(self.ws.load_study, item.study_uid, pin=item.state == "IN PROGRESS",
                              on_progress=self._current(g, self._on_event),
                              on_done=self._current(g, self._loaded), on_error=self._current(g, self._failed))
        self.priors.clear()
        self.priors.addItem("Looking for priors…", None)
        self.priors.setEnabled(False)
        run_task(self.ws.priors, item, on_done=self._current(g, self._priors_found),
                 on_error=self._current(g, lambda m, _e: self._priors_found([])))
        if hasattr(self.ws, "opened"):
            self.ws.opened(item)

    def _current(self, generation: int, fn):
        """``fn`` only while the study it was started for is still the open one (late callbacks of a closed
        study - its cancellation, its last slices - must not touch the next study's panes)."""
        def call(*args):
            if generation == self._generation:
                fn(*args)
        return call

    def _viewport(self):
        from viewer.qt.viewport import StackViewport

        return StackViewport()

    def _clear_grid(self) -> None:
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w is not None and w is not self.placeholder:
                w.setParent(None)
                w.deleteLater()
        self.placeholder.hide()

    def _build_grid(self, rows: int, cols: int, labels: list[str]) -> None:
        self._clear_grid()
        self.panes = []
        for n in range(rows * cols):
            vp = self._viewport()
            vp.setToolTip(labels[n] if n < len(labels) and labels[n] else "")
            vp.set_tool(self.tool.currentData() or "scroll")
            vp.measurementAdded.connect(self.measurement_made.emit)
            self.grid.addWidget(vp, n // cols, n % cols)
            self.panes.append(vp)

    def _apply_plan(self, plan) -> None:
        self.plan = plan
        self._build_grid(plan.rows, plan.cols, [v.label for v in plan.viewports])
        self.viewports = {}
        self.pane_windows = {}
        for a in plan.viewports:
            if a.series_uid and a.index < len(self.panes):
                self.viewports.setdefault(a.series_uid, []).append(self.panes[a.index])
                if a.window:
                    self.pane_windows[a.index] = a.window
        self.layout_label.setText(f"{plan.name} ({plan.rows}x{plan.cols})")
        if plan.link_scroll:
            for panes in self.viewports.values():
                if len(panes) > 1:
                    self._link_same_series(panes)

    def _link_same_series(self, panes) -> None:
        """Panes showing one series (e.g. brain and bone windows) scroll together."""
        busy = [False]

        def follow(source, k):
            if busy[0]:
                return
            busy[0] = True
            try:
                for p in panes:
                    if p is not source and p.k != k and p.has_slice(k):
                        p.set_slice(k)
            finally:
                busy[0] = False

        for p in panes:
            p.sliceChanged.connect(lambda k, src=p: follow(src, k))

    def _series_ready(self, info, volume) -> None:
        self._ready_infos.append(info)
        self.volumes[info.series_uid] = volume
        label = " ".join(x for x in (f"#{info.series_number}" if info.series_number is not None else "",
                                     info.modality, info.description) if x) or info.series_uid[-8:]
        self.series_menu.addItem(f"{label} ({volume.shape[0]})", info.series_uid)
        self.series_menu.setEnabled(self.series_menu.count() > 1)
        panes = self.viewports.get(info.series_uid)
        if panes is None:
            # not in the protocol's plan (or no plan): give it a free pane if there is one
            if self.plan is None:
                rows, cols = fallback_layout(len(self._ready_infos))
                if len(self.panes) < rows * cols:
                    old = list(self.viewports.items())
                    self._build_grid(rows, cols, [])
                    self.viewports = {}
                    for n, (uid, _panes) in enumerate(old):
                        self.viewports[uid] = [self.panes[n]]
                        self.panes[n].set_volume(self.volumes[uid], arrived=set(self._arrived.get(uid, ())))
                    self.layout_label.setText(f"{rows}x{cols}")
            used = {id(p) for ps in self.viewports.values() for p in ps}
            free = [p for p in self.panes if id(p) not in used]
            if not free:
                return                       # more series than panes: shown when the reader asks
            panes = self.viewports[info.series_uid] = [free[0]]
        for vp in panes:
            vp.set_volume(volume, arrived=set())

    def _slices_arrived(self, series_uid: str, slices: list[int]) -> None:
        self._arrived.setdefault(series_uid, set()).update(slices)
        for vp in self.viewports.get(series_uid, ()):
            first = not vp.arrived
            for k in slices:
                vp.slice_arrived(k)
            if first:
                QTimer.singleShot(0, lambda v=vp: self._fit_after_layout(v))
                idx = self.panes.index(vp) if vp in self.panes else -1
                if idx in self.pane_windows:
                    try:
                        vp.apply_preset(self.pane_windows[idx])
                    except (KeyError, ValueError) as exc:
                        log.info("window preset not applied: %s", exc)
        if self.viewports.get(series_uid) and not self._first_shown:
            self._first_shown = True
            self.first_image_shown.emit(series_uid)

    def show_series(self, series_uid: str, pane_index: int = 0) -> None:
        """Put another series of the study into a pane (e.g. one the hanging protocol left out)."""
        volume = self.volumes.get(series_uid)
        if volume is None or not 0 <= pane_index < len(self.panes):
            return
        vp = self.panes[pane_index]
        for uid, panes in list(self.viewports.items()):
            if vp in panes:
                panes.remove(vp)
                if not panes:
                    del self.viewports[uid]
        self.viewports.setdefault(series_uid, []).append(vp)
        self.pane_windows.pop(pane_index, None)
        arrived = self._arrived.get(series_uid, set())
        vp.set_volume(volume, arrived=None if len(arrived) >= volume.shape[0] else set(arrived))
        QTimer.singleShot(0, lambda v=vp: self._fit_after_layout(v))

    def _series_chosen(self, index: int) -> None:
        uid = self.series_menu.itemData(index)
        if uid:
            self.show_series(uid, 0)

    def _fit_after_layout(self, vp) -> None:
        """Fit once the grid has its final size (a pane made a moment ago was fitted to its initial size)."""
        try:
            if vp.volume is not None and vp.isVisible():
                vp.fit()
        except RuntimeError:      # the pane was closed meanwhile
            pass

    def _on_event(self, ev) -> None:
        if isinstance(ev, LayoutPlanned):
            self._apply_plan(ev.plan)
        elif isinstance(ev, SeriesReady):
            self._series_ready(ev.info, ev.volume)
        elif isinstance(ev, SlicesArrived):
            self._slices_arrived(ev.series_uid, ev.slices)
        elif isinstance(ev, LoadProgress):
            self.fetch_progress.emit(ev)
        elif isinstance(ev, SeriesFailed):
            self.show_notice(ev.message)

    def _fill_presets(self) -> None:
        from viewer.presets import presets_for

        volume = self._main_volume()
        self.window_preset.clear()
        self.window_preset.addItem("Window", None)
        for p in presets_for(volume) if volume is not None else []:
            self.window_preset.addItem(f"{p.name} ({p.width:g}/{p.center:g})", (p.width, p.center))
        self.cine.setEnabled(any((v.metadata or {}).get("kind") == "cine" for v in self.volumes.values()))

    def _preset_chosen(self, index: int) -> None:
        wl = self.window_preset.itemData(index)
        if wl is None:
            return
        for vp in self.panes:
            vp.set_window_level(*wl)

    def _cine_toggled(self, on: bool) -> None:
        for vp in self.panes:
            if vp.volume is not None and (vp.volume.metadata or {}).get("kind") == "cine":
                vp.play() if on else vp.stop()
        self.cine.setText("Stop" if on else "Play")

    def _set_tool(self, name: str) -> None:
        for vp in self.panes:
            vp.set_tool(name)

    def _main_volume(self):
        if self.plan is not None and self.plan.viewports and self.plan.viewports[0].series_uid in self.volumes:
            return self.volumes[self.plan.viewports[0].series_uid]
        return next(iter(self.volumes.values()), None)

    def set_view_mode(self, mode: str) -> None:
        """Stack panes (the hanging protocol), or MPR (axial/coronal/sagittal, linked crosshair) of the main
        series, optionally with a 3D rendering."""
        from viewer.qt.mpr import MprWidget

        if self.mpr is not None:
            self.grid.removeWidget(self.mpr)
            self.mpr.setParent(None)
            self.mpr.deleteLater()
            self.mpr = None
        for vp in self.panes:
            vp.setVisible(mode == "stack")
        if mode == "stack":
            return
        volume = self._main_volume()
        if volume is None or volume.voxels.ndim != 3 or volume.shape[0] < 2:
            self.show_notice("Reformats need a cross-sectional series (several slices).")
            for vp in self.panes:
                vp.setVisible(True)
            return
        self.mpr = MprWidget(with_3d=(mode == "mpr3d"))
        rows = self.plan.rows if self.plan else 1
        cols = self.plan.cols if self.plan else 1
        self.grid.addWidget(self.mpr, 0, 0, rows, cols)
        self.mpr.set_volume(volume)

    # -- measurements: collect for saving, restore what was saved -----------------------------------------------
    def collect_annotations(self) -> tuple[list, list]:
        """(measurements and annotations, key images) the reader made in the panes of the current study."""
        items, keys, seen = [], [], set()
        for vp in self.panes:
            for ann in vp.tools.annotations:
                m = ann.measurement
                if m is not None and getattr(m, "uid", id(m)) not in seen and getattr(m, "kind", "") != "probe":
                    seen.add(getattr(m, "uid", id(m)))
                    items.append(m)
            for mark in getattr(vp, "key_images", {}).values():
                if mark.sop_instance_uid not in seen:
                    seen.add(mark.sop_instance_uid)
                    keys.append(mark)
        return items, keys

    def _restore_saved(self, datasets) -> None:
        """Put saved measurements/annotations back on the panes showing their series."""
        from viewer import persistence
        from viewer.qt.tools import Annotation, describe

        if not datasets:
            return
        restored_n = 0
        for series_uid, panes in self.viewports.items():
            volume = self.volumes.get(series_uid)
            if volume is None:
                continue
            got = persistence.restore(datasets, volume)
            refs = [r[0] if r else None for r in (volume.metadata or {}).get("slice_refs", [])]
            for m in [*got.measurements, *got.annotations]:
                k = refs.index(m.sop_instance_uid) if m.sop_instance_uid in refs else None
                ann = Annotation(kind=m.kind, points=[np.asarray(p, float) for p in m.points], measurement=m,
                                 label=m.text or describe(m), slice_index=k)
                for vp in panes:
                    vp.tools.annotations.append(ann)
                restored_n += 1
            for vp in panes:
                vp.tools.update_overlay()
                vp.render()
        self.restored_count = restored_n
        if restored_n:
            self.annotations_restored.emit(restored_n)

    def _loaded(self, result) -> None:
        self.load_result = result
        if self.item is not None and self.item.study_uid:
            g = self._generation
            run_task(self.ws.saved_annotations, self.item.study_uid, on_done=self._current(g, self._restore_saved),
                     on_error=self._current(g, lambda m, _e: self.show_notice(m)))
        vol = self._main_volume()
        self.view_mode.setEnabled(vol is not None and vol.voxels.ndim == 3 and vol.shape[0] > 1
                                  and (vol.metadata or {}).get("kind") == "stack")
        self._fill_presets()
        self.study_loaded.emit(result)

    def _failed(self, message: str, exc) -> None:
        self.show_notice(message)
        self.load_failed.emit(message)
        if type(exc).__name__ == "AuthError" and getattr(exc, "status", None) != 403:  # 403: not a password matter
            self.auth_failed.emit()

    def show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.show()

    # -- priors ---------------------------------------------------------------------------------------------
    def _priors_found(self, priors) -> None:
        self.priors.clear()
        if not priors:
            self.priors.addItem("No priors", None)
            self.priors.setEnabled(False)
            self.compare_button.setEnabled(False)
            return
        for p in priors:
            when = p.study_date.isoformat() if p.study_date else "date unknown"
            self.priors.addItem(f"{when}  {'/'.join(p.modalities)}  {p.description}", p)
        self.priors.setEnabled(True)
        self.compare_button.setEnabled(True)

    def open_selected_prior(self) -> None:
        """Load the chosen prior (usually already local through prefetch), then show it right of the current
        study with linked scrolling (by patient position) and linked window/level."""
        prior = self.priors.currentData()
        if prior is None or not self.volumes:
            return
        self.compare_button.setEnabled(False)
        self.layout_label.setText("Loading the prior…")
        self.prior_volume = None
        g = self._generation
        self._prior_task = run_task(self.ws.load_study, prior.study_uid,
                                    on_progress=self._current(g, self._prior_event),
                                    on_done=self._current(g, lambda _r: self._show_comparison()),
                                    on_error=self._current(g, lambda m, _e: self._prior_failed(m)))

    def _prior_event(self, ev) -> None:
        if isinstance(ev, SeriesReady) and self.prior_volume is None:
            self.prior_volume = ev.volume
        elif isinstance(ev, LoadProgress):
            self.fetch_progress.emit(ev)

    def _prior_failed(self, message: str) -> None:
        self.compare_button.setEnabled(True)
        self.show_notice(message)

    def _show_comparison(self) -> None:
        from viewer.qt.compare import PriorComparison

        self.compare_button.setEnabled(True)
        if self.prior_volume is None:
            self.show_notice("The prior has no images that can be shown.")
            return
        current_uid = self.plan.viewports[0].series_uid if self.plan and self.plan.viewports[0].series_uid \
            else next(iter(self.volumes))
        self._clear_grid()
        self.panes = []
        self.comparison = PriorComparison()
        self.grid.addWidget(self.comparison, 0, 0)
        self.comparison.set_volumes(self.volumes[current_uid], self.prior_volume)
        self.viewports = {current_uid: [self.comparison.current]}
        self.layout_label.setText("current | prior (linked)")
        self.prior_shown.emit()

    # -- closing --------------------------------------------------------------------------------------------
    def close_study(self) -> None:
        self._generation += 1
        for t in (self._task, self._prior_task):
            if t is not None:
                t.cancel()
        self._task = self._prior_task = None
        self._ready_infos = []
        self.volumes: dict[str, object] = {}
        self._arrived: dict[str, set] = {}
        self._clear_grid()
        self.panes = []
        self.viewports = {}
        self.pane_windows = {}
        self.plan = None
        self.comparison = None
        self.prior_volume = None
        self.mpr = None
        self.view_mode.blockSignals(True)
        self.view_mode.setCurrentIndex(0)
        self.view_mode.blockSignals(False)
        self.view_mode.setEnabled(False)
        self.cine.setChecked(False)
        self.cine.setEnabled(False)
        self.window_preset.clear()
        self.window_preset.addItem("Window", None)
        self.series_menu.clear()
        self.series_menu.setEnabled(False)
        self.placeholder.show()
        self.grid.addWidget(self.placeholder, 0, 0)
        self.notice.hide()
        self.item = None
        self.study_label.setText("No study open")
        self.layout_label.setText("")

    def close_study_and_return(self) -> None:
        self.close_study()
        self.closed.emit()

    def shutdown(self) -> None:
        self.close_study()
