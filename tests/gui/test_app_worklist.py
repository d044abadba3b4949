"""The workstation against a real reference cloud: reader1's worklist (STAT first), claiming, a lost claim race,
and opening a study that streams in (first image before the fetch finishes), with priors listed.

The cloud is this module's own (not the shared seeded one) because these tests change workitem states; it is
filled the way a clinic would: synthetic CT studies sent with STOW-RS, routed by the demo rules to reader1.
"""
from __future__ import annotations

import datetime as dt
import time

import pydicom
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.integration, pytest.mark.slow]

pytest.importorskip("pytestqt")


def _ct_study(out, key: str, *, n: int, size: int, priority: str, description: str, study_date: str):
    from cloud.demo_data import write_ct_series

    files = write_ct_series(out / key, n_slices=n, rows=size, cols=size, key=key)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.BodyPartExamined = "CHEST"
        ds.StudyDescription = description
        ds.RequestedProcedurePriority = priority
        ds.StudyDate = study_date
        ds.save_as(f)
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID), files


@pytest.fixture(scope="module")
def reading_cloud(tmp_path_factory):
    from tests.fixtures.cloud import _require_servers, stow, wait_for_workitems

    _require_servers()
    from cloud.launcher import CloudProcess

    root = tmp_path_factory.mktemp("app-cloud")
    c = CloudProcess(root / "cloud", seed_demo=False).start()
    today = dt.date.today().strftime("%Y%m%d")
    studies = {
        "stat": _ct_study(root, "app-stat", n=160, size=512, priority="STAT", description="CT CHEST STAT",
                          study_date=today),
        "routine": _ct_study(root, "app-routine", n=12, size=128, priority="ROUTINE",
                             description="CT CHEST ROUTINE", study_date=today),
        "race": _ct_study(root, "app-race", n=8, size=64, priority="ROUTINE", description="CT CHEST FOLLOW-UP",
                          study_date=today),
        "prior": _ct_study(root, "app-prior", n=8, size=64, priority="ROUTINE", description="CT CHEST OLD",
                           study_date="20240105"),
    }
    for _uid, files in studies.values():
        stow(c, files)
    for uid, _files in studies.values():
        assert wait_for_workitems(c, uid, timeout=120), "the cloud did not route a stored study"
    c.study_uids = {k: v[0] for k, v in studies.items()}
    yield c
    c.stop()


@pytest.fixture
def workstation(qtbot, reading_cloud):
    from app.cli_gui import application, open_workstation
    from app.session import sign_in
    from cloud_client.profiles import ServerProfile

    application()
    profile = ServerProfile(name="test", base_url=reading_cloud.base_url, user="reader1", prefetch_count=0)
    session = sign_in(profile, "reader1")
    win = open_workstation(session)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.worklist.model.rowCount() > 0, timeout=30000)
    yield win
    win.close()
    from app.workers import wait_for_all

    wait_for_all(20000)
    win.ws.close()


def _row_of(win, study_uid: str) -> int:
    for row, item in enumerate(win.worklist.model.items):
        if item.study_uid == study_uid:
            return row
    raise AssertionError("study not on the worklist")


def test_worklist_lists_reader1_items_stat_first_with_countdown(workstation, reading_cloud):
    model = workstation.worklist.model
    uids = [i.study_uid for i in model.items]
    assert uids[0] == reading_cloud.study_uids["stat"]
    assert set(reading_cloud.study_uids.values()) <= set(uids)
    assert model.index(0, 0).data() == "STAT"
    assert model.index(1, 0).data() == "ROUTINE"
    due = model.index(0, 1).data()
    assert due.startswith("in ") and "min" in due          # STAT SLA 30 min: a live countdown
    assert "min" in model.index(0, 2).data()                # waiting time
    assert "2 STAT" not in workstation.worklist.count.text() and "1 STAT" in workstation.worklist.count.text()


