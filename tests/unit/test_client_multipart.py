"""The streaming multipart/related parser used for WADO-RS responses."""
from __future__ import annotations

import os

import pytest

from cloud_client.multipart import MultipartError, boundary_of, iter_parts


def _body(parts: list[bytes], boundary: str, with_length: bool) -> bytes:
    out = b"preamble\r\n"
    for p in parts:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n".encode()
        if with_length:
            out += f"Content-Length: {len(p)}\r\n".encode()
        out += b"\r\n" + p + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("with_length", [True, False])
@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_parts_survive_any_chunking(with_length, chunk):
    boundary = "b0und-ary"
    # payloads that contain CRLF, dashes and a near-boundary string
    parts = [os.urandom(3000) + b"\r\n--b0und-ar" + os.urandom(10), b"", b"--b0und-aryX not a delimiter",
             os.urandom(100)]
    got = list(iter_parts(_chunks(_body(parts, boundary, with_length), chunk), boundary))
    assert [b for _, b in got] == parts
    assert all(h["content-type"] == "application/dicom" for h, _ in got)


@pytest.mark.parametrize("with_length", [True, False])
def test_truncated_body_is_an_error_not_a_short_part(with_length):
    boundary = "xyz"
    body = _body([os.urandom(5000), os.urandom(5000)], boundary, with_length)
    cut = body[: len(body) - 3000]
    with pytest.raises(MultipartError):
        list(iter_parts(_chunks(cut, 512), boundary))


def test_boundary_from_content_type():
    assert boundary_of('multipart/related; type="application/dicom"; boundary="a b"') == "a b"
    assert boundary_of("multipart/related; boundary=abc; type=application/dicom") == "abc"
    with pytest.raises(MultipartError):
        boundary_of("application/dicom+json")


class _SlowFile:
    """A buffered-socket stand-in: read1 returns at most ``step`` bytes at a time."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def read1(self, n: int) -> bytes:
        out = self.data[self.pos: self.pos + min(n, self.step)]
        self.pos += len(out)
        return out


def _chunked(payload: bytes, sizes) -> bytes:
    out, i, k = b"", 0, 0
    while i < len(payload):
        n = sizes[k % len(sizes)]
        k += 1
        piece = payload[i:i + n]
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        i += n
    return out + b"0\r\nX-Trailer: 1\r\n\r\n"


@pytest.mark.parametrize("step", [1, 5, 4096, 1 << 20])
def test_dechunker_reassembles_any_framing(step):
    from cloud_client.retrieve import Dechunker

    payload = os.urandom(50_000) + b"\r\n0\r\n\r\n" + os.urandom(777)
    d = Dechunker(_SlowFile(_chunked(payload, [2700, 1, 13, 8192]), step), block=step)
    got = b""
    for want in (10, 1, 30_000, 5, 10**9):
        got += d.read(want)
    assert got == payload
    assert d.read(100) == b""


def test_dechunker_truncated_or_malformed_is_an_error():
    from cloud_client.errors import ArchiveUnavailable
    from cloud_client.retrieve import Dechunker

    body = _chunked(os.urandom(10_000), [3000])
    with pytest.raises(ArchiveUnavailable):
        Dechunker(_SlowFile(body[:5000], 4096)).read(10_000)
    with pytest.raises(MultipartError):
        Dechunker(_SlowFile(b"zz\r\nabc\r\n", 4096)).read(10)
    with pytest.raises(MultipartError):
        Dechunker(_SlowFile(b"3\r\nabcXY0\r\n\r\n", 4096)).read(10)
