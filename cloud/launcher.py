"""``CloudProcess``: start and stop a reference cloud from Python (tests, benches, ``readroom demo``).

Owns running ``readroom-cloud start`` as a subprocess, waiting for its ``ready`` line, exposing its URLs,
ports and demo users, and the fault-injection helpers for tests: kill/restart Orthanc or the worklist service
with the same storage (using the pid and command line the supervisor recorded under DIR/run).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from cloud.config import DEMO_CONFIG
from cloud.deploy import AE_TITLE
from cloud.supervisor import _alive, _recorded_pid, free_port, port_is_free, spawn, wait_until

DEMO_USERS = {"reader1": "reader1", "reader2": "reader2", "qa": "qa", "clinic": "clinic"}
REPO_ROOT = Path(__file__).resolve().parents[1]


class CloudError(RuntimeError):
    """The cloud did not start or a control action failed; the message includes the log tail."""


class CloudProcess:
    def __init__(self, dir, http_port: int | None = None, dicom_port: int | None = None, seed_demo: bool = False,
                 config: Path | str | None = None, start_timeout: float = 600):
        self.dir = Path(dir).resolve()
        self._auto_ports = http_port is None and dicom_port is None
        self.http_port = http_port or free_port()
        if dicom_port is None:
            dicom_port = self.http_port + 1 if port_is_free(self.http_port + 1) else free_port()
        self.dicom_port = dicom_port
        self.seed_demo = seed_demo
        self.config = Path(config) if config else None
        self.start_timeout = start_timeout
        self.ae_title = AE_TITLE
        self.users = dict(DEMO_USERS) if self.config is None else {}
        self.seeded: list = []
        self.proc: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._restarted: dict[str, subprocess.Popen] = {}

    # ---------------------------------------------------------------- URLs
    @property
    def runtime(self) -> dict:
        return json.loads((self.dir / "run" / "runtime.json").read_text())

    @property
    def base_url(self) -> str:
        return self.runtime["base_url"] if self.proc else f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def orthanc_url(self) -> str:
        return self.runtime["orthanc_url"]

    @property
    def orthanc_auth(self) -> tuple[str, str]:
        """Credentials valid at Orthanc's own REST port (an internal account made at each start)."""
        rt = self.runtime
        return rt["internal_user"], rt["internal_password"]

    @property
    def outbound_dir(self) -> Path:
        return self.dir / "outbound"

    def auth(self, user: str = "reader1") -> tuple[str, str]:
        return user, self.users[user]

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> CloudProcess:
        """Start and wait for "ready". With ports chosen here, a port taken between choosing and binding (another
        process's outgoing connection can take any free ephemeral port) is retried on new ports."""
        for attempt in range(3):
            try:
                return self._start_once()
            except CloudError as exc:
                if not (self._auto_ports and "already in use" in str(exc)) or attempt == 2:
                    raise
                self._lines.clear()
                self.http_port = free_port()
                self.dicom_port = self.http_port + 1 if port_is_free(self.http_port + 1) else free_port()
        raise AssertionError("unreachable")

    def _start_once(self) -> CloudProcess:
        argv = [sys.executable, "-m", "cloud.cli", "start", "--dir", str(self.dir), "--http-port",
                str(self.http_port), "--dicom-port", str(self.dicom_port)]
        if self.seed_demo:
            argv.append("--seed-demo")
        argv += ["--config", str(self.config or DEMO_CONFIG)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["READROOM_CLOUD_EXIT_WITH_PARENT"] = "1"      # no orphaned clouds if this process is killed
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
        ready = threading.Event()

        def reader():
            for line in self.proc.stdout:
                self._lines.append(line.rstrip("\n"))
                if line.startswith("ready "):
                    ready.set()
            ready.set()

        threading.Thread(target=reader, daemon=True).start()
        if not ready.wait(self.start_timeout) or self.proc.poll() is not None:
            out = "\n".join(self._lines[-20:])
            self.stop()
            raise CloudError(f"reference cloud did not start:\n{out}")
        seeded = self.dir / "run" / "seeded.json"
        if self.seed_demo and seeded.exists():
            self.seeded = _load_seeded(json.loads(seeded.read_text()))
        return self

    def stop(self) -> None:
        for proc in self._restarted.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self._restarted.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def output(self) -> str:
        return "\n".join(self._lines)

    # ---------------------------------------------------------------- fault injection
    def _kill(self, name: str, sig=signal.SIGKILL) -> None:
        pid = _recorded_pid(self.dir / "run", name)
        if pid is None or not _alive(pid):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if name in self._restarted:
            self._restarted.pop(name).wait(timeout=5)

    def _restart(self, name: str, ready_check) -> None:
        run = self.dir / "run"
        rec = json.loads((run / f"{name}.json").read_text())
        if _alive(rec["pid"]):
            return
        # not tied to this thread's life (a test may restart from a short-lived thread); stop() ends it
        proc = spawn(name, rec["argv"], run, Path(rec["log"]), rec.get("env"), die_with_parent=False)
        self._restarted[name] = proc
        wait_until(ready_check, 60, name, proc, rec["log"])

    def kill_orthanc(self) -> None:
        self._kill("orthanc")

    def start_orthanc(self) -> None:
        self._restart("orthanc", lambda: requests.get(f"{self.orthanc_url}/system", auth=self.orthanc_auth,
                                                      timeout=2).ok)

    def stop_worklist(self) -> None:
        self._kill("worklist", signal.SIGTERM)

    def kill_worklist(self) -> None:
        self._kill("worklist")

    def start_worklist(self) -> None:
        port = self.runtime["worklist_port"]
        self._restart("worklist", lambda: requests.get(f"http://127.0.0.1:{port}/_health", timeout=2).ok)


def _load_seeded(items: list[dict]) -> list:
    try:
        from cloud.demo_data import DemoStudy
    except ImportError:
        return items
    out = []
    for d in items:
        d = dict(d)
        d["files"] = [Path(f) for f in d.get("files", [])]
        try:
            out.append(DemoStudy(**d))
        except TypeError:
            out.append(d)
    return out
