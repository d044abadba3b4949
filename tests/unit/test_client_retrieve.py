"""Retrieval logic against a small in-process DICOMweb server (no Orthanc): priority slice, resume after a
dropped stream, no refetch of cached instances, cancellation, transfer-syntax fallback, error mapping.
The same behaviours against the real archive are in tests/integration/test_client_cloud.py."""
from __future__ import annotations

import io
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from cloud_client.audit import AuditTrail
from cloud_client.cache import InstanceCache
from cloud_client.errors import ArchiveUnavailable, AuthError, FetchCancelled, NotFound
from cloud_client.profiles import ServerProfile
from cloud_client.retrieve import StudyFetcher
from cloud_client.session import DicomWebSession
from tests.fixtures.http import LocalServer
from tests.unit.test_client_cache import make_instance


class FakeArchive(LocalServer):
    """A tiny WADO-RS/QIDO-RS server over a fixed study, with fault knobs."""

    def __init__(self, series_sizes=(40, 6)) -> None:
        self.study = generate_uid()
        self.series: dict[str, list[pydicom.Dataset]] = {}
        for size in series_sizes:
            se = generate_uid()
            self.series[se] = [make_instance(self.study, se, n + 1, rows=16) for n in range(size)]
        self.blobs = {}
        for dss in self.series.values():
            for ds in dss:
                buf = io.BytesIO()
                pydicom.dcmwrite(buf, ds, enforce_file_format=True)
                self.blobs[ds.SOPInstanceUID] = buf.getvalue()
        self.log: list[tuple[str, str]] = []  # (kind, uid)
        self.drop_after: int | None = None  # close a series stream after this many parts (once)
        self.force_status: int | None = None
        self.refuse: set[str] = set()  # transfer syntaxes answered with 406
        self.gate: threading.Event | None = None  # series streams wait on it after their first part
        archive = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                archive._handle(self)

        self.serve(Handler)
        self.httpd.handle_error = lambda request, address: None  # clients hanging up mid-stream is expected
        self.base_url = f"{self.root}/dicom-web"

    def all_sops(self):
        return [ds.SOPInstanceUID for dss in self.series.values() for ds in dss]

    def _json(self, h, obj, status=200):
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/dicom+json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h):
        url = urlsplit(h.path)
        q = parse_qs(url.query)
        path = url.path.removeprefix("/dicom-web/")
        if self.force_status:
            return self._json(h, {}, self.force_status)
        if h.headers.get("Authorization") is None:
            return self._json(h, {}, 401)
        m = re.fullmatch(r"studies/([\d.]+)/series", path)
        if m:
            self.log.append(("qido-series", ""))
            return self._json(h, [{"0020000E": {"vr": "UI", "Value": [se]},
                                   "00201209": {"vr": "IS", "Value": [len(d)]}} for se, d in self.series.items()])
        m = re.fullmatch(r"studies/([\d.]+)/series/([\d.]+)/instances", path)
        if m:
            dss = self.series[m.group(2)]
            if "InstanceNumber" in q:
                dss = [d for d in dss if str(d.InstanceNumber) == q["InstanceNumber"][0]]
            return self._json(h, [{"00080018": {"vr": "UI", "Value": [d.SOPInstanceUID]},
                                   "0020000E": {"vr": "UI", "Value": [m.group(2)]},
                                   "00200013": {"vr": "IS", "Value": [int(d.InstanceNumber)]}} for d in dss])
        m = re.fullmatch(r"studies/([\d.]+)/instances", path)
        if m:
            rows = [(se, d) for se, dss in self.series.items() for d in dss
                    if "SOPInstanceUID" not in q or d.SOPInstanceUID == q["SOPInstanceUID"][0]]
            return self._json(h, [{"00080018": {"vr": "UI", "Value": [d.SOPInstanceUID]},
                                   "0020000E": {"vr": "UI", "Value": [se]}} for se, d in rows])
        m = re.fullmatch(r"studies/([\d.]+)/metadata", path)
        if m:
            return self._json(h, [d.to_json_dict() for dss in self.series.values() for d in dss
                                  for _ in [d.pop("PixelData", None)] if False] or
                              [{"00080018": {"vr": "UI", "Value": [s]}} for s in self.all_sops()])
        m = re.fullmatch(r"studies/([\d.]+)/series/([\d.]+)(?:/instances/([\d.]+))?", path)
        if m:
            ts = re.search(r"transfer-syntax=([^;\s]+)", h.headers.get("Accept", ""))
            ts = ts.group(1) if ts else "none"
            if ts in self.refuse:
                return self._json(h, {}, 406)
            if m.group(3):
                sops = [m.group(3)]
                self.log.append(("instance", m.group(3)))
            else:
                sops = [d.SOPInstanceUID for d in self.series[m.group(2)]]
                self.log.append(("series", m.group(2)))
            boundary = "fake-boundary"
            h.send_response(200)
            h.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
            h.send_header("Connection", "close")
            h.end_headers()
            for n, sop in enumerate(sops):
                if not m.group(3) and self.drop_after is not None and n == self.drop_after:
                    self.drop_after = None
                    h.wfile.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
                    h.wfile.write(self.blobs[sop][:200])
                    h.wfile.flush()
                    h.close_connection = True
                    return
                body = self.blobs[sop]
                h.wfile.write(f"--{boundary}\r\nContent-Type: application/dicom\r\nContent-Length: "
                              f"{len(body)}\r\n\r\n".encode() + body + b"\r\n")
                h.wfile.flush()
                if n == 0 and self.gate is not None and not m.group(3):
                    self.gate.wait(5)
            h.wfile.write(f"--{boundary}--\r\n".encode())
            h.close_connection = True
            return
        return self._json(h, {}, 404)


