"""Bad input gets a clear message and loses nothing: the archive answers 500 to a worklist refresh."""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler

import pytest

from tests.fixtures.http import LocalServer

pytestmark = pytest.mark.gui
pytest.importorskip("pytestqt")


class _Server(LocalServer):
    """Answers every request with ``status`` and a body that quotes the query (as error pages can)."""

    def __init__(self):
        self.status = 500
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                body = f"Internal error handling {self.path} for SYNTHETIC^ERRPAGE RR-ERR-1".encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)
        self.base_url = f"{self.root}/dicom-web"


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_on_refresh_is_a_clear_notice_and_keeps_the_list(qtbot, caplog, status):
    from app.worklist_panel import WorklistPanel
    from cloud_client.profiles import ServerProfile
    from cloud_client.session import DicomWebSession
    from cloud_client.worklist import WorklistClient, WorklistItem

    server = _Server()
    server.status = status
    web = DicomWebSession(ServerProfile("s", server.base_url, "reader1", connect_timeout_s=1, timeout_s=2), "pw")

    class Services:
        def __init__(self):
            self.worklist = WorklistClient(web)

        def list_worklist(self):
            return self.worklist.my_items()

    panel = WorklistPanel(Services())
    qtbot.addWidget(panel)
    shown = WorklistItem("1.2.3.4", "1.2.3.5", "SCHEDULED", "HIGH", patient_name="SYNTHETIC^KEPT",
                         patient_id="RR-KEPT-1")
    panel._loaded([shown])
    messages = []
    panel.message.connect(messages.append)
    try:
        with caplog.at_level("DEBUG"):
            panel.refresh()
            qtbot.waitUntil(lambda: bool(messages), timeout=15_000)
    finally:
        server.close()
    text = messages[0]
    assert "cannot be reached" in text and "Traceback" not in text and "Something went wrong" not in text
    assert panel.notice.text() == text and panel.refresh_button.isEnabled()
    assert panel.model.items == [shown]                       # what the reader had on screen is kept
    for leak in ("ERRPAGE", "RR-ERR-1", "KEPT"):
        assert leak not in text and leak not in caplog.text
