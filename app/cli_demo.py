"""`readroom demo`: start the reference cloud with the demo studies, sign in as reader1, open the workstation.

Owns the demo's sequence: start ``readroom-cloud start --seed-demo`` under ``READROOM_HOME/demo-cloud`` through
:class:`cloud.launcher.CloudProcess`, wait until it is ready and reader1's worklist has items, use a
process-memory keyring when no real OS keyring works (``READROOM_KEYRING=memory``), sign in as reader1 with the
demo password, open the main window, and stop the cloud cleanly when the window closes (or on Ctrl+C/SIGTERM).
``--no-window`` does everything but the window (prints reader1's worklist), for checks on machines without
a display.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

log = logging.getLogger(__name__)

DEMO_USER = "reader1"
DEMO_PROFILE = "demo"


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="start the demo cloud (Orthanc + worklist with demo studies) and open "
                                           "the workstation signed in as reader1")
    p.add_argument("--user", default=DEMO_USER, help="demo user to sign in as (reader1, reader2, qa)")
    p.add_argument("--no-window", action="store_true", help="start, sign in, print the worklist, stop")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the cloud and worklist")
    p.set_defaults(func=run_demo)


def choose_keyring() -> str:
    """'os' when a real keyring works here, else switch this process to the memory keyring and say 'memory'."""
    if os.environ.get("READROOM_KEYRING") == "memory":
        return "memory"
    try:
        import keyring

        backend = keyring.get_keyring()
        chain = list(getattr(backend, "backends", None) or [backend])   # ChainerBackend: writes go to [0]
        first = chain[0] if chain else backend
        name = (type(first).__module__ + "." + type(first).__name__).lower()
        if "fail" in name or "null" in name or "chainer" in name:
            raise RuntimeError("no keyring backend")
        if name.startswith("keyrings.alt"):
            # plaintext/encrypted files in the home folder, not an OS keyring: keep demo secrets off disk
            raise RuntimeError("only a file-based keyring")
        probe = "readroom-demo-probe"
        first.set_password("ReadRoom", probe, "1")
        ok = first.get_password("ReadRoom", probe) == "1"
        try:
            first.delete_password("ReadRoom", probe)
        except Exception as exc:  # noqa: BLE001 - the probe may already be gone
            log.debug("keyring probe not deleted: %s", type(exc).__name__)
        if not ok:
            raise RuntimeError("keyring did not keep a value")
        return "os"
    except Exception as exc:  # noqa: BLE001 - any keyring trouble: demo runs with memory secrets
        log.info("No usable OS keyring (%s); the demo uses a process-memory keyring.", type(exc).__name__)
        os.environ["READROOM_KEYRING"] = "memory"
        return "memory"


def start_cloud(timeout: float):
    from cloud.launcher import CloudProcess
    from cloud_client import paths

    root = paths.home() or paths.data_dir()
    cloud = CloudProcess(root / "demo-cloud", seed_demo=True, start_timeout=timeout)
    print(f"Starting the reference cloud in {cloud.dir} (Orthanc + nginx + worklist, demo studies)…", flush=True)
    cloud.start()
    print(f"Cloud ready at {cloud.base_url}", flush=True)
    return cloud


def demo_profile(cloud, user: str):
    from cloud_client.profiles import ServerProfile

    return ServerProfile(name=DEMO_PROFILE, base_url=cloud.base_url, user=user)


def wait_for_worklist(session, timeout: float) -> list:
    """Poll the worklist until routing has assigned items to the user (the cloud routes stable studies)."""
    from cloud_client.worklist import WorklistClient

    client = WorklistClient(session.web, session.user)
    deadline = time.monotonic() + timeout
    items: list = []
    while time.monotonic() < deadline:
        items = client.my_items()
        if items:
            return items
        time.sleep(1.0)
    return items


def run_demo(args: argparse.Namespace) -> int:
    from app.cli_gui import NO_DISPLAY, have_display
    from app.session import sign_in

    if not args.no_window and not have_display():
        print(NO_DISPLAY + " Or use `readroom demo --no-window`.", file=sys.stderr)
        return 2

    kind = choose_keyring()
    if kind == "memory":
        print("No OS keyring found: this demo keeps its secrets in memory only.", flush=True)
    cloud = start_cloud(args.timeout)
    try:
        user = args.user
        password = cloud.users.get(user, user)
        session = sign_in(demo_profile(cloud, user), password)
        items = wait_for_worklist(session, args.timeout)
        print(f"Signed in as {user}; {len(items)} studies on the worklist.", flush=True)
        if args.no_window:
            for it in items:
                print(f"  {'STAT' if it.is_stat else 'ROUTINE':8} {it.modality:3} {it.body_part:10} "
                      f"{it.study_description}")
            session.close()
            return 0 if items else 1
        return _run_window(session)
    finally:
        print("Stopping the reference cloud…", flush=True)
        cloud.stop()


def _run_window(session) -> int:
    from PySide6.QtCore import QTimer

    from .cli_gui import application, install_error_hook, open_workstation

    app = application()
    install_error_hook()
    window = open_workstation(session)

    def _quit(*_a):
        window.close()
        app.quit()

    previous = {s: signal.signal(s, _quit) for s in (signal.SIGINT, signal.SIGTERM)}
    wake = QTimer()
    wake.timeout.connect(lambda: None)     # lets Python run its signal handlers while Qt waits
    wake.start(300)
    try:
        rc = app.exec()
    finally:
        wake.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        window.ws.close()
    return int(rc)


if __name__ == "__main__":  # pragma: no cover
    from app.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
