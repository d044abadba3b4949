"""readroom-cloud's command line and generated server configs (no servers started)."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from cloud.cli import main
from cloud.config import ConfigError, load_config, parse_config, verify_password
from cloud.deploy import Layout, write_nginx_config, write_orthanc_config


def test_hash_password_round_trip():
    out = subprocess.run([sys.executable, "-m", "cloud.cli", "hash-password", "--stdin"], input="s3cret\n",
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("scrypt$") and "s3cret" not in out
    assert verify_password("s3cret", out) and not verify_password("s3cret ", out)
    conf = parse_config({"users": {"dr": {"password_hash": out}}})
    assert conf.users["dr"].is_reader


def test_start_without_users_explains(tmp_path, capsys):
    assert main(["start", "--dir", str(tmp_path), "--http-port", "18999"]) == 2
    assert "--config" in capsys.readouterr().err


def test_start_with_a_broken_config_names_the_problem(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text('{"users": {"x": {"password_hash": "plain"}}}')
    assert main(["start", "--dir", str(tmp_path / "d"), "--http-port", "18999", "--config", str(bad)]) == 2
    assert "users.x" in capsys.readouterr().err
    bad.write_text("{oops")
    with pytest.raises(ConfigError, match="line 1"):
        load_config(bad)


def test_start_refuses_a_busy_port(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = main(["start", "--dir", str(tmp_path), "--http-port", str(port), "--seed-demo"])
    assert code == 1
    assert f"port {port}" in capsys.readouterr().err


def test_generated_configs(tmp_path):
    conf = parse_config({"users": {}, "orthanc": {"stable_age_s": 3, "accept_any_calling_ae": False,
                                                  "modalities": {"ct1": {"aet": "CT1", "port": 11112}}}})
    lay = Layout(tmp_path)
    lay.make()
    d = write_orthanc_config(lay, conf, 9001, 9002, "127.0.0.1:9000", {"svc": "pw"})
    o = json.loads((d / "orthanc.json").read_text())
    assert o["StableAge"] == 3 and o["DicomPort"] == 9002 and o["DicomAet"] == "READROOM"
    assert o["AuthenticationEnabled"] and not o["RemoteAccessAllowed"]
    assert o["DicomModalities"] == {"ct1": ["CT1", "127.0.0.1", 11112]} and o["DicomAlwaysAllowStore"] is False
    assert o["StorageDirectory"].startswith(str(tmp_path))
    cred = d / "credentials.json"
    assert stat.S_IMODE(os.stat(cred).st_mode) == 0o600
    assert json.loads(cred.read_text()) == {"RegisteredUsers": {"svc": "pw"}}
    n = write_nginx_config(lay, conf, 9000, 9001, 9003, 9004, "Basic c3ZjOnB3").read_text()
    assert "listen 127.0.0.1:9000;" in n and "ssl" not in n.split("listen", 1)[1].split(";")[0]
    assert "location ^~ /dicom-web/workitems" in n and "server 127.0.0.1:9003" in n
    assert "auth_request /_readroom_auth" in n and "client_max_body_size 0" in n
    assert "proxy_buffering off" in n and "$connection_upgrade" in n
    assert str(tmp_path) in n.split("client_body_temp_path", 1)[1].split(";")[0]
    for line in n.splitlines():   # nothing written outside DIR
        if line.strip().startswith(("pid", "error_log", "access_log")) or "_temp_path" in line:
            assert str(tmp_path) in line, line


def test_config_refuses_closed_dicom_port_without_modalities():
    with pytest.raises(ConfigError, match="modalities"):
        parse_config({"orthanc": {"accept_any_calling_ae": False}})
