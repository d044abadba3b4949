"""Transport security: https always verified (custom CA bundle honoured, never switched off), bearer tokens."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_client.errors import ArchiveUnavailable, AuthError
from cloud_client.profiles import ServerProfile
from cloud_client.session import DicomWebSession


def _ca_and_server_cert(tmp_path):
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ReadRoom Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / "server.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_pem, chain


@pytest.fixture
def https_server(tmp_path):
    ca_pem, chain = _ca_and_server_cert(tmp_path)
    seen: list[str] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            auth = self.headers.get("Authorization", "")
            seen.append(auth)
            ok = auth == "Bearer good-token"
            data = json.dumps([] if ok else {}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/dicom-web", ca_pem, seen
    httpd.shutdown()
    httpd.server_close()


def test_unknown_certificate_is_refused_with_clear_words(https_server):
    url, _, seen = https_server
    s = DicomWebSession(ServerProfile("t", url, "u", auth_kind="bearer", connect_timeout_s=2), "good-token")
    with pytest.raises(ArchiveUnavailable, match="certificate could not be verified"):
        s.qido_studies()
    s.http.verify = False  # even if someone switches verification off, the adapter puts it back
    with pytest.raises(ArchiveUnavailable, match="certificate could not be verified"):
        s.qido_studies()
    assert seen == []  # the token never left the client


def test_custom_ca_bundle_and_bearer_token(https_server):
    url, ca_pem, seen = https_server
    s = DicomWebSession(ServerProfile("t", url, "u", auth_kind="bearer", ca_bundle=str(ca_pem)), "good-token")
    assert s.qido_studies() == []
    assert seen[-1] == "Bearer good-token"
    bad = DicomWebSession(ServerProfile("t", url, "u", auth_kind="bearer", ca_bundle=str(ca_pem)), "expired")
    with pytest.raises(AuthError, match="Sign in again"):
        bad.qido_studies()


def test_ca_bundle_from_the_environment_is_honoured(https_server, monkeypatch):
    """REQUESTS_CA_BUNDLE (a clinic's IT may set it system-wide) still verifies the archive when the profile names
    no CA bundle: the session reads the environment once, when it is made."""
    url, ca_pem, seen = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_pem))
    s = DicomWebSession(ServerProfile("t", url, "u", auth_kind="bearer"), "good-token")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert s.qido_studies() == [] and seen[-1] == "Bearer good-token"
    assert s.http.trust_env is False  # not read again per request


def test_proxy_from_the_environment_is_used_and_no_proxy_is_honoured(monkeypatch):
    """HTTP(S)_PROXY from the environment carries the requests (read once per session); NO_PROXY exempts a host."""
    from http.server import BaseHTTPRequestHandler

    from tests.fixtures.http import LocalServer

    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            seen.append(self.path)  # a proxy is sent the absolute URL
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

    proxy = LocalServer()
    proxy.serve(Proxy)
    try:
        archive = "http://archive.clinic.invalid/dicom-web"
        profile = ServerProfile("t", archive, "u", allow_insecure_http=True, connect_timeout_s=2)
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.root)
        monkeypatch.setenv("http_proxy", proxy.root)
        s = DicomWebSession(profile, "pw")
        assert s.qido_studies() == []
        assert seen == ["http://archive.clinic.invalid/dicom-web/studies"]
        monkeypatch.setenv("NO_PROXY", "archive.clinic.invalid")
        monkeypatch.setenv("no_proxy", "archive.clinic.invalid")
        direct = DicomWebSession(profile, "pw")
        with pytest.raises(ArchiveUnavailable):  # straight to the (unresolvable) host, not through the proxy
            direct.qido_studies()
        assert len(seen) == 1
    finally:
        proxy.close()
