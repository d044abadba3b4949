"""Drafts: encrypted on disk, autosaved, and back after a kill -9 of the process that was editing."""
import os
import signal
import subprocess
import sys
import textwrap
import time

from cloud_client import paths
from reporting.drafts import Autosaver, DraftStore
from reporting.model import Person, Report, StudyContext
from reporting.templates import TemplateLibrary

UID = "1.2.826.0.1.3680043.8.498.1"


def _report():
    return Report(TemplateLibrary().get("ct-head-noncontrast"),
                  StudyContext(study_uid=UID, patient_id="PAT-SECRET-9", patient_name="SYNTHETIC^HEADCT"),
                  author=Person("reader1"))


def test_draft_is_encrypted_and_named_without_identifiers():
    store = DraftStore()
    r = _report()
    r.set_field("parenchyma", "Hyperdense left MCA sign.")
    store.save(r)
    files = list(paths.drafts_dir().glob("*"))
    assert len(files) == 1
    assert UID not in files[0].name
    raw = files[0].read_bytes()
    assert b"Hyperdense" not in raw and b"PAT-SECRET-9" not in raw and b"SYNTHETIC" not in raw
    back = store.load(UID)
    assert back.get("parenchyma") == "Hyperdense left MCA sign."
    assert [d.study_uid for d in store.list()] == [UID]


def test_damaged_draft_is_set_aside_not_crashing():
    store = DraftStore()
    store.save(_report())
    p = store.path_for(UID)
    p.write_bytes(p.read_bytes()[:-5])
    assert store.load(UID) is None
    assert p.with_suffix(".damaged").exists()


def test_autosaver_saves_shortly_after_change_and_on_stop():
    store = DraftStore()
    r = _report()
    saver = Autosaver(r, store, interval_s=2.0, debounce_s=0.05).start()
    try:
        r.set_field("impression", "No acute intracranial abnormality.")
        deadline = time.time() + 5
        while time.time() < deadline and store.load(UID) is None:
            time.sleep(0.05)
        assert store.load(UID).get("impression") == "No acute intracranial abnormality."
        r.set_field("impression", "Changed.")
    finally:
        saver.stop()
    assert store.load(UID).get("impression") == "Changed."


CHILD = textwrap.dedent(f"""
    import sys, time
    from reporting.drafts import Autosaver, DraftStore
    from reporting.model import Person, Report, StudyContext
    from reporting.templates import TemplateLibrary
    r = Report(TemplateLibrary().get("ct-head-noncontrast"), StudyContext(study_uid="{UID}"),
               author=Person("reader1"))
    Autosaver(r, DraftStore(), interval_s=2.0, debounce_s=0.1).start()
    r.apply_macro("normal")
    r.focus("impression")
    r.insert_at_cursor("Typed before the crash.", source="dictation")
    print("edited", flush=True)
    while True:
        time.sleep(1)
""")


def test_draft_survives_kill_minus_9():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert proc.stdout.readline().strip() == b"edited"
        store = DraftStore()
        deadline = time.time() + 10
        while time.time() < deadline:
            r = store.load(UID) if store.has_draft(UID) else None
            if r is not None and r.get("impression").endswith("Typed before the crash."):
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # "reopen the study" in a fresh process state
    reopened = DraftStore().load(UID)
    assert reopened is not None
    assert reopened.get("impression") == "No acute intracranial abnormality. Typed before the crash."
    assert reopened.focus_field == "impression"


def test_addendum_draft_autosaved_and_dropped_when_signed():
    from reporting import signing
    from reporting.model import ReportState
    from reporting.outbox import Outbox
    from reporting.workflow import sign_addendum, sign_report, start_addendum

    signing.generate_key("reader1", "2468")
    r = _report()
    r.apply_macro("normal")
    r.set_field("indication", "Fall")
    first = sign_report(r, Person("reader1"), "2468", outbox=Outbox(), outputs=False)
    a = start_addendum(first.record, Person("reader1"))
    saver = Autosaver(a, DraftStore(), debounce_s=0.01).start()
    a.set_field("addendum", "Late finding.")
    saver.flush()
    back = DraftStore().load(UID)
    assert back.is_addendum and back.get("addendum") == "Late finding."
    sign_addendum(a, Person("reader1"), "2468", outbox=Outbox(), outputs=False)
    saver.stop()
    assert a.state == ReportState.FINAL
    assert DraftStore().load(UID) is None  # no stale signed copy comes back as a draft


def test_edit_just_before_sign_does_not_resurrect_the_draft():
    from reporting import signing
    from reporting.outbox import Outbox
    from reporting.workflow import sign_report

    signing.generate_key("reader1", "2468")
    r = _report()
    r.apply_macro("normal")
    saver = Autosaver(r, DraftStore(), interval_s=60, debounce_s=60).start()  # pending, not yet written
    r.set_field("indication", "Typed a moment before signing")
    sign_report(r, Person("reader1"), "2468", outbox=Outbox(), outputs=False)
    saver.stop()  # would flush the pending pre-sign snapshot
    assert not DraftStore().has_draft(UID)
