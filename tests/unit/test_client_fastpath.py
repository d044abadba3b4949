"""The retriever's fast paths: reading multipart parts straight from a de-chunked socket stream, and decoding
uncompressed greyscale pixels with numpy. Both must give exactly what the general path (pydicom) gives."""
import copy
import io
import os
import random

import numpy as np
import pydicom
import pytest

from cloud_client.errors import ArchiveUnavailable
from cloud_client.multipart import MultipartError, iter_parts_from
from cloud_client.retrieve import Dechunker


def chunked(payload, sizes):
    out, i, k = [], 0, 0
    while i < len(payload):
        n = sizes[k % len(sizes)]; k += 1
        piece = payload[i:i+n]; out.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n"); i += n
    return b"".join(out) + b"0\r\n\r\n"

def body(parts, boundary, with_length):
    out = b"pre\r\n"
    for p in parts:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n".encode()
        if with_length: out += f"Content-Length: {len(p)}\r\n".encode()
        out += b"\r\n" + p + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()

class Trickle(io.RawIOBase):
    def __init__(self, data, step): self.data, self.pos, self.step = data, 0, step
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.step, len(self.data) - self.pos)
        b[:n] = self.data[self.pos:self.pos+n]; self.pos += n; return n

@pytest.mark.parametrize("sizes", [[4096], [262144], [1, 7, 70000], [300000, 5], [1 << 20]])
@pytest.mark.parametrize("step", [3, 4096, 65536, 1 << 22])
@pytest.mark.parametrize("with_length", [True, False])
@pytest.mark.parametrize("block", [64, 8192, 1 << 20])
def test_multipart_over_dechunker(sizes, step, with_length, block):
    rnd = random.Random(hash((tuple(sizes), step, with_length, block)))
    parts = [rnd.randbytes(rnd.choice([0, 1, 100, 70000, 200000, 526026])) for _ in range(7)]
    parts.insert(2, b"\r\n--bn" + rnd.randbytes(10))
    data = chunked(body(parts, "bnd", with_length), sizes)
    fp = io.BufferedReader(Trickle(data, step), buffer_size=8192)
    d = Dechunker(fp, block=block)
    got = [b for _, b in iter_parts_from(d.read, "bnd", readinto=d.readinto)]
    assert got == parts and all(type(b) is bytes for b in got)

@pytest.mark.parametrize("cut", [10, 5000, 70000, 200000, 400000])
def test_truncation_is_an_error(cut):
    parts = [os.urandom(200000), os.urandom(200000)]
    data = chunked(body(parts, "bnd", True), [65536 * 3])[:-cut]
    d = Dechunker(io.BufferedReader(Trickle(data, 100000)))
    with pytest.raises((ArchiveUnavailable, MultipartError)):
        list(iter_parts_from(d.read, "bnd", readinto=d.readinto))

def test_readinto_and_read_mix():
    payload = os.urandom(500000)
    d = Dechunker(io.BufferedReader(Trickle(chunked(payload, [1000, 100000, 3]), 7777)), block=4096)
    out = d.read(10)
    b = bytearray(300000); assert d.readinto(memoryview(b)) == 300000; out += bytes(b)
    out += d.read(10**9)
    assert out == payload and d.read(5) == b"" and d.readinto(memoryview(bytearray(5))) == 0

def test_socket_stream_and_http_client_path():
    import http.server
    import threading

    import requests

    from cloud_client.retrieve import _Body
    payload = os.urandom(3_000_000)
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a): pass
        def do_GET(self):
            self.send_response(200)
            if self.path == "/chunked":
                self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
                self.wfile.write(chunked(payload, [262144, 4096, 77]))
            elif self.path == "/length":
                self.send_header("Content-Length", str(len(payload))); self.end_headers(); self.wfile.write(payload)
            else:
                self.send_header("Connection", "close"); self.end_headers(); self.wfile.write(payload)
                self.close_connection = True
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for path in ("/chunked", "/length", "/close"):
            r = requests.get(f"http://127.0.0.1:{srv.server_address[1]}{path}", stream=True)
            src = _Body(r)
            assert src.readinto is not None, path
            head = src.read(1000)
            buf = bytearray(2_000_000); k = src.readinto(memoryview(buf))
            rest = src.read(10**8)
            assert head + bytes(buf[:k]) + rest == payload, path
            r.close()
    finally:
        srv.shutdown()

def test_long_chunk_extension_grows_the_buffer():
    payload = os.urandom(1000)
    data = f"{len(payload):x};{'x' * 300}\r\n".encode() + payload + b"\r\n0\r\n\r\n"
    d = Dechunker(io.BufferedReader(Trickle(data, 7)), block=64)
    assert d.read(10**6) == payload


def _variants(ds):
    yield ds
    if "PixelData" in ds and not ds.file_meta.TransferSyntaxUID.is_encapsulated and ds.get("BitsAllocated") == 16:
        for stored in (16, 12, 10):
            for rep in (0, 1):
                d = copy.deepcopy(ds)
                d.BitsStored, d.PixelRepresentation = stored, rep
                if rep == 1:
                    d.pop("SmallestImagePixelValue", None)
                    d.pop("LargestImagePixelValue", None)
                yield d


def test_fast_native_decode_equals_pydicom_on_real_and_varied_files(real_data):
    from cloud_client.retrieve import _native_pixels, decode_pixels

    files = [p for p in sorted(real_data.rglob("*.dcm"))]
    checked = fast = 0
    for f in files:
        ds = pydicom.dcmread(f, force=True)
        tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if "PixelData" not in ds or tsuid is None or tsuid.is_encapsulated:
            continue
        for d in _variants(ds):
            buf = io.BytesIO()
            d.save_as(buf, enforce_file_format=True)
            a = pydicom.dcmread(io.BytesIO(buf.getvalue()))
            b = pydicom.dcmread(io.BytesIO(buf.getvalue()))
            ref = a.pixel_array
            checked += 1
            mine = _native_pixels(b)
            if mine is None:
                continue
            fast += 1
            assert mine.dtype == ref.dtype and mine.shape == ref.shape and np.array_equal(mine, ref), f.name
            decode_pixels(b)
            assert np.array_equal(b.pixel_array, ref)
    assert checked > 50 and fast > 20, (checked, fast)
