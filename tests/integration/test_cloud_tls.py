"""The front door with TLS: nginx terminates HTTPS with the configured certificate; DICOMweb and UPS-RS work
over it, plain HTTP on that port is refused, and Orthanc's QIDO answers carry https retrieve URLs."""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl

import pytest
import requests

from tests.fixtures.cloud import wait_until

pytestmark = pytest.mark.integration


def _self_signed(dirpath):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "readroom-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (dirpath / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (dirpath / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return dirpath / "cert.pem"


def test_tls_front_door(tmp_path, real_data):
    from cloud.config import DEMO_CONFIG
    from cloud.launcher import CloudProcess
    from tests.fixtures.cloud import _require_servers

    _require_servers()
    cert = _self_signed(tmp_path)
    conf = json.loads(DEMO_CONFIG.read_text())
    conf["tls"] = {"certificate": "cert.pem", "key": "key.pem"}          # relative to the config file
    (tmp_path / "cloud.json").write_text(json.dumps(conf))
    c = CloudProcess(tmp_path / "cloud", config=tmp_path / "cloud.json")
    c.users = {"reader1": "reader1", "clinic": "clinic"}
    c.start()
    try:
        assert c.base_url.startswith("https://127.0.0.1:")
        s = requests.Session()
        s.verify = str(cert)
        s.trust_env = False          # REQUESTS_CA_BUNDLE in the environment would override ``verify``
        s.auth = ("reader1", "reader1")
        assert s.get(f"{c.base_url}/workitems", timeout=10).status_code == 200
        plain = c.base_url.replace("https://", "http://")
        assert requests.get(f"{plain}/workitems", auth=("reader1", "reader1"), timeout=10).status_code == 400
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{c.base_url}/workitems", auth=("reader1", "reader1"), timeout=10)   # untrusted cert
        files = sorted((real_data / "11_dx_chest_mono1_small").rglob("*.dcm"))
        from cloud.seed import store_files

        store_files(c.base_url, ("clinic", "clinic"), files, verify=str(cert))
        studies = s.get(f"{c.base_url}/studies", timeout=10).json()
        assert studies and studies[0]["00081190"]["Value"][0].startswith(c.base_url + "/studies/")
        import pydicom

        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        import time

        deadline, items = time.monotonic() + 60, []
        while not items and time.monotonic() < deadline:
            items = s.get(f"{c.base_url}/workitems", params={"StudyInstanceUID": study_uid}, timeout=10).json()
            time.sleep(0.3)
        assert items and items[0]["00404021"]["Value"][0]["00081190"]["Value"][0].startswith("https://")
        from websockets.sync.client import connect

        ctx = ssl.create_default_context(cafile=str(cert))
        hdr = {"Authorization": "Basic " + base64.b64encode(b"reader1:reader1").decode()}
        with connect(c.base_url.replace("https://", "wss://") + "/subscribers/TLSWS", ssl=ctx,
                     additional_headers=hdr, open_timeout=10) as ws:
            ws.ping().wait(5)
        # the workstation's event listener over wss, trusting the profile's CA bundle
        from cloud_client.events import CONNECTED, WorklistEvents
        from cloud_client.profiles import ServerProfile
        from cloud_client.session import DicomWebSession

        with DicomWebSession(ServerProfile("tls", c.base_url, "reader1", ca_bundle=str(cert)),
                             password="reader1") as session:
            events = WorklistEvents(session, lambda _m: None)
            assert events.channel_url().startswith("wss://127.0.0.1:")
            events.start()
            assert wait_until(lambda: events.state == CONNECTED)
            events.stop()
    finally:
        c.stop()
