"""The reading-room look: dark stylesheet and palette, plus the colours the widgets use for meaning.

Owns loading ``resources/styles/reading-room.qss`` and the semantic colours (STAT, overdue, warning) that table
models and widgets paint with, so meaning-colours are defined once.
"""
from __future__ import annotations

from importlib import resources as importlib_resources

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

STYLESHEET = "reading-room.qss"

STAT = QColor("#e0525c")
OVERDUE_BG = QColor("#4a1f22")
DUE_SOON_BG = QColor("#3b2f17")
HELD_BG = QColor("#1f2e24")
MUTED = QColor("#8a9099")
ACCENT = QColor("#d39b3a")


def stylesheet() -> str:
    return importlib_resources.files("resources").joinpath("styles", STYLESHEET).read_text(encoding="utf-8")


def app_icon():
    """The application icon (resources/icons/readroom.svg), or None when the file is missing."""
    from PySide6.QtGui import QIcon

    path = importlib_resources.files("resources").joinpath("icons", "readroom.svg")
    if not path.is_file():
        return None
    return QIcon(str(path))


def apply(app: QApplication) -> None:
    """Dark palette (for native-drawn parts) and the reading-room stylesheet."""
    app.setStyle("Fusion")
    pal = QPalette()
    base, text = QColor("#15171a"), QColor("#c9ccd1")
    pal.setColor(QPalette.Window, base)
    pal.setColor(QPalette.WindowText, text)
    pal.setColor(QPalette.Base, QColor("#0f1113"))
    pal.setColor(QPalette.AlternateBase, QColor("#16191c"))
    pal.setColor(QPalette.Text, text)
    pal.setColor(QPalette.Button, QColor("#24282e"))
    pal.setColor(QPalette.ButtonText, text)
    pal.setColor(QPalette.Highlight, QColor("#3a4a5e"))
    pal.setColor(QPalette.HighlightedText, QColor("#f0f0f0"))
    pal.setColor(QPalette.ToolTipBase, QColor("#24282e"))
    pal.setColor(QPalette.ToolTipText, text)
    app.setPalette(pal)
    app.setStyleSheet(stylesheet())
