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