def test_lost_claim_race_shows_taken_by_another_reader(workstation, reading_cloud, qtbot):
    from cloud_client.session import DicomWebSession
    from cloud_client.worklist import TransactionStore, WorklistClient

    win = workstation
    row = _row_of(win, reading_cloud.study_uids["race"])
    item = win.worklist.model.item(row)
    # another workstation (its own transaction store) claims the same item first
    other_store = TransactionStore(path=reading_cloud.dir / "other-workstation-tuids.json")
    with DicomWebSession(win.ws.session.profile, password="reader1") as other:
        WorklistClient(other, "reader1", store=other_store).claim(item.workitem_uid)
    win.worklist.select_row(row)
    with qtbot.waitSignal(win.worklist.claim_lost, timeout=20000) as lost:
        win.worklist.claim_and_open()
    assert "Another reader took this study" in lost.args[0]
    assert not win.worklist.notice.isHidden() and "Another reader" in win.worklist.notice.text()
    assert all(i.workitem_uid != item.workitem_uid for i in win.worklist.model.items)
    assert win.pages.currentIndex() == 0                    # still on the worklist, nothing opened


def test_claim_opens_study_first_image_before_fetch_finishes(workstation, reading_cloud, qtbot):
    win = workstation
    row = _row_of(win, reading_cloud.study_uids["stat"])
    win.worklist.select_row(row)
    page = win.reading
    marks = {}
    page.first_image_shown.connect(lambda _uid: marks.setdefault("first", (time.monotonic(),
                                                                            page.load_result is None)))
    page.study_loaded.connect(lambda _r: marks.setdefault("loaded", time.monotonic()))
    page.load_failed.connect(lambda m: marks.setdefault("failed", m))
    progress = []
    page.fetch_progress.connect(lambda p: progress.append((p.done, p.total)))
    win.worklist.claim_and_open()
    qtbot.waitUntil(lambda: "loaded" in marks or "failed" in marks, timeout=180000)
    assert "failed" not in marks, marks.get("failed")
    assert "first" in marks, "no image was shown"
    first_t, still_loading = marks["first"]
    assert still_loading and first_t < marks["loaded"]
    # the first image was on screen while most of the study was still to come
    at_first = [d for d, t in progress if t]
    assert at_first and min(at_first) < 160
    claimed = next(i for i in win.worklist.model.items if i.study_uid == reading_cloud.study_uids["stat"])
    assert claimed.state == "IN PROGRESS" and claimed.held_here
    assert page.plan is not None and page.plan.rows * page.plan.cols == len(page.panes)  # hanging protocol
    vp = page.viewports[page.plan.viewports[0].series_uid][0]
    assert vp.volume.shape[0] == 160 and vp.arrived is None   # every slice arrived
    assert win.editor.report is not None and win.editor.report.study.study_uid == claimed.study_uid
    # window presets for CT are offered and applied to the panes
    idx = next(i for i in range(page.window_preset.count()) if "bone" in page.window_preset.itemText(i).lower())
    page.window_preset.setCurrentIndex(idx)
    page.window_preset.activated.emit(idx)
    assert (vp.window, vp.level) == page.window_preset.itemData(idx)
    assert not page.cine.isEnabled()                          # a CT stack is not a cine loop
    # the whole series is local: reformats are offered (MPR with linked crosshair), and back to the stack
    assert page.view_mode.isEnabled()
    page.view_mode.setCurrentIndex(page.view_mode.findData("mpr"))
    assert page.mpr is not None and page.mpr.volume is vp.volume and not vp.isVisible()
    page.view_mode.setCurrentIndex(page.view_mode.findData("stack"))
    assert page.mpr is None and vp.isVisible()
    # the prior (same patient, older) is offered for side-by-side comparison
    qtbot.waitUntil(lambda: page.priors.isEnabled(), timeout=20000)
    texts = [page.priors.itemText(i) for i in range(page.priors.count())]
    assert any("2024-01-05" in t for t in texts)
    idx = next(i for i, t in enumerate(texts) if "2024-01-05" in t)
    page.priors.setCurrentIndex(idx)
    with qtbot.waitSignal(page.prior_shown, timeout=60000):
        page.open_selected_prior()
    cmp = page.comparison
    assert cmp.current.volume.shape[0] == 160 and cmp.prior.volume.shape[0] == 8
    # linked: scrolling the current study moves the prior to the nearest position; window/level follows
    cmp.current.set_slice(0)
    k_low = cmp.prior.k
    cmp.current.set_slice(159)
    assert cmp.prior.k != k_low
    cmp.current.set_window_level(400.0, 40.0)
    assert (cmp.prior.window, cmp.prior.level) == (400.0, 40.0)