@pytest.fixture
def archive():
    a = FakeArchive()
    yield a
    a.close()


def _session(archive, password="pw", **kw):
    return DicomWebSession(ServerProfile("fake", archive.base_url, "reader1", **kw), password)


def test_cold_fetch_is_complete_pixel_exact_and_priority_first(archive, tmp_path):
    cache = InstanceCache(tmp_path / "cache")
    seen, progress = [], []
    archive.gate = threading.Event()  # hold the streams after one part: the priority slice must still arrive
    delivered_first = threading.Event()

    def on_instance(sop, ds):
        seen.append(sop)
        if len(seen) == 2:
            delivered_first.set()

    fetcher = StudyFetcher(_session(archive), cache, audit=AuditTrail(tmp_path / "a.jsonl"))
    t = threading.Thread(target=lambda: progress.append(fetcher.fetch_study(
        archive.study, on_instance=on_instance, on_progress=progress.append)))
    t.start()
    assert delivered_first.wait(5)
    archive.gate.set()
    t.join(10)
    result = progress[-1]
    big = max(archive.series.values(), key=len)
    middle = big[len(big) // 2]
    assert result.priority_sop_uid == middle.SOPInstanceUID
    assert middle.SOPInstanceUID in seen[:3]  # ahead of the streams that were held after their first part
    assert sorted(seen) == sorted(archive.all_sops()) and len(seen) == len(set(seen))
    assert result.fetched == len(archive.all_sops()) and result.from_cache == 0 and result.complete
    for dss in archive.series.values():
        for ds in dss:
            assert np.array_equal(cache.get_dataset(ds.SOPInstanceUID).pixel_array, ds.pixel_array)
    bars = [p for p in progress[:-1]]
    assert bars[-1].instances_done == bars[-1].instances_total == len(archive.all_sops())
    assert bars[-1].bytes_done == result.bytes_fetched > 0
    assert [e.action for e in AuditTrail(tmp_path / "a.jsonl").events()] == ["retrieve-begin", "retrieve"]


def test_dropped_stream_resumes_without_refetching(archive, tmp_path):
    cache = InstanceCache(tmp_path / "cache")
    big_uid = max(archive.series, key=lambda s: len(archive.series[s]))
    archive.drop_after = 30  # the 40-slice series stream breaks after 30 parts
    fetcher = StudyFetcher(_session(archive), cache, audit=AuditTrail(tmp_path / "a.jsonl"), retry_for_s=10)
    result = fetcher.fetch_study(archive.study)
    assert result.complete and result.retries >= 1
    assert cache.cached_sop_uids(archive.study) == set(archive.all_sops())
    # after the drop only the 10 missing slices were asked for, one by one (few missing -> per instance)
    after = archive.log[archive.log.index(("series", big_uid)) + 1:]
    inst = [uid for kind, uid in after if kind == "instance"]
    big = [d.SOPInstanceUID for d in archive.series[big_uid]]
    prio = result.priority_sop_uid
    assert set(inst) - {prio} == set(big[30:]) - {prio}
    # a second fetch of a fully cached study asks for no pixel data at all
    archive.log.clear()
    again = fetcher.fetch_study(archive.study)
    assert again.fetched == 0 and again.from_cache == len(archive.all_sops())
    assert not [k for k, _ in archive.log if k in ("series", "instance")]


def test_cancel_stops_the_fetch(archive, tmp_path):
    cache = InstanceCache(tmp_path / "cache")
    cancel = threading.Event()
    archive.gate = threading.Event()
    fetcher = StudyFetcher(_session(archive), cache, audit=AuditTrail(tmp_path / "a.jsonl"))

    def on_instance(sop, ds):
        cancel.set()
        archive.gate.set()

    with pytest.raises(FetchCancelled):
        fetcher.fetch_study(archive.study, on_instance=on_instance, cancel=cancel)
    assert len(cache.cached_sop_uids(archive.study)) < len(archive.all_sops())
    assert AuditTrail(tmp_path / "a.jsonl").events()[-1].outcome == "failure"


def test_transfer_syntax_falls_back_in_profile_order(archive, tmp_path):
    archive.refuse = {"*"}
    cache = InstanceCache(tmp_path / "cache")
    s = _session(archive, transfer_syntaxes=["*", "1.2.840.10008.1.2.1"])
    result = StudyFetcher(s, cache, audit=AuditTrail(tmp_path / "a.jsonl")).fetch_study(archive.study)
    assert result.complete and result.transfer_syntax == "1.2.840.10008.1.2.1"


def test_http_errors_become_clear_outcomes(archive, tmp_path):
    cache = InstanceCache(tmp_path / "cache")
    with pytest.raises(AuthError, match="[Ss]ign in again"):
        DicomWebSession(ServerProfile("fake", archive.base_url, "reader1"), None).qido_studies() \
            if False else _session(archive, password=None).qido_series(archive.study)
    archive.force_status = 503
    fetcher = StudyFetcher(_session(archive), cache, audit=AuditTrail(tmp_path / "a.jsonl"), retry_for_s=0.3)
    with pytest.raises(ArchiveUnavailable) as exc:
        fetcher.fetch_study(archive.study)
    assert "cannot be reached" in str(exc.value)
    archive.force_status = 404
    with pytest.raises(NotFound):
        _session(archive).qido_series(archive.study)


def test_unreachable_server_and_timeouts(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.listen(1)  # accepts the connection, never answers
    try:
        sess = DicomWebSession(ServerProfile("x", f"http://127.0.0.1:{port}/dicom-web", "u", timeout_s=0.3,
                                             connect_timeout_s=0.3), "pw")
        with pytest.raises(ArchiveUnavailable):
            sess.qido_studies()
    finally:
        s.close()
    sess = DicomWebSession(ServerProfile("x", f"http://127.0.0.1:{port}/dicom-web", "u",
                                         connect_timeout_s=0.3), "pw")
    with pytest.raises(ArchiveUnavailable):
        sess.qido_studies()


def test_requested_first_instance_comes_first(archive, tmp_path):
    cache = InstanceCache(tmp_path / "cache")
    small = min(archive.series.values(), key=len)
    wanted = small[-1].SOPInstanceUID
    archive.gate = threading.Event()
    seen = []
    got_first = threading.Event()

    def on_instance(sop, ds):
        seen.append(sop)
        if sop == wanted:
            got_first.set()

    fetcher = StudyFetcher(_session(archive), cache, audit=AuditTrail(tmp_path / "a.jsonl"))
    t = threading.Thread(target=lambda: fetcher.fetch_study(archive.study, on_instance=on_instance, first=wanted))
    t.start()
    assert got_first.wait(5)  # while both series streams are held after their first part
    archive.gate.set()
    t.join(10)
    assert seen.index(wanted) <= 2 and len(seen) == len(archive.all_sops())


def test_a_failing_stream_stops_the_others(archive, tmp_path):
    """One series refused (auth revoked mid-fetch): the fetch ends promptly, the held stream is abandoned."""
    cache = InstanceCache(tmp_path / "cache")
    archive.gate = threading.Event()  # the big series stream stalls after its first part
    small_uid = min(archive.series, key=lambda s: len(archive.series[s]))
    real_handle = archive._handle

    def handle(h):
        if small_uid in h.path and "instances" not in h.path and "series/" in h.path:
            return archive._json(h, {}, 401)
        return real_handle(h)

    archive._handle = handle
    fetcher = StudyFetcher(_session(archive), cache, audit=AuditTrail(tmp_path / "a.jsonl"))
    t0 = time.monotonic()
    with pytest.raises(AuthError):
        fetcher.fetch_study(archive.study)
    archive.gate.set()
    assert time.monotonic() - t0 < 4  # not waiting for the stalled stream (held 5 s by the server)


def test_cancel_interrupts_a_stalled_stream(archive, tmp_path):
    cache = InstanceCache(tmp_path / "cache")
    archive.gate = threading.Event()  # streams stall after their first part (server holds them 5 s)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    fetcher = StudyFetcher(_session(archive), cache, audit=AuditTrail(tmp_path / "a.jsonl"))
    t0 = time.monotonic()
    with pytest.raises(FetchCancelled):
        fetcher.fetch_study(archive.study, cancel=cancel)
    assert time.monotonic() - t0 < 3
    archive.gate.set()


def test_damaged_instance_from_the_server_is_a_clear_message(archive, tmp_path, caplog):
    """A part that is not DICOM (server bug, disk error there): a worded CloudError for the reader, no parser
    text (which may quote the data) in the message or the log, the good instances stay cached."""
    from app.workers import user_message
    from cloud_client.retrieve import DamagedInstance

    bad = archive.all_sops()[3]
    archive.blobs[bad] = b"PatientName=SYNTHETIC^RETRIEVELEAK " + b"\x00" * 300
    cache = InstanceCache(tmp_path / "cache")
    fetcher = StudyFetcher(_session(archive), cache, audit=AuditTrail(tmp_path / "a.jsonl"), retry_for_s=0.3)
    with caplog.at_level("DEBUG"), pytest.raises(DamagedInstance) as exc:
        fetcher.fetch_study(archive.study, on_instance=lambda sop, ds: None)
    msg = user_message(exc.value)
    assert "cannot read" in msg and "RETRIEVELEAK" not in msg and "Traceback" not in msg
    assert "RETRIEVELEAK" not in caplog.text and "SECRET" not in caplog.text
    assert not cache.has(bad)
