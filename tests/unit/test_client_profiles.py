"""Server profiles: storage without secrets, password sources, transport policy."""
from __future__ import annotations

import json
import logging

import pytest

from cloud_client import paths
from cloud_client.errors import InsecureConnectionError
from cloud_client.profiles import (
    ServerProfile,
    check_transport,
    delete_profile,
    get_profile,
    load_profiles,
    resolve_password,
    save_profile,
    store_password,
)


def test_profile_round_trip_and_no_secret_on_disk(monkeypatch):
    monkeypatch.delenv("READROOM_PASSWORD", raising=False)
    p = ServerProfile("night", "https://pacs.example.org/dicom-web/", "reader1", parallel_connections=6,
                      transfer_syntaxes=["1.2.840.10008.1.2.4.90", "*"])
    save_profile(p)
    store_password(p, "s3cret-pw")
    loaded = get_profile("night")
    assert loaded == p
    assert loaded.base_url == "https://pacs.example.org/dicom-web"
    assert resolve_password(loaded) == "s3cret-pw"
    for f in paths.config_dir().rglob("*"):
        if f.is_file():
            assert b"s3cret-pw" not in f.read_bytes()
    data = json.loads((paths.config_dir() / "profiles.json").read_text())
    assert "password" not in json.dumps(data)
    delete_profile("night")
    assert load_profiles() == {}
    with pytest.raises(KeyError, match="No server profile"):
        get_profile("night")


def test_password_precedence(monkeypatch):
    p = ServerProfile("a", "http://127.0.0.1:8042/dicom-web", "u")
    store_password(p, "from-keyring")
    monkeypatch.setenv("READROOM_PASSWORD", "from-env")
    assert resolve_password(p, "explicit") == "explicit"
    assert resolve_password(p) == "from-env"
    monkeypatch.delenv("READROOM_PASSWORD")
    assert resolve_password(p) == "from-keyring"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8042/dicom-web", "http://localhost/dicom-web",
                                 "http://[::1]:80/x", "https://pacs.example.org/dicom-web"])
def test_transport_allowed(url):
    check_transport(ServerProfile("a", url, "u"))


def test_plain_http_refused_unless_allowed(caplog):
    p = ServerProfile("a", "http://pacs.example.org/dicom-web", "u")
    with pytest.raises(InsecureConnectionError, match="unencrypted"):
        check_transport(p)
    p.allow_insecure_http = True
    with caplog.at_level(logging.WARNING):
        check_transport(p)
    assert "unencrypted" in caplog.text


def test_credentials_in_url_and_bad_values_refused():
    with pytest.raises(InsecureConnectionError):
        check_transport(ServerProfile("a", "https://u:pw@pacs.example.org/dicom-web", "u"))
    with pytest.raises(ValueError):
        ServerProfile("a", "https://x", "u", auth_kind="digest")
    with pytest.raises(ValueError):
        ServerProfile("a", "https://x", "u", transfer_syntaxes=["1.2.3.4"])