def test_sign_in_dialog_wrong_then_right_password(qtbot, reading_cloud):
    from app.cli_gui import application
    from app.login_dialog import LoginDialog
    from cloud_client.profiles import ServerProfile

    application()
    dlg = LoginDialog(ServerProfile(name="t", base_url=reading_cloud.base_url, user="reader1"))
    qtbot.addWidget(dlg)
    dlg.password.setText("not-the-password")
    dlg.try_sign_in()
    qtbot.waitUntil(lambda: not dlg.message.isHidden(), timeout=20000)
    assert "did not accept your sign-in" in dlg.message.text()
    assert dlg.session is None
    dlg.password.setText("reader1")
    with qtbot.waitSignal(dlg.signed_in, timeout=20000):
        dlg.try_sign_in()
    assert dlg.session.user == "reader1" and dlg.result() == dlg.DialogCode.Accepted
    dlg.session.close()


def test_read_sign_and_the_study_leaves_the_worklist(workstation, reading_cloud, qtbot):
    """Claim, open, report, sign with the PIN: the outbox stores the SR and completes the workitem."""
    win = workstation
    uid = reading_cloud.study_uids["routine"]
    win.worklist.select_row(_row_of(win, uid))
    loaded = []
    win.reading.study_loaded.connect(loaded.append)
    win.worklist.claim_and_open()
    qtbot.waitUntil(lambda: bool(loaded), timeout=60000)
    ed = win.editor
    assert ed.report.study.study_uid == uid and ed.report.study.workitem_uid
    if ed.report.template.macros:
        ed.apply_macro()
    for f in ed.report.template.fields:
        if f.required and not ed.report.get(f.id):
            ed.report.set_field(f.id, "Shortness of breath.")
    ed.report.set_field(ed.report.template.impression_section.fields[0].id, "No acute abnormality.")
    # a length measured on the image is saved with the report (SR TID 1500 + presentation state)
    from viewer.qt.tools import Annotation, make_measurement

    vp = win.reading.panes[0]
    k = vp.k
    p0, p1 = vp.volume.index_to_patient(k, 20, 20), vp.volume.index_to_patient(k, 20, 60)
    length = make_measurement("length", [p0, p1], vp)
    vp.tools.annotations.append(Annotation(kind="length", points=[p0, p1], measurement=length, slice_index=k))
    ed._ask_pin = lambda _p: "pin-123456"
    ed._confirm = lambda _t, _x: True
    with qtbot.waitSignal(ed.report_signed, timeout=60000):
        assert ed.sign()
    qtbot.waitUntil(lambda: win.ws.outbox_pending() == 0 and
                    any(i.kind == "measurements" for i in win.ws.outbox.sent()), timeout=60000)
    win.refresh_outbox()
    assert win.status.outbox.text() == "All reports sent"
    win.worklist.refresh()
    qtbot.waitUntil(lambda: all(i.study_uid != uid for i in win.worklist.model.items), timeout=20000)
    import requests

    r = requests.get(f"{reading_cloud.base_url}/studies/{uid}/series", auth=reading_cloud.auth("reader1"),
                     timeout=20)
    modalities = sorted(s["00080060"]["Value"][0] for s in r.json())
    assert modalities.count("SR") >= 2 and "PR" in modalities, modalities   # report SR, measurement SR, GSPS
    # opening the study again brings the measurement back onto the image
    from cloud_client.worklist import WorklistItem

    item = WorklistItem(workitem_uid="", study_uid=uid, state="COMPLETED", priority="MEDIUM", modality="CT",
                        body_part="CHEST", study_description="CT CHEST ROUTINE")
    with qtbot.waitSignal(win.reading.annotations_restored, timeout=60000) as restored:
        win.reading.open_item(item)
    assert restored.args[0] >= 1
    back = [a.measurement for p in win.reading.panes for a in p.tools.annotations]
    same = [m for m in back if m.uid == length.uid]
    assert same and abs(same[0].value - length.value) < 1e-3


