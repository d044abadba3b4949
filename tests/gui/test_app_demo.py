"""`readroom demo` end to end: it starts the seeded reference cloud under READROOM_HOME/demo-cloud, signs in as
reader1, opens the workstation, and stops the cloud cleanly when told to stop (SIGTERM, as closing the window
or Ctrl+C would)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _cloud_pids(home: Path) -> list[int]:
    """Processes whose command line names the demo cloud's folder (Orthanc, nginx, worklist service)."""
    pids = []
    needle = str(home / "demo-cloud").encode()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def test_demo_opens_workstation_and_stops_cloud_on_sigterm(tmp_path):
    from tests.fixtures.cloud import _require_servers

    _require_servers()
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (run under xvfb-run)")
    home = tmp_path / "demo-home"
    env = dict(os.environ, READROOM_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("READROOM_KEYRING", None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "demo"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 400
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("Signed in as reader1"):
                break
            assert time.monotonic() < deadline, "\n".join(lines)
        assert any(line.startswith("Signed in as reader1") for line in lines), "\n".join(lines)
        n_items = int(lines[-1].split(";")[1].split()[0])
        assert n_items > 0
        assert (home / "demo-cloud").is_dir()
        assert _cloud_pids(home), "the cloud should be running while the window is open"
        time.sleep(3)                       # the window is up and loading its worklist
        assert proc.poll() is None, "\n".join(lines)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        lines += rest.splitlines()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, "\n".join(lines)
    assert any("Stopping the reference cloud" in line for line in lines)
    deadline = time.monotonic() + 20
    while _cloud_pids(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _cloud_pids(home), "cloud processes left behind"
    assert "Traceback" not in "\n".join(lines)
