"""`readroom`: the workstation and its command line.

Owns argument parsing only. Each command family lives in its own module (``app/cli_*.py``) exposing
``register(subparsers)``; each registered command sets ``func(args) -> int``. The commands call the same
core code paths as the GUI. With no command, the GUI starts.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

COMMAND_MODULES = ["app.cli_gui", "app.cli_worklist", "app.cli_report", "app.cli_dictation", "app.cli_demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="readroom", description="ReadRoom teleradiology reading workstation")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail in the log (never patient data)")
    sub = parser.add_subparsers(dest="command")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that command family is not part of this build
            raise
        module.register(sub)
    return parser


class _NoQueryStrings(logging.Filter):
    """Drops URL query strings from every log line: a query may carry a patient ID (QIDO ``?PatientID=``), and
    libraries (urllib3 at DEBUG with -v, its retry warnings) log the full request line."""

    _QUERY = re.compile(r"\?[^\s\"'?]*=[^\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's problem, not ours
            return True
        if "?" in msg:
            record.msg, record.args = self._QUERY.sub("?<query not logged>", msg), None
        return True


def _setup_logging(verbose: bool) -> None:
    """Warnings to the terminal; INFO and up (DEBUG with -v) to a rotating file for the clinic's IT.

    The log never holds patient data: modules log UIDs, counts and error types, never names or IDs.
    """
    from logging.handlers import RotatingFileHandler

    from cloud_client import paths

    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(fmt)
    console.addFilter(_NoQueryStrings())
    root.addHandler(console)
    try:
        handler = RotatingFileHandler(paths.log_dir() / "readroom.log", maxBytes=5_000_000, backupCount=5)
    except OSError as exc:
        root.warning("cannot write the log file (%s); logging to the terminal only", type(exc).__name__)
        return
    handler.setFormatter(fmt)
    handler.addFilter(_NoQueryStrings())
    root.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        if "app.cli_gui" in sys.modules:
            return sys.modules["app.cli_gui"].run_gui(args)
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
