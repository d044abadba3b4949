"""Streaming reader for ``multipart/related`` HTTP bodies (WADO-RS responses, RFC 2387 / PS3.18 8.7.3).

Owns turning a byte stream into parts without holding the whole body: parts are yielded as they complete.
Uses each part's ``Content-Length`` when the server sends it (Orthanc does): then the body is read with one
sized read instead of scanning many small (e.g. 2-8 KB, as proxies re-chunk) pieces, which is what keeps
Python parsing close to the wire speed. Falls back to searching for the boundary delimiter otherwise. Raises
:class:`MultipartError` on a truncated or malformed body, so a dropped connection is never mistaken for a
complete last part.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from email.message import Message

Reader = Callable[[int], bytes]  # read(n): up to n bytes, may block until n are there; b"" at the end
ReadInto = Callable[[memoryview], int]  # readinto(view): fills the view, fewer bytes only at the end


class MultipartError(ValueError):
    """The multipart body was truncated or malformed."""


def boundary_of(content_type: str) -> str:
    msg = Message()
    msg["Content-Type"] = content_type
    if msg.get_content_maintype() != "multipart":
        raise MultipartError(f"expected a multipart response, got {msg.get_content_type()}")
    boundary = msg.get_param("boundary")
    if not boundary:
        raise MultipartError("multipart response without a boundary")
    return str(boundary)


def _headers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.split(b"\r\n"):
        if b":" in line:
            k, v = line.split(b":", 1)
            out[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return out


def reader_of(chunks: Iterable[bytes]) -> Reader:
    """Adapt an iterable of byte chunks to a ``read(n)`` function."""
    it = iter(chunks)
    pending = bytearray()

    def read(n: int) -> bytes:
        while len(pending) < n:
            try:
                pending.extend(next(it))
            except StopIteration:
                break
        out = bytes(pending[:n])
        del pending[:n]
        return out

    return read


def iter_parts(chunks: Iterable[bytes], boundary: str) -> Iterator[tuple[dict[str, str], bytes]]:
    """Yield ``(headers, body)`` for each part of a multipart body given as an iterable of byte chunks."""
    return iter_parts_from(reader_of(chunks), boundary)


def iter_parts_from(read: Reader, boundary: str, scan: int = 8192,
                    readinto: ReadInto | None = None) -> Iterator[tuple[dict[str, str], bytes]]:
    """Yield ``(headers, body)`` for each part, reading through ``read(n)``.

    With ``readinto``, a part whose Content-Length is known is read straight into its own buffer (its bytes
    are not copied through the parser's buffer)."""
    delim = b"--" + boundary.encode("latin-1")
    next_delim = b"\r\n" + delim
    buf = bytearray()
    scratch = bytearray()  # reused for every part read in place (no fresh zeroed buffer per part)

    def need(k: int) -> bool:
        """Make ``buf`` hold at least k bytes (reading exactly what is missing). False at end of stream."""
        while len(buf) < k:
            data = read(k - len(buf))
            if not data:
                return False
            buf.extend(data)
        return True

    def more(k: int) -> bool:
        data = read(k)
        if not data:
            return False
        buf.extend(data)
        return True

    # preamble up to the first delimiter
    while True:
        i = buf.find(delim)
        if i >= 0:
            del buf[: i + len(delim)]
            break
        if not more(len(delim) + 2 if not buf else 256):
            raise MultipartError("multipart body ended before its first part")
    while True:
        # right after a delimiter: "--" closes the body, otherwise CRLF, headers, CRLF CRLF
        if not need(2):
            raise MultipartError("multipart body truncated after a boundary")
        if buf[:2] == b"--":
            return
        start = 0
        while True:
            h = buf.find(b"\r\n\r\n", start)
            if h >= 0:
                break
            start = max(0, len(buf) - 3)
            if not more(256):
                raise MultipartError("multipart body truncated inside part headers")
        headers = _headers(bytes(buf[:h]))
        del buf[: h + 4]
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            # Hand the part on as soon as it is complete (the next delimiter may not have been sent yet).
            n = int(length)
            if readinto is not None and n > len(buf):
                if len(scratch) < n:
                    scratch = bytearray(n)
                body = _read_body(buf, n, readinto, scratch)
                if not need(2):
                    raise MultipartError("multipart body truncated inside a part")
                if buf[:2] != b"\r\n":
                    raise MultipartError("multipart part longer than its Content-Length")
                del buf[:2]
            else:
                if not need(n + 2):
                    raise MultipartError("multipart body truncated inside a part")
                if buf[n: n + 2] != b"\r\n":
                    raise MultipartError("multipart part longer than its Content-Length")
                with memoryview(buf) as view:
                    body = bytes(view[:n])
                del buf[: n + 2]
            yield headers, body
            if not need(len(delim)):
                raise MultipartError("multipart body truncated after a part")
            if buf[: len(delim)] != delim:
                raise MultipartError("multipart part longer than its Content-Length")
            del buf[: len(delim)]
            continue
        start = 0
        while True:
            j = buf.find(next_delim, start)
            if j >= 0:
                break
            start = max(0, len(buf) - len(next_delim))
            if not more(scan):
                raise MultipartError("multipart body truncated inside a part")
        with memoryview(buf) as view:
            body = bytes(view[:j])
        del buf[: j + len(next_delim)]
        yield headers, body


def _read_body(buf: bytearray, n: int, readinto: ReadInto, scratch: bytearray) -> bytes:
    """The n body bytes of a part: what ``buf`` already holds (it is emptied), the rest read into ``scratch``
    (at least n bytes long), then copied out once."""
    k = len(buf)
    scratch[:k] = buf
    buf.clear()
    with memoryview(scratch) as whole, whole[:n] as view:
        while k < n:
            got = readinto(view[k:])
            if not got:
                raise MultipartError("multipart body truncated inside a part")
            k += got
        return bytes(view)
