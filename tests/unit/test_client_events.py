"""cloud_client.events without an archive: a channel that answers the WebSocket upgrade with something that is not
HTTP (a captive portal, a wrong port) is retried, not a dead listener; stop() returns at once and unsubscribes
from the listener's own thread, after any subscribe it was making."""
from __future__ import annotations

import socket
import threading
import time
import types

from cloud_client.events import CONNECTED, DISCONNECTED, WorklistEvents


class _Session:
    user = "reader1"

    def __init__(self, port: int, subscribe_delay: float = 0.0) -> None:
        self.base_url = f"http://127.0.0.1:{port}/dicom-web"
        self.profile = types.SimpleNamespace(workitems_path="workitems", connect_timeout_s=2.0, ca_bundle=None)
        self.http = types.SimpleNamespace(auth=("reader1", "pw"))
        self.calls: list[str] = []
        self.delay = subscribe_delay

    def request(self, method, path, **_kw):
        if method == "POST":
            time.sleep(self.delay)
        self.calls.append(method)


def _garbage_server(reply: bytes) -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(4096)
            c.sendall(reply)
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_a_channel_answering_garbage_is_retried_and_stop_is_quick():
    srv, port = _garbage_server(b"this is not HTTP\r\n\r\n")
    states: list[str] = []
    session = _Session(port)
    ev = WorklistEvents(session, lambda _m: None, aet="READER1_TEST01", on_state=states.append, max_backoff_s=0.2)
    ev.start()
    time.sleep(1.5)
    assert ev._thread.is_alive() and ev.state == DISCONNECTED and CONNECTED not in states
    assert session.calls.count("POST") >= 2                  # subscribed again on each attempt
    t0 = time.monotonic()
    ev.stop()
    assert time.monotonic() - t0 < 1.5
    deadline = time.monotonic() + 5
    while "DELETE" not in session.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.calls[-1] == "DELETE"                     # unsubscribed last, from the listener's thread
    srv.close()


def test_stop_during_a_slow_subscribe_unsubscribes_after_it():
    srv, port = _garbage_server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    session = _Session(port, subscribe_delay=1.0)
    ev = WorklistEvents(session, lambda _m: None, aet="READER1_TEST02")
    ev.start()
    time.sleep(0.2)                                          # inside the slow subscribe POST
    t0 = time.monotonic()
    ev.stop(timeout=0.1)
    assert time.monotonic() - t0 < 0.5                       # the caller (the GUI thread) is not held up
    deadline = time.monotonic() + 5
    while "DELETE" not in session.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.calls == ["POST", "DELETE"]               # no subscription left behind
    srv.close()
