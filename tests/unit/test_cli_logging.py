"""The workstation writes a log file for the clinic's IT under READROOM_HOME/logs."""
import logging

from app import cli


def test_log_file_is_written_under_readroom_home(readroom_home):
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        cli._setup_logging(verbose=False)
        logging.getLogger("cloud_client.test").info("worklist query returned %d items", 3)
        for h in root.handlers:
            h.flush()
        text = (readroom_home / "logs" / "readroom.log").read_text()
        assert "worklist query returned 3 items" in text
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
                h.close()


def test_verbose_log_never_holds_query_strings_with_patient_ids(readroom_home):
    """With -v, urllib3 logs every request line at DEBUG - a priors query carries ?PatientID=. The log file and
    the terminal get the path without the query."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        cli._setup_logging(verbose=True)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/dicom-web/studies"
        requests.get(url, params={"PatientID": "RR-LEAK-4711", "PatientName": "SYNTHETIC^LEAK"}, timeout=5)
        for h in root.handlers:
            h.flush()
        text = (readroom_home / "logs" / "readroom.log").read_text()
        assert "/dicom-web/studies" in text  # the request is logged ...
        assert "RR-LEAK-4711" not in text and "SYNTHETIC" not in text  # ... without its query
    finally:
        httpd.shutdown()
        httpd.server_close()
        root.setLevel(level)
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
                h.close()
