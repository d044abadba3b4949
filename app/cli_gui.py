"""`readroom` with no command (or `readroom gui`): open the workstation.

Owns starting Qt: the application object, the theme, the sign-in dialog, and the main window. Also
:func:`open_workstation`, used by ``readroom demo`` to open the window for an already signed-in session.
"""
from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open the reading workstation (the default with no command)")
    p.add_argument("--profile", help="server profile to sign in with (default: the last one used)")
    p.set_defaults(func=run_gui)


def have_display() -> bool:
    """Is there a screen to open windows on (X11, Wayland, or a Qt platform chosen explicitly)?"""
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("darwin", "win32"))


NO_DISPLAY = ("No display to open the workstation on. Run it in a desktop session, or on a server under a "
              "virtual screen: xvfb-run -a readroom  (make demo does this by itself).")


def application():
    """The QApplication (created once), themed."""
    from PySide6.QtWidgets import QApplication

    from . import theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    if not app.property("readroom_themed"):       # once per application (tests may have made it already)
        app.setApplicationName("ReadRoom")
        app.setOrganizationName("ReadRoom")
        theme.apply(app)
        icon = theme.app_icon()
        if icon is not None:
            app.setWindowIcon(icon)
        app.setProperty("readroom_themed", True)
    return app


def install_error_hook() -> None:
    """Unexpected errors in the GUI are logged (type and place, no patient data) and shown in plain words; the
    workstation keeps running instead of aborting mid-report (drafts are autosaved anyway)."""
    import traceback

    from PySide6.QtWidgets import QMessageBox

    from .workers import user_message

    def hook(exc_type, exc, tb):
        where = traceback.extract_tb(tb)[-1] if tb else None
        log.error("Unexpected %s at %s:%s", exc_type.__name__, getattr(where, "filename", "?"),
                  getattr(where, "lineno", "?"))
        try:
            QMessageBox.warning(None, "ReadRoom", user_message(exc) + "\n\nYour report draft is saved.")
        except Exception:  # noqa: BLE001 - never fail inside the error hook
            log.error("error dialog could not be shown")

    sys.excepthook = hook


def open_workstation(session, settings=None):
    """Main window for a signed-in :class:`app.session.ReaderSession`; shown and started."""
    from .main_window import MainWindow
    from .services import Workstation
    from .settings import load_settings, save_settings

    settings = settings or load_settings()
    if settings.profile_name != session.profile.name:
        settings.profile_name = session.profile.name
        save_settings(settings)
    window = MainWindow(Workstation(session, settings), settings)
    window.show()
    window.start()
    return window


def _initial_profile(name: str | None):
    from cloud_client import profiles

    from .settings import load_settings

    try:
        known = profiles.load_profiles()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        known = {}
    name = name or load_settings().profile_name
    if name and name in known:
        return known[name]
    return next(iter(known.values()), None)


def run_gui(args: argparse.Namespace) -> int:
    if not have_display():
        print(NO_DISPLAY, file=sys.stderr)
        return 2
    app = application()
    from .login_dialog import LoginDialog

    install_error_hook()
    dialog = LoginDialog(_initial_profile(getattr(args, "profile", None)))
    if not dialog.exec() or dialog.session is None:
        return 1
    window = open_workstation(dialog.session)
    rc = app.exec()
    window.ws.close()
    return int(rc)
