"""The ``readroom-cloud start`` process: brings up Orthanc, the worklist service and nginx, and stops them.

Owns the lifecycle of the reference cloud: port checks, internal service credentials (random per start,
files 0600 under DIR/run), generated configs (cloud.deploy), starting the three children in order and waiting
until each answers, the small Basic-auth endpoint nginx consults before passing a request to Orthanc
(so Orthanc itself only knows an internal account and users' passwords stay hashed), seeding the demo
studies through STOW-RS as the clinic, printing ``ready <base url>``, and a clean stop on SIGTERM/SIGINT.
Each child's pid and command line go to DIR/run/<name>.json so cloud.launcher can kill and restart one
for fault tests.
"""
from __future__ import annotations

import base64
import dataclasses
import http.server
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from cloud.auth import REALM, Authenticator, basic_header
from cloud.config import CloudConfig
from cloud.deploy import (
    AE_TITLE,
    NGINX_BIN,
    ORTHANC_BIN,
    Layout,
    find_binary,
    write_nginx_config,
    write_orthanc_config,
    write_private,
)

log = logging.getLogger("readroom.cloud")
INTERNAL_USER = "readroom-service"
REPO_ROOT = Path(__file__).resolve().parents[1]


class CloudStartError(RuntimeError):
    """The cloud could not start; the message says what to fix."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _pdeathsig():  # children die with the process that started them, even on SIGKILL
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def spawn(name: str, argv: list[str], run_dir: Path, log_path: Path, env: dict | None = None,
          die_with_parent: bool = True) -> subprocess.Popen:
    """Start a child with its output in ``log_path`` and record pid + argv in run_dir/<name>.json.
    ``die_with_parent`` (PR_SET_PDEATHSIG) is tied to the calling *thread*: only use it from a long-lived one."""
    with open(log_path, "ab") as logf:
        # preexec_fn only calls prctl (async-signal-safe enough; no locks taken)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True,
                                preexec_fn=_pdeathsig if die_with_parent else None)  # noqa: PLW1509
    write_private(run_dir / f"{name}.json", json.dumps({"pid": proc.pid, "argv": argv, "log": str(log_path),
                                                         "env": env}))
    return proc


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log_path=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log_path and Path(log_path).exists():
                tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-15:])
            raise CloudStartError(f"{what} exited during start (code {proc.returncode}). Log {log_path}:\n{tail}")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise CloudStartError(f"{what} did not answer within {timeout:.0f} s (log: {log_path})")


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    authenticator: Authenticator = None  # set on a subclass
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        ok = self.authenticator.user_for(self.headers.get("Authorization")) is not None
        self.send_response(200 if ok else 401)
        if not ok:
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # no request logging (headers may carry credentials)
        pass


@dataclasses.dataclass
class Ports:
    http: int
    dicom: int
    orthanc: int
    worklist: int
    auth: int


class Supervisor:
    def __init__(self, root: Path, http_port: int, dicom_port: int | None, config: CloudConfig,
                 seed_demo: bool = False, out=sys.stdout):
        self.layout = Layout(Path(root).resolve())
        self.config = config
        self.seed_demo = seed_demo
        self.out = out
        self.procs: dict[str, subprocess.Popen] = {}
        self.requested = (http_port, dicom_port)
        self.internal_password = secrets.token_urlsafe(24)
        self.ports: Ports | None = None
        self._auth_server: http.server.ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self.seeded: list = []

    @property
    def base_url(self) -> str:
        scheme = "https" if self.config.tls_certificate else "http"
        return f"{scheme}://127.0.0.1:{self.ports.http}/dicom-web"

    # ---------------------------------------------------------------- start
    def start(self) -> None:
        orthanc_bin = find_binary(ORTHANC_BIN, "Orthanc")
        nginx_bin = find_binary(NGINX_BIN, "nginx")
        http_port, dicom_port = self.requested
        dicom_port = dicom_port or http_port + 1
        for p, what in ((http_port, "--http-port"), (dicom_port, "--dicom-port")):
            if not port_is_free(p):
                raise CloudStartError(f"port {p} ({what}) on 127.0.0.1 is already in use: choose another")
        self.ports = Ports(http_port, dicom_port, free_port(), free_port(), 0)
        lay = self.layout
        lay.make()
        self._start_auth_endpoint()
        orthanc_users = {INTERNAL_USER: self.internal_password}
        if self.config.demo:   # demo passwords are public (= user name); handy for inspecting Orthanc directly
            orthanc_users.update({u: u for u in self.config.users})
        write_orthanc_config(lay, self.config, self.ports.orthanc, dicom_port, f"127.0.0.1:{http_port}",
                             orthanc_users)
        runtime = {"worklist_port": self.ports.worklist, "orthanc_url": f"http://127.0.0.1:{self.ports.orthanc}",
                   "orthanc_port": self.ports.orthanc, "http_port": http_port, "dicom_port": dicom_port,
                   "ae_title": AE_TITLE, "base_url": self.base_url, "internal_user": INTERNAL_USER,
                   "internal_password": self.internal_password,
                   "config": str(self.config.source) if self.config.source else None,
                   "supervisor_pid": os.getpid()}
        write_private(lay.run / "runtime.json", json.dumps(runtime, indent=2))
        orthanc_auth = (INTERNAL_USER, self.internal_password)

        log_o = lay.logs / "orthanc.log"
        self.procs["orthanc"] = spawn("orthanc", [orthanc_bin, str(lay.orthanc_config_dir)], lay.run, log_o)
        wait_until(lambda: requests.get(f"{runtime['orthanc_url']}/system", auth=orthanc_auth, timeout=2).ok,
                   60, "Orthanc", self.procs["orthanc"], log_o)

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        log_w = lay.logs / "worklist.log"
        self.procs["worklist"] = spawn("worklist", [sys.executable, "-m", "cloud.service", "--dir", str(lay.root)],
                                       lay.run, log_w, env)
        wait_until(lambda: requests.get(f"http://127.0.0.1:{self.ports.worklist}/_health", timeout=2).ok,
                   60, "the worklist service", self.procs["worklist"], log_w)

        conf = write_nginx_config(lay, self.config, http_port, self.ports.orthanc, self.ports.worklist,
                                  self.ports.auth, basic_header(*orthanc_auth))
        log_n = lay.logs / "nginx.log"
        self.procs["nginx"] = spawn("nginx", [nginx_bin, "-p", str(lay.nginx), "-c", str(conf), "-g", "daemon off;"],
                                    lay.run, log_n)
        # the health check only asks "is nginx up"; the certificate is the operator's (may be CA-issued
        # for another host name), so it is not verified here
        wait_until(lambda: _healthz(self.base_url.replace("/dicom-web", "/healthz")), 30, "nginx",
                   self.procs["nginx"], log_n)
        if self.seed_demo:
            self._seed()
        print(f"ready {self.base_url}", file=self.out, flush=True)

    def _start_auth_endpoint(self) -> None:
        handler = type("AuthHandler", (_AuthHandler,), {
            "authenticator": Authenticator(self.config.users, {INTERNAL_USER: self.internal_password})})
        self._auth_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._auth_server.daemon_threads = True
        self.ports.auth = self._auth_server.server_address[1]
        threading.Thread(target=self._auth_server.serve_forever, name="auth", daemon=True).start()

    # ---------------------------------------------------------------- demo seeding
    def _seed(self) -> None:
        try:
            from cloud.demo_data import write_demo_studies
        except ImportError:
            print("note: cloud.demo_data is not available: nothing seeded", file=sys.stderr, flush=True)
            return
        from cloud.seed import seed_studies

        demo_dir = self.layout.root / "demo"
        studies = write_demo_studies(demo_dir)
        user = "clinic"
        verify = str(self.config.tls_certificate) if self.config.tls_certificate else True
        seed_studies(self.base_url, (user, user), studies, verify=verify)
        self.seeded = studies
        write_private(self.layout.run / "seeded.json", json.dumps([_study_json(s) for s in studies], indent=2))
        import datetime as dt

        from cloud.routing import StudyFacts, is_reading_task

        now = dt.datetime.now(dt.UTC)
        tasks = [s.study_uid for s in studies
                 if is_reading_task(StudyFacts(s.study_uid, frozenset({s.modality}), frozenset(), "", "",
                                               s.study_date), self.config, now)]
        self._wait_routed(tasks)

    def _wait_routed(self, study_uids: list[str], timeout: float = 120) -> None:
        """Wait until the worklist made a workitem for each seeded study (StableAge + feed delay)."""
        from cloud.ups import WorkitemStore

        store = WorkitemStore(self.layout.worklist / "worklist.sqlite")
        try:
            deadline = time.monotonic() + timeout + self.config.stable_age_s
            while time.monotonic() < deadline:
                if all(store.routed_workitem(u) for u in study_uids):
                    return
                time.sleep(0.25)
            print("warning: not every seeded study has a workitem yet (see logs/worklist.log)", file=sys.stderr)
        finally:
            store.close()

    # ---------------------------------------------------------------- run / stop
    def serve_forever(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        reported = set()
        parent = os.getppid()
        exit_with_parent = os.environ.get("READROOM_CLOUD_EXIT_WITH_PARENT") == "1"
        while not self._stop.wait(0.5):
            if exit_with_parent and os.getppid() != parent:
                _say("the process that started the cloud is gone: stopping")
                break
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None and name not in reported:
                    reported.add(name)
                    _say(f"warning: {name} exited (code {proc.returncode})")
                elif proc.poll() is None:
                    reported.discard(name)
            self._adopt_restarted(reported)
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
        self.stop()
        return 0

    def _adopt_restarted(self, reported: set) -> None:
        # The launcher may restart a child for fault tests; it rewrites run/<name>.json with the new pid.
        for name in ("orthanc", "worklist", "nginx"):
            if name in reported:
                pid = _recorded_pid(self.layout.run, name)
                if pid and _alive(pid):
                    reported.discard(name)

    def stop(self) -> None:
        for name in ("nginx", "worklist", "orthanc"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            # a child restarted by the launcher is not ours to wait for, but we started the cloud: stop it
            pid = _recorded_pid(self.layout.run, name)
            if pid and (proc is None or pid != proc.pid) and _alive(pid):
                _terminate_pid(pid)
        if self._auth_server:
            self._auth_server.shutdown()
            self._auth_server.server_close()


def _say(msg: str) -> None:
    """A status line on stderr; never fatal (whoever read our output may be gone)."""
    try:
        print(msg, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _healthz(url: str) -> bool:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return requests.get(url, timeout=2, verify=False).ok


def _recorded_pid(run_dir: Path, name: str) -> int | None:
    try:
        return int(json.loads((run_dir / f"{name}.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _terminate_pid(pid: int, timeout: float = 15) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _study_json(s) -> dict:
    d = dataclasses.asdict(s) if dataclasses.is_dataclass(s) else dict(s)
    return json.loads(json.dumps(d, default=str))


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()
