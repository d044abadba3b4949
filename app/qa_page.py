"""QA mode for reviewers: blind peer review with RADPEER scoring, a side-by-side comparison of the two reads,
and the score distribution per reader (pyqtgraph chart).

Owns the QA page's widgets. The review logic (blind reveal, RADPEER scale, review SR, QA summary, diff) is
:mod:`reporting.peer_review`; listing reports and reviews and storing a review go through the workstation
(:meth:`app.services.Workstation.qa_worklist`, :meth:`~app.services.Workstation.submit_review`) on workers.
"""
from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from reporting import peer_review as pr

from .workers import run_task

log = logging.getLogger(__name__)

DIFF_COLOURS = {"equal": None, "replace": "#3b2f17", "delete": "#3a1f22", "insert": "#1f2e24"}
SCORE_COLOURS = {"1": "#6f9f6f", "2a": "#c9b458", "2b": "#d98b3a", "3a": "#c8625a", "3b": "#a83a4a"}


class ScoreChart(QWidget):
    """Grouped bars: one group per reader, one bar per RADPEER score."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        import pyqtgraph as pg

        pg.setConfigOptions(antialias=True, background="#111316", foreground="#c9ccd1")
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(220)
        self.plot.showGrid(y=True, alpha=0.2)
        self.plot.setLabel("left", "reviews")
        self.plot.addLegend(offset=(10, 10))
        self.summary: list[pr.ReaderSummary] = []
        self.bars: dict[str, object] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)

    def set_summary(self, summary: list[pr.ReaderSummary]) -> None:
        import pyqtgraph as pg

        self.summary = summary
        self.plot.clear()
        self.bars.clear()
        scores = [s.value for s in pr.RadpeerScore]
        width = 0.8 / len(scores)
        x0 = np.arange(len(summary), dtype=float)
        for n, score in enumerate(scores):
            heights = [s.counts.get(score, 0) for s in summary]
            bar = pg.BarGraphItem(x=x0 - 0.4 + width * (n + 0.5), height=heights, width=width * 0.9,
                                  brush=SCORE_COLOURS[score], name=f"RADPEER {score}")
            self.plot.addItem(bar)
            self.bars[score] = bar
        ticks = [(float(i), f"{s.reader} (n={s.total})") for i, s in enumerate(summary)]
        self.plot.getAxis("bottom").setTicks([ticks])
        self.plot.setXRange(-0.6, max(0.6, len(summary) - 0.4))
        top = max([max(s.counts.values()) for s in summary] + [1])
        self.plot.setYRange(0, top + 0.5)
        step = max(1, int(np.ceil(top / 6)))          # whole reviews only
        self.plot.getAxis("left").setTickSpacing(step, step)


class QAPage(QWidget):
    review_submitted = Signal(object)      # PeerReview
    loaded = Signal()
    open_images = Signal(str)              # study UID to show in the reading page

    def __init__(self, workstation, parent=None) -> None:
        super().__init__(parent)
        self.ws = workstation
        self.reports: list[pr.ReviewedReport] = []
        self.reviews: list[pr.PeerReview] = []
        self.review: pr.BlindReview | None = None
        # Reviews submitted from this page: a list loaded before one was queued must not bring it back.
        self._submitted_reviews: dict[str, pr.PeerReview] = {}

        # left: reports to review
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._select)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.blind = QCheckBox("Blind review (hide the original until I have read)")
        self.blind.setChecked(True)
        left = QWidget()
        ll = QVBoxLayout(left)
        t = QLabel("Signed reports to review")
        t.setObjectName("sectionTitle")
        ll.addWidget(t)
        ll.addWidget(self.list, 1)
        ll.addWidget(self.blind)
        ll.addWidget(self.refresh_button)

        # middle: the review
        self.title = QLabel("Choose a report")
        self.title.setObjectName("sectionTitle")
        self.my_impression = QPlainTextEdit()
        self.my_impression.setPlaceholderText("Your own impression of the study (written before you see the "
                                              "original report)")
        self.my_impression.setMaximumHeight(120)
        self.reveal_button = QPushButton("Reveal original and compare")
        self.reveal_button.clicked.connect(self.reveal)
        self.images_button = QPushButton("Open the images")
        self.images_button.clicked.connect(
            lambda: self.review is not None and self.open_images.emit(self.review.original.study_uid))
        self.original = QPlainTextEdit()
        self.original.setReadOnly(True)
        self.original.setPlaceholderText("The original report stays hidden until you have written your impression.")
        self.diff = QTableWidget(0, 2)
        self.diff.setHorizontalHeaderLabels(["Original read", "Your read"])
        self.diff.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.diff.verticalHeader().hide()
        self.diff.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.diff.setWordWrap(True)
        self.score = QComboBox()
        for s in pr.RadpeerScore:
            self.score.addItem(f"{s.value} - {s.meaning}", s.value)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("Comment (required for 2b, 3a, 3b)")
        self.submit_button = QPushButton("Submit review")
        self.submit_button.setObjectName("primary")
        self.submit_button.clicked.connect(self.submit)
        self.message = QLabel("")
        self.message.setObjectName("banner")
        self.message.setWordWrap(True)
        self.message.hide()
        mid = QWidget()
        ml = QVBoxLayout(mid)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.images_button)
        ml.addLayout(top)
        ml.addWidget(QLabel("Your impression"))
        ml.addWidget(self.my_impression)
        ml.addWidget(self.reveal_button)
        ml.addWidget(QLabel("Original report"))
        ml.addWidget(self.original, 1)
        ml.addWidget(QLabel("Side by side"))
        ml.addWidget(self.diff, 1)
        sl = QHBoxLayout()
        sl.addWidget(QLabel("RADPEER"))
        sl.addWidget(self.score, 1)
        ml.addLayout(sl)
        ml.addWidget(self.comment)
        ml.addWidget(self.message)
        ml.addWidget(self.submit_button)

        # right: distribution per reader
        self.chart = ScoreChart()
        self.summary_label = QLabel("")
        self.summary_label.setObjectName("hint")
        self.summary_label.setWordWrap(True)
        right = QWidget()
        rl = QVBoxLayout(right)
        t2 = QLabel("RADPEER scores per reader")
        t2.setObjectName("sectionTitle")
        rl.addWidget(t2)
        rl.addWidget(self.chart, 1)
        rl.addWidget(self.summary_label)

        split = QSplitter(Qt.Horizontal)
        for w in (left, mid, right):
            split.addWidget(w)
        split.setSizes([330, 700, 520])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        self._set_review_enabled(False)

    # -- data -----------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.refresh_button.setEnabled(False)
        run_task(self.ws.qa_worklist, on_done=self._loaded, on_error=self._failed)

    def _loaded(self, result) -> None:
        """Show the loaded list. A refresh never takes away what the reviewer is doing: the report under review
        stays selected with the impression typed so far, and reviews submitted from this page stay counted
        and their reports off the list even when the list was read before they reached the outbox."""
        self.refresh_button.setEnabled(True)
        reports, reviews = result
        # a review read back (outbox or archive) is the one submitted here: same id (its SR's UID), or at least
        # the same reviewer and reviewed report; the local copy is dropped once the list has it
        known = {r.review_id for r in reviews} | {(r.reviewed_sop_instance_uid, r.reviewer) for r in reviews}
        for rid, r in list(self._submitted_reviews.items()):
            if rid in known or (r.reviewed_sop_instance_uid, r.reviewer) in known:
                del self._submitted_reviews[rid]
        done = {r.reviewed_sop_instance_uid for r in self._submitted_reviews.values()}
        reviews = list(reviews) + list(self._submitted_reviews.values())
        self.reports = [r for r in reports if r.sop_instance_uid not in done]
        self.reviews = reviews
        current = self.review.original.sop_instance_uid if self.review is not None else None
        if current is not None and all(r.sop_instance_uid != current for r in self.reports):
            self.reports.insert(0, self.review.original)  # still under review here: keep it
        self.list.blockSignals(True)
        self.list.clear()
        for rep in self.reports:
            it = QListWidgetItem(f"{rep.reader}: {rep.impression.splitlines()[0][:60] if rep.impression else ''}"
                                 if not self.blind.isChecked() else f"Report by {rep.reader}")
            it.setToolTip(f"Study {rep.study_uid}")
            self.list.addItem(it)
        if current is not None:
            self.list.setCurrentRow(next(i for i, r in enumerate(self.reports) if r.sop_instance_uid == current))
        self.list.blockSignals(False)
        self.update_summary()
        self.loaded.emit()

    def update_summary(self) -> None:
        summary = pr.qa_summary(self.reviews)
        self.chart.set_summary(summary)
        self.summary_label.setText("\n".join(
            f"{s.reader}: {s.total} reviewed, discrepancy rate {s.discrepancy_rate:.0%}, "
            f"{s.significant} likely significant" for s in summary) or "No reviews yet.")

    def _failed(self, message: str, _exc) -> None:
        self.refresh_button.setEnabled(True)
        self.show_message(message)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    # -- review flow ----------------------------------------------------------------------------------------
    def _set_review_enabled(self, on: bool) -> None:
        for w in (self.my_impression, self.images_button):
            w.setEnabled(on)
        compared = bool(self.review and self.review.reviewer_impression)
        self.reveal_button.setEnabled(on and not compared)
        revealed = bool(self.review and self.review.revealed)
        for w in (self.score, self.comment, self.submit_button):
            w.setEnabled(on and revealed)

    def _select(self, row: int) -> None:
        self.show_message("")
        self.diff.setRowCount(0)
        self.original.clear()
        self.my_impression.clear()
        if not 0 <= row < len(self.reports):
            self.review = None
            self._set_review_enabled(False)
            return
        rep = self.reports[row]
        try:
            self.review = pr.BlindReview(rep, self.ws.person(), blind=self.blind.isChecked())
        except pr.ReviewError as exc:
            self.review = None
            self.show_message(str(exc))
            self._set_review_enabled(False)
            return
        self.title.setText(f"Peer review of a report by {rep.reader}")
        if self.review.revealed:
            self.original.setPlainText(self.review.original_text())
        self._set_review_enabled(True)

    def reveal(self) -> None:
        if self.review is None:
            return
        try:
            text = self.review.submit_impression(self.my_impression.toPlainText())
        except pr.ReviewError as exc:
            self.show_message(str(exc))
            return
        self.show_message("")
        self.original.setPlainText(text)
        self.my_impression.setReadOnly(True)
        self._show_diff(self.review.diff())
        self._set_review_enabled(True)

    def _show_diff(self, rows) -> None:
        self.diff.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for col, text in enumerate((row.left, row.right)):
                cell = QTableWidgetItem(text)
                colour = DIFF_COLOURS.get(row.tag)
                if colour:
                    cell.setBackground(QBrush(QColor(colour)))
                cell.setData(Qt.UserRole, row.tag)
                self.diff.setItem(i, col, cell)
        self.diff.resizeRowsToContents()

    def submit(self) -> None:
        if self.review is None:
            return
        try:
            review = self.review.score(self.score.currentData(), self.comment.text())
        except pr.ReviewError as exc:
            self.show_message(str(exc))
            return
        original = self.review.original
        self.submit_button.setEnabled(False)
        run_task(self.ws.submit_review, review, original, on_done=lambda _i: self._submitted(review),
                 on_error=self._failed)

    def _submitted(self, review) -> None:
        self._submitted_reviews[review.review_id] = review
        if all(r.review_id != review.review_id for r in self.reviews):
            self.reviews.append(review)
        self.review = None
        self.my_impression.setReadOnly(False)
        row = self.list.currentRow()
        if 0 <= row < len(self.reports):
            del self.reports[row]
            self.list.blockSignals(True)
            self.list.takeItem(row)
            self.list.setCurrentRow(-1)
            self.list.blockSignals(False)
        self._select(-1)
        self.comment.clear()
        self.update_summary()
        self.show_message("Review saved. It is sent to the archive with the outbox.")
        self.review_submitted.emit(review)
