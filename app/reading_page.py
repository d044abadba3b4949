"""Reading page: the open study's viewports (progressively filled), its priors, and the report beside them.

Owns the layout of one reading session: a header (study, layout, priors), a grid of
:class:`viewer.qt.viewport.StackViewport` chosen by the hanging protocol, and the report/dictation column.
Loading runs on a worker (:class:`app.study_loader.StudyLoader`); its events arrive on the GUI thread and
become ``set_volume``/``slice_arrived`` calls, so the first image is on screen long before the study is local.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
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

from .study_loader import LoadProgress, SeriesFailed, SeriesReady, SlicesArrived
from .workers import run_task

log = logging.getLogger(__name__)


def choose_layout(series, item=None, with_prior: bool = False) -> tuple[int, int, list]:
    """(rows, cols, series in display order) from the hanging protocols, else by the number of series."""
    try:
        from viewer import hanging
    except ImportError:
        hanging = None
    if hanging is not None and hasattr(hanging, "choose_layout"):
        try:
            return hanging.choose_layout(series, item=item, with_prior=with_prior)
        except Exception as exc:  # noqa: BLE001 - a bad protocol file must not stop reading
            log.warning("Hanging protocol failed (%s); using the default layout.", type(exc).__name__)
    n = len(series)
    if with_prior:
        return 1, 2, list(series)[:1]
    if n <= 1:
        return 1, 1, list(series)
    if n == 2:
        return 1, 2, list(series)
    return 2, 2, list(series)[:4]


class ReadingPage(QWidget):
    closed = Signal()
    fetch_progress = Signal(object)
    first_image_shown = Signal(str)        # series UID of the first slice put on screen
    study_loaded = Signal(object)          # StudyLoad
    load_failed = Signal(str)

    def __init__(self, workstation, parent=None) -> None:
        super().__init__(parent)
        self.ws = workstation
        self.item = None
        self.viewports: dict[str, object] = {}          # series UID -> viewport
        self.prior_viewports: dict[str, object] = {}
        self._task = None
        self._prior_task = None
        self._first_shown = False
        self._ready_infos: list = []
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
        self._task = run_task(self.ws.load_study, item.study_uid, on_progress=self._on_event,
                              on_done=self._loaded, on_error=self._failed)
        self.priors.clear()
        self.priors.addItem("Looking for priors…", None)
        self.priors.setEnabled(False)
        run_task(self.ws.priors, item, on_done=self._priors_found,
                 on_error=lambda m, _e: self._priors_found([]))
        if hasattr(self.ws, "opened"):
            self.ws.opened(item)

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

    def _place(self, info, volume, *, prior: bool = False) -> None:
        target = self.prior_viewports if prior else self.viewports
        if prior:
            if self.prior_viewports:          # one prior series beside the current one
                return
            vp = self._viewport()
            self.grid.addWidget(vp, 0, 1)
        else:
            rows, cols, _ = choose_layout([*self._ready_infos, info], self.item)
            if len(self.viewports) >= rows * cols:
                return                       # more series than panes: listed, opened on demand
            if not self.viewports:
                self._clear_grid()
            n = len(self.viewports)
            vp = self._viewport()
            self.grid.addWidget(vp, n // cols, n % cols)
            self.layout_label.setText(f"{rows}x{cols}")
        vp.set_volume(volume, arrived=set())
        target[info.series_uid] = vp

    def _on_event(self, ev, prior: bool = False) -> None:
        viewports = self.prior_viewports if prior else self.viewports
        if isinstance(ev, SeriesReady):
            if not prior:
                self._ready_infos.append(ev.info)
            self._place(ev.info, ev.volume, prior=prior)
        elif isinstance(ev, SlicesArrived):
            vp = viewports.get(ev.series_uid)
            if vp is None:
                return
            for k in ev.slices:
                vp.slice_arrived(k)
            if not prior and not self._first_shown:
                self._first_shown = True
                self.first_image_shown.emit(ev.series_uid)
        elif isinstance(ev, LoadProgress) and not prior:
            self.fetch_progress.emit(ev)
        elif isinstance(ev, SeriesFailed):
            self.show_notice(ev.message)

    def _loaded(self, result) -> None:
        self.load_result = result
        self.study_loaded.emit(result)

    def _failed(self, message: str, _exc) -> None:
        self.show_notice(message)
        self.load_failed.emit(message)

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
        prior = self.priors.currentData()
        if prior is None:
            return
        for vp in self.prior_viewports.values():
            vp.setParent(None)
        self.prior_viewports.clear()
        # current study: keep its first viewport on the left, the prior goes right
        for uid, vp in list(self.viewports.items())[1:]:
            vp.setParent(None)
            del self.viewports[uid]
        self.layout_label.setText("current | prior")
        self._prior_task = run_task(self.ws.load_study, prior.study_uid,
                                    on_progress=lambda ev: self._on_event(ev, prior=True),
                                    on_error=lambda m, _e: self.show_notice(m))
        self._link_prior()

    def _link_prior(self) -> None:
        """Linked scrolling/window between current and prior, when the viewer offers it."""
        try:
            from viewer.qt import compare
        except ImportError:
            return
        link = getattr(compare, "link_views", None)
        if callable(link) and self.viewports and self.prior_viewports:
            link(next(iter(self.viewports.values())), next(iter(self.prior_viewports.values())))

    # -- closing --------------------------------------------------------------------------------------------
    def close_study(self) -> None:
        for t in (self._task, self._prior_task):
            if t is not None:
                t.cancel()
        self._task = self._prior_task = None
        self._ready_infos = []
        for vp in [*self.viewports.values(), *self.prior_viewports.values()]:
            vp.setParent(None)
            vp.deleteLater()
        self.viewports.clear()
        self.prior_viewports.clear()
        self.placeholder.show()
        self.grid.addWidget(self.placeholder, 0, 0)
        self.notice.hide()
        self.item = None
        self.study_label.setText("No study open")

    def close_study_and_return(self) -> None:
        self.close_study()
        self.closed.emit()

    def shutdown(self) -> None:
        self.close_study()