def test_prefetch_fetches_the_most_urgent_study_and_shows_progress(qtbot, reading_cloud):
    from app.cli_gui import application, open_workstation
    from app.session import sign_in
    from cloud_client.profiles import ServerProfile

    application()
    profile = ServerProfile(name="prefetch", base_url=reading_cloud.base_url, user="reader1", prefetch_count=1)
    win = open_workstation(sign_in(profile, "reader1"))
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.worklist.model.rowCount() > 0, timeout=30000)
        first = win.worklist.model.items[0]
        qtbot.waitUntil(lambda: win.status.prefetch_label.text() == "Prefetch: up to date", timeout=180000)
        assert first.study_uid in win.ws.prefetcher.status.fetched
        cached = win.ws.cache.cached_sop_uids(first.study_uid)
        assert len(cached) >= 8                                 # the whole study is in the encrypted cache
    finally:
        win.close()
        from app.workers import wait_for_all

        wait_for_all(20000)
        win.ws.close()


def test_release_asks_first_then_gives_the_study_back(workstation, reading_cloud, qtbot):
    import requests

    win = workstation
    held = [i for i in win.worklist.model.items if i.state == "IN PROGRESS" and i.held_here]
    if not held:      # claim one (the earlier tests may have run in another order)
        row = next(r for r, i in enumerate(win.worklist.model.items) if i.state == "SCHEDULED")
        win.worklist.select_row(row)
        opened = []
        win.worklist.open_requested.connect(opened.append)
        win.worklist.claim_and_open()
        qtbot.waitUntil(lambda: bool(opened), timeout=20000)
        held = opened
    item = held[0]
    win.worklist.select_row(_row_of(win, item.study_uid))
    win.worklist.confirm = lambda _t, _x: False
    win.worklist.release_selected()
    assert any(i.workitem_uid == item.workitem_uid for i in win.worklist.model.items)   # nothing happened
    win.worklist.confirm = lambda _t, _x: True
    win.worklist.release_selected()
    qtbot.waitUntil(lambda: all(i.workitem_uid != item.workitem_uid for i in win.worklist.model.items),
                    timeout=20000)
    r = requests.get(f"{reading_cloud.base_url}/workitems/{item.workitem_uid}", auth=reading_cloud.auth("reader1"),
                     timeout=10)
    body = r.json()
    body = body[0] if isinstance(body, list) else body
    assert body["00741000"]["Value"] == ["CANCELED"]


def test_switching_studies_mid_load_keeps_the_old_one_out(workstation, reading_cloud, qtbot):
    """Open the big study, then another before it has arrived: the first one's late slices, its cancellation
    and its priors never reach the second one's panes."""
    from cloud_client.worklist import WorklistItem

    page = workstation.reading

    def view_only(key):
        return WorklistItem(workitem_uid="", study_uid=reading_cloud.study_uids[key], state="COMPLETED",
                            priority="", modality="CT", body_part="CHEST")

    big, small = view_only("stat"), view_only("prior")
    loaded = []
    page.study_loaded.connect(loaded.append)
    page.open_item(big)
    qtbot.waitUntil(lambda: bool(page.volumes), timeout=30000)     # the big one has started
    page.open_item(small)
    qtbot.waitUntil(lambda: bool(loaded), timeout=60000)
    qtbot.wait(1500)                                               # let any late callbacks of the first arrive
    assert loaded[-1].study_uid == small.study_uid
    assert all(v.shape[0] == 8 for v in page.volumes.values())     # only the small study's series
    assert page.notice.isHidden(), page.notice.text()


def test_remembered_password_is_offered_next_time(qtbot, reading_cloud):
    from app.cli_gui import application
    from app.login_dialog import LoginDialog
    from cloud_client.profiles import ServerProfile

    application()
    profile = ServerProfile(name="remember", base_url=reading_cloud.base_url, user="reader1")
    first = LoginDialog(profile)
    qtbot.addWidget(first)
    assert first.password.text() == "" and not first.remember.isChecked()
    first.password.setText("reader1")
    first.remember.setChecked(True)
    with qtbot.waitSignal(first.signed_in, timeout=20000):
        first.try_sign_in()
    first.session.close()
    again = LoginDialog(profile)             # next start of the workstation
    qtbot.addWidget(again)
    assert again.password.text() == "reader1" and again.remember.isChecked()


