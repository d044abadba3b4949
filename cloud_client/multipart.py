"""Streaming reader for ``multipart/related`` HTTP bodies (WADO-RS responses, RFC 2387 / PS3.18 8.7.3).

Owns turning a byte stream into parts without holding the whole body: parts are yielded as they complete.
Uses each part's ``Content-Length`` when the server sends it (Orthanc does) and falls back to searching for the
boundary delimiter otherwise. Raises :class:`MultipartError` on a truncated or malformed body, so a dropped
connection is never mistaken for a complete last part.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from email.message import Message


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


def iter_parts(chunks: Iterable[bytes], boundary: str) -> Iterator[tuple[dict[str, str], bytes]]:
    """Yield ``(headers, body)`` for each part of a multipart body given as an iterable of byte chunks."""
    delim = b"--" + boundary.encode("latin-1")
    next_delim = b"\r\n" + delim
    buf = bytearray()
    it = iter(chunks)
    eof = False

    def fill() -> bool:
        nonlocal eof
        if eof:
            return False
        try:
            chunk = next(it)
        except StopIteration:
            eof = True
            return False
        buf.extend(chunk)
        return True

    # preamble up to the first delimiter
    while True:
        i = buf.find(delim)
        if i >= 0:
            del buf[: i + len(delim)]
            break
        if not fill():
            raise MultipartError("multipart body ended before its first part")
    while True:
        # after a delimiter: "--" closes, otherwise CRLF then headers
        while len(buf) < 2:
            if not fill():
                raise MultipartError("multipart body truncated after a boundary")
        if buf[:2] == b"--":
            return
        while True:
            h = buf.find(b"\r\n\r\n")
            if h >= 0:
                break
            if not fill():
                raise MultipartError("multipart body truncated inside part headers")
        headers = _headers(bytes(buf[:h]))
        del buf[: h + 4]
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            # Hand the part on as soon as it is complete (the next delimiter may not have been sent yet).
            n = int(length)
            while len(buf) < n + 2:
                if not fill():
                    raise MultipartError("multipart body truncated inside a part")
            if buf[n: n + 2] != b"\r\n":
                raise MultipartError("multipart part longer than its Content-Length")
            body = bytes(buf[:n])
            del buf[: n + 2]
            yield headers, body
            while len(buf) < len(delim):
                if not fill():
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
            if not fill():
                raise MultipartError("multipart body truncated inside a part")
        body = bytes(buf[:j])
        del buf[: j + len(next_delim)]
        yield headers, body
