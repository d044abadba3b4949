"""Status bar: connection state, reports waiting in the outbox, prefetch and download progress.

Owns the widgets only; the main window feeds it plain values (the outbox's pending count, progress values
from background tasks).
"""
from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar


def outbox_text(pending: int) -> str:
    if pending <= 0:
        return "All reports sent"
    return f"{pending} report{'s' if pending != 1 else ''} waiting to send"


class WorkstationStatusBar(QStatusBar):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.connection = QLabel("Not signed in")
        self.connection.setObjectName("statusWarn")
        self.outbox = QLabel(outbox_text(0))
        self.outbox.setObjectName("statusOk")
        self.prefetch_label = QLabel("")
        self.prefetch_bar = QProgressBar()
        self.prefetch_bar.setFixedWidth(140)
        self.prefetch_bar.hide()
        self.fetch_label = QLabel("")
        self.fetch_bar = QProgressBar()
        self.fetch_bar.setFixedWidth(180)
        self.fetch_bar.hide()
        self.addWidget(self.connection)
        self.addWidget(self.fetch_label)
        self.addWidget(self.fetch_bar)
        self.addPermanentWidget(self.prefetch_label)
        self.addPermanentWidget(self.prefetch_bar)
        self.addPermanentWidget(self.outbox)

    def _restyle(self, label: QLabel, name: str) -> None:
        label.setObjectName(name)
        label.style().unpolish(label)
        label.style().polish(label)

    def set_connection(self, ok: bool, text: str) -> None:
        self.connection.setText(text)
        self._restyle(self.connection, "statusOk" if ok else "statusBad")

    def set_outbox_pending(self, pending: int) -> None:
        self.outbox.setText(outbox_text(pending))
        self._restyle(self.outbox, "statusOk" if pending <= 0 else "statusWarn")

    def set_prefetch(self, done: int, total: int) -> None:
        if total <= 0 or done >= total:
            self.prefetch_bar.hide()
            self.prefetch_label.setText("Prefetch: up to date" if total > 0 else "")
            return
        self.prefetch_label.setText(f"Prefetching {done}/{total} studies")
        self.prefetch_bar.setRange(0, total)
        self.prefetch_bar.setValue(done)
        self.prefetch_bar.show()

    def set_fetch(self, instances_done: int, instances_total: int, rate_mb_s: float | None = None,
                  eta_s: float | None = None) -> None:
        if instances_total <= 0 or instances_done >= instances_total:
            self.fetch_bar.hide()
            self.fetch_label.setText("Study loaded" if instances_total > 0 else "")
            return
        extra = ""
        if rate_mb_s:
            extra += f"  {rate_mb_s:.1f} MB/s"
        if eta_s is not None:
            extra += f"  ~{eta_s:.0f} s left"
        self.fetch_label.setText(f"Loading images {instances_done}/{instances_total}{extra}")
        self.fetch_bar.setRange(0, instances_total)
        self.fetch_bar.setValue(instances_done)
        self.fetch_bar.show()