def test_unlock_checks_the_password_with_the_archive_when_needed(workstation):
    win = workstation
    win.ws.session.verifier = None          # e.g. signed in with the keyring's password
    win.lock()
    win.lock_screen.password.setText("wrong")
    win.lock_screen.try_unlock()
    assert win.lock_screen.locked and "not right" in win.lock_screen.message.text()
    win.lock_screen.password.setText("reader1")
    win.lock_screen.try_unlock()
    assert not win.lock_screen.locked


def test_expired_password_asks_to_sign_in_again_and_carries_on(workstation, qtbot):
    """The archive starts refusing the session (password changed at night): the worklist says so, a sign-in
    dialog appears over the open workstation, and with the right password everything carries on."""
    win = workstation
    win.ws.session.web.http.auth = ("reader1", "expired")
    win.worklist.refresh()
    qtbot.waitUntil(lambda: win.reauth_dialog is not None and win.reauth_dialog.isVisible(), timeout=20000)
    dlg = win.reauth_dialog
    assert "sign in again" in dlg.message.text().lower() and not dlg.server.isEnabled()
    dlg.password.setText("still-wrong")
    dlg.try_sign_in()
    qtbot.waitUntil(lambda: "did not accept" in dlg.message.text(), timeout=20000)
    dlg.password.setText("reader1")
    with qtbot.waitSignal(win.worklist.items_loaded, timeout=30000):
        dlg.try_sign_in()
    assert not dlg.isVisible() and win.worklist.model.rowCount() > 0
    assert win.ws.session.verifier.check("reader1")


def test_new_assignment_appears_without_waiting_for_the_poll(workstation, reading_cloud, qtbot):
    """The archive pushes UPS events: a study assigned to reader1 shows up within seconds, not at the 60 s poll."""
    import json

    import requests
    from pydicom.uid import generate_uid

    from cloud_client.events import CONNECTED

    win = workstation
    win.worklist._poll.stop()                               # only the pushed event can bring it
    qtbot.waitUntil(lambda: win.ws.events is not None and win.ws.events.state == CONNECTED, timeout=20000)
    before = {i.workitem_uid for i in win.worklist.model.items}

    def post(performer: str) -> str:
        ds = {"00741200": {"vr": "CS", "Value": ["HIGH"]}, "00741204": {"vr": "LO", "Value": ["CT HEAD PUSHED"]},
              "0020000D": {"vr": "UI", "Value": [generate_uid()]}, "00100020": {"vr": "LO", "Value": ["SYN-PUSH"]},
              "00404034": {"vr": "SQ", "Value": [{"00404009": {"vr": "SQ", "Value": [{
                  "00080100": {"vr": "SH", "Value": [performer]}, "00080102": {"vr": "SH", "Value": ["READROOM"]},
                  "00080104": {"vr": "LO", "Value": [performer]}}]}}]}}
        r = requests.post(f"{reading_cloud.base_url}/workitems", data=json.dumps(ds),
                          auth=reading_cloud.auth("clinic"), headers={"Content-Type": "application/dicom+json"},
                          timeout=10)
        assert r.status_code == 201
        return r.headers["Location"].rsplit("/", 1)[1]

    with qtbot.assertNotEmitted(win.worklist.items_loaded, wait=3000):
        post("reader2")                                     # another reader's new work: no refresh here
    uid = post("reader1")
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: uid in {i.workitem_uid for i in win.worklist.model.items}, timeout=15000)
    assert time.monotonic() - t0 < 15 and uid not in before
    new = next(i for i in win.worklist.model.items if i.workitem_uid == uid)
    assert win.worklist.model.items[0].priority in ("HIGH", "STAT") and new.state == "SCHEDULED"
    win.close()
    assert win.ws.events is None                             # the listener stops with the window
