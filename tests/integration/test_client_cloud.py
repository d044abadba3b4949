"""cloud_client against the real reference cloud (nginx + Orthanc + UPS-RS service) on loopback.

Read-only checks use the shared seeded ``cloud``; anything that changes workitems or kills Orthanc uses this
module's own cloud (``own_cloud``), so other tests sharing the session cloud are not disturbed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from cloud_client import paths
from cloud_client.archive import ArchiveSink
from cloud_client.audit import AuditTrail
from cloud_client.cache import InstanceCache
from cloud_client.errors import AlreadyClaimed, AuthError
from cloud_client.profiles import ServerProfile
from cloud_client.retrieve import StudyFetcher
from cloud_client.session import DicomWebSession
from cloud_client.worklist import WorklistClient

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def session_for(cloud, user="reader1", password=None, **kw) -> DicomWebSession:
    return DicomWebSession(ServerProfile("test", cloud.base_url, user, **kw),
                           password if password is not None else cloud.users[user])


# ------------------------------------------------------------------------------------------ own cloud helpers
@pytest.fixture(scope="module")
def own_cloud(tmp_path_factory):
    from tests.fixtures.cloud import _require_servers

    _require_servers()
    from cloud.launcher import CloudProcess

    c = CloudProcess(tmp_path_factory.mktemp("client-cloud"), seed_demo=False)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def ct_series(own_cloud, tmp_path_factory):
    """A 120-slice 512x512 CT stored in own_cloud through STOW-RS (as the clinic)."""
    from cloud.demo_data import write_ct_series

    files = write_ct_series(tmp_path_factory.mktemp("ct"), n_slices=120, rows=512, cols=512, key="client-kill")
    sess = session_for(own_cloud, "clinic")
    dss = [pydicom.dcmread(f) for f in files]
    for i in range(0, len(dss), 30):
        sess.stow(dss[i:i + 30])
    return files


def make_workitem(cloud, study_uid: str, performer: str | None, priority="MEDIUM", deadline_h=4.0) -> str:
    """Create a SCHEDULED workitem as a scheduler would (UPS-RS Create)."""
    now = datetime.now(UTC)
    uid = generate_uid(prefix="2.25.")
    fmt = "%Y%m%d%H%M%S+0000"
    ds = {
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.34.6.1"]},
        "00080018": {"vr": "UI", "Value": [uid]},
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},
        "00741200": {"vr": "CS", "Value": [priority]},
        "00404005": {"vr": "DT", "Value": [now.strftime(fmt)]},
        "00404011": {"vr": "DT", "Value": [(now + timedelta(hours=deadline_h)).strftime(fmt)]},
        "00404041": {"vr": "CS", "Value": ["READY"]},
        "00741204": {"vr": "LO", "Value": ["CT HEAD TEST"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "SYNTHETIC^CLIENTTEST"}]},
        "00100020": {"vr": "LO", "Value": ["RRTEST-1"]},
        "0020000D": {"vr": "UI", "Value": [study_uid]},
        "00404021": {"vr": "SQ", "Value": [{"0020000D": {"vr": "UI", "Value": [study_uid]},
                                            "00081199": {"vr": "SQ", "Value": []}}]},
        "00404034": {"vr": "SQ", "Value": [] if performer is None else [{
            "00404009": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": [performer]},
                                                "00080102": {"vr": "SH", "Value": ["READROOM"]},
                                                "00080104": {"vr": "LO", "Value": [performer]}}]}}]},
    }
    sess = session_for(cloud, "clinic")
    sess.request("POST", "workitems", params={"workitem": uid}, json=ds,
                 headers={"Content-Type": "application/dicom+json"}, ok=(201,))
    return uid


# The Part 10 marker with the start of its file meta group (0002,xxxx): a bare b"DICM" turns up by chance in
# about one of every 4 GB of ciphertext (a flaky test on a 100 MB cache); these six bytes do not.
PART10 = b"DICM\x02\x00"


def assert_no_plaintext(home: Path, needles: list[bytes]) -> None:
    for f in home.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            for n in needles:
                assert n not in blob, f"{n!r} found in {f.relative_to(home)}"


# ------------------------------------------------------------------------------------------ shared seeded cloud
@pytest.mark.slow
def test_retrieval_pixel_exact_for_uncompressed_rle_and_j2k(cloud, readroom_home):
    wanted = {"1.2.840.10008.1.2.1": None, "1.2.840.10008.1.2.5": None, "1.2.840.10008.1.2.4.90": None}
    for st in cloud.seeded:
        if st.transfer_syntax in wanted and wanted[st.transfer_syntax] is None and st.modality in ("CT", "DX"):
            wanted[st.transfer_syntax] = st
    assert all(wanted.values()), "the demo should hold ELE, RLE and J2K lossless studies"
    cache = InstanceCache()
    fetcher = StudyFetcher(session_for(cloud, "reader1"), cache)
    for ts, st in wanted.items():
        seen, meta = {}, []
        result = fetcher.fetch_study(st.study_uid, on_instance=seen.__setitem__, on_metadata=meta.extend)
        assert result.complete and result.fetched == len(st.files) == len(seen)
        assert {m["00080018"]["Value"][0] for m in meta} == set(seen)  # WADO-RS metadata for the viewer
        for f in st.files:
            src = pydicom.dcmread(f)
            got = cache.get_dataset(src.SOPInstanceUID)
            assert got.file_meta.TransferSyntaxUID == ts  # "*" = as stored, no server transcoding
            assert np.array_equal(got.pixel_array, src.pixel_array), f.name
            assert np.array_equal(seen[src.SOPInstanceUID].pixel_array, src.pixel_array)
    names = [st.patient_name.encode() for st in cloud.seeded] + [st.patient_id.encode() for st in cloud.seeded]
    assert_no_plaintext(readroom_home, [PART10] + names)


def test_wrong_password_is_a_clear_auth_outcome(cloud, readroom_home):
    bad = session_for(cloud, "reader1", password="not-the-password")
    with pytest.raises(AuthError, match="[Ss]ign in again"):
        bad.check_sign_in()
    with pytest.raises(AuthError):
        WorklistClient(bad).my_items()
    env = dict(os.environ, READROOM_PASSWORD="not-the-password")
    out = subprocess.run([sys.executable, "-m", "app.cli", "worklist", "--server", cloud.base_url, "--user",
                          "reader1"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert out.returncode == 3
    assert "Sign in again" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "app.cli", "login", "--server", cloud.base_url, "--user",
                          "reader1"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert out.returncode == 3
    ev = AuditTrail().events()
    assert ev[-1].action == "sign-in" and ev[-1].outcome == "failure"


def test_login_stores_password_and_cli_uses_it(cloud, readroom_home, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "READROOM_PASSWORD"}
    run = lambda *a, **kw: subprocess.run([sys.executable, "-m", "app.cli", *a], capture_output=True, text=True, check=False,
                                          cwd=REPO, timeout=120, **kw)
    assert run("profile", "add", "demo", "--server", cloud.base_url, "--user", "reader2", env=env).returncode == 0
    out = run("login", "--profile", "demo", env=dict(env, READROOM_PASSWORD="reader2"))
    assert out.returncode == 0, out.stderr
    out = run("worklist", "--json", env=env)  # one saved profile: used; password from the keyring
    assert out.returncode == 0, out.stderr
    import json

    items = json.loads(out.stdout)
    assert items and items[0]["is_stat"]  # reader2 has the STAT head CT, first
    assert all(i["assigned_to"] == "reader2" for i in items)
    # the password went to the keyring, not into any file under READROOM_HOME
    from cloud_client import profiles

    saved = profiles.get_profile("demo")
    monkeypatch.delenv("READROOM_PASSWORD", raising=False)
    assert profiles.resolve_password(saved) == "reader2"
    text = (readroom_home / "config" / "profiles.json").read_text()
    assert "password" not in text.lower() and "secret" not in text.lower()


def test_worklist_items_sorted_and_filled(cloud, readroom_home):
    items = WorklistClient(session_for(cloud, "reader2")).my_items()
    assert items, "reader2 has demo items"
    ranks = [0 if i.is_stat else 1 for i in items]
    assert ranks == sorted(ranks)
    stat = items[0]
    head = next(s for s in cloud.seeded if s.priority == "STAT")
    assert stat.study_uid == head.study_uid and stat.modality == "CT" and stat.body_part == "HEAD"
    assert stat.patient_name == head.patient_name and stat.patient_id == head.patient_id
    assert stat.deadline is not None and stat.state == "SCHEDULED" and stat.clinic
    deadlines = [i.deadline for i in items if not i.is_stat]
    assert deadlines == sorted(deadlines)


def test_priors_newest_first_same_issuer(cloud, readroom_home):
    by_patient: dict[str, list] = {}
    for st in cloud.seeded:
        by_patient.setdefault(st.patient_id, []).append(st)
    studies = next(v for v in by_patient.values() if len(v) > 1)
    current = max(studies, key=lambda s: s.study_date)
    wl = WorklistClient(session_for(cloud, "reader1"))
    priors = wl.priors(patient_id=current.patient_id, issuer=current.issuer_of_patient_id,
                       exclude_study=current.study_uid)
    expected = sorted((s for s in studies if s is not current), key=lambda s: s.study_date, reverse=True)
    assert [p.study_uid for p in priors] == [s.study_uid for s in expected]
    # the same PatientID from another assigning authority is another patient
    assert wl.priors(patient_id=current.patient_id, issuer="SOME-OTHER-HOSPITAL",
                     exclude_study=current.study_uid) == []


def test_cli_fetch_prints_counts(cloud, readroom_home):
    st = next(s for s in cloud.seeded if s.modality == "DX")
    env = dict(os.environ, READROOM_PASSWORD="reader1")
    out = subprocess.run([sys.executable, "-m", "app.cli", "fetch", "--quiet", "--server", cloud.base_url,
                          "--user", "reader1", st.study_uid], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert f"instances: {len(st.files)}" in out.stdout and "bytes: " in out.stdout and "seconds: " in out.stdout


# ------------------------------------------------------------------------------------------ own cloud (mutating)
def test_claim_race_exactly_one_wins(own_cloud, readroom_home, tmp_path):
    study = generate_uid()
    for _ in range(3):
        uid = make_workitem(own_cloud, study, "reader1")
        clients = [WorklistClient(session_for(own_cloud, "reader1"), store=None,
                                  audit=AuditTrail(tmp_path / f"audit{n}.jsonl")) for n in range(2)]
        # separate workstations: separate transaction stores
        from cloud_client.worklist import TransactionStore

        for n, c in enumerate(clients):
            c.store = TransactionStore(tmp_path / f"tx{n}-{uid}.json")
        barrier = threading.Barrier(2)
        outcomes: list = [None, None]

        def go(n, barrier=barrier, clients=clients, outcomes=outcomes, uid=uid):
            barrier.wait()
            try:
                outcomes[n] = clients[n].claim(uid)
            except AlreadyClaimed as exc:
                outcomes[n] = exc

        ts = [threading.Thread(target=go, args=(n,)) for n in range(2)]
        [t.start() for t in ts]
        [t.join(30) for t in ts]
        winners = [o for o in outcomes if not isinstance(o, AlreadyClaimed)]
        losers = [o for o in outcomes if isinstance(o, AlreadyClaimed)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert winners[0].state == "IN PROGRESS"
        assert "Another reader took this study" in str(losers[0])
        loser = clients[outcomes.index(losers[0])]
        assert loser.store.held(loser.session.base_url, "reader1") == []  # nothing half-held


def test_claim_complete_after_restart_and_release(own_cloud, readroom_home, tmp_path):
    study = generate_uid()
    uid_a = make_workitem(own_cloud, study, "reader1", priority="LOW")
    uid_b = make_workitem(own_cloud, generate_uid(), "reader1", priority="HIGH", deadline_h=0.5)
    uid_pool = make_workitem(own_cloud, generate_uid(), None, priority="MEDIUM")
    cache = InstanceCache()
    wl = WorklistClient(session_for(own_cloud, "reader1"), cache=cache)
    mine = [i.workitem_uid for i in wl.my_items()]
    assert mine.index(uid_b) < mine.index(uid_a) and uid_pool not in mine
    with_pool = [i.workitem_uid for i in wl.my_items(include_pool=True)]
    assert uid_pool in with_pool

    item = wl.claim(uid_a)
    assert item.state == "IN PROGRESS" and item.held_here
    cache.pin(study)
    # "restart the workstation": a new client with a fresh session reads the persisted Transaction UID
    wl2 = WorklistClient(session_for(own_cloud, "reader1"), cache=cache)
    assert next(i for i in wl2.my_items() if i.workitem_uid == uid_a).held_here
    sr = _tiny_sr(study)
    sink = ArchiveSink(wl2.session, wl2)
    sink.store([sr])
    sink.store([sr])  # idempotent retry
    sink.complete_workitem(uid_a, [(sr.SOPClassUID, sr.SOPInstanceUID, sr.SeriesInstanceUID, study)])
    # the outbox may retry after a lost answer: completing again is a no-op, not an error
    sink.complete_workitem(uid_a, [(sr.SOPClassUID, sr.SOPInstanceUID, sr.SeriesInstanceUID, study)])
    done = wl2.get(uid_a)
    assert done.state == "COMPLETED" and study not in cache.pinned()
    raw = wl2.session.request("GET", f"workitems/{uid_a}").json()
    raw = raw[0] if isinstance(raw, list) else raw
    perf = raw["00741216"]["Value"][0]
    out = perf["00404033"]["Value"][0]
    assert out["00081199"]["Value"][0]["00081155"]["Value"][0] == sr.SOPInstanceUID
    assert uid_a not in [i.workitem_uid for i in wl2.my_items()]

    wl2.claim(uid_b)
    wl2.release(uid_b)
    assert wl2.get(uid_b).state == "CANCELED"
    assert uid_b not in [i.workitem_uid for i in wl2.my_items()]
    actions = [(e.action, e.outcome, e.workitem_uid) for e in AuditTrail().events()]
    for action, wid in (("claim", uid_a), ("complete", uid_a), ("claim", uid_b), ("release", uid_b)):
        assert (action, "success", wid) in actions
    assert ("store", "success", None) in actions and ("worklist-query", "success", None) in actions
    assert AuditTrail().verify() == len(actions)


def test_store_and_complete_together_completes_only_after_the_store(own_cloud, readroom_home):
    """The outbox's one-call delivery: the final-state Update goes out while the SR is being stored, but the
    workitem becomes COMPLETED only after the STOW succeeded; a failed STOW leaves it IN PROGRESS for a retry."""
    from io import BytesIO

    from cloud_client.errors import ArchiveUnavailable

    study = generate_uid()
    uid = make_workitem(own_cloud, study, "reader1")
    wl = WorklistClient(session_for(own_cloud, "reader1"))
    wl.claim(uid)
    sr = _tiny_sr(study)
    buf = BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    ref = (sr.SOPClassUID, sr.SOPInstanceUID, sr.SeriesInstanceUID, study)
    sink = ArchiveSink(wl.session, wl)

    def stow_down():
        time.sleep(0.2)  # still storing while the Update is answered
        raise ArchiveUnavailable(detail="test: archive down during the STOW")

    with pytest.raises(ArchiveUnavailable):
        wl.complete(uid, output_sop_refs=[ref], alongside=stow_down)
    assert wl.get(uid).state == "IN PROGRESS" and wl.store.held(wl.session.base_url, "reader1")
    sink.store_part10_and_complete([buf.getvalue()], [study], uid, [ref])
    assert wl.get(uid).state == "COMPLETED"
    found = wl.session.qido_instances(study)
    assert any(row["00080018"]["Value"][0] == sr.SOPInstanceUID for row in found)


def test_a_completed_claim_that_comes_back_after_a_power_cut_is_harmless(own_cloud, readroom_home):
    """Completing forgets the claim without waiting for the disk (no fsync). If a power cut undoes that, the
    restored claim names a COMPLETED workitem: completing again succeeds, and the worklist forgets it."""
    from io import BytesIO

    study = generate_uid()
    uid = make_workitem(own_cloud, study, "reader1")
    wl = WorklistClient(session_for(own_cloud, "reader1"))
    wl.claim(uid)
    before_cut = wl.store.path.read_bytes()  # what the disk may still hold after the cut
    sr = _tiny_sr(study)
    buf = BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    ref = (sr.SOPClassUID, sr.SOPInstanceUID, sr.SeriesInstanceUID, study)
    ArchiveSink(wl.session, wl).store_part10_and_complete([buf.getvalue()], [study], uid, [ref])
    assert wl.get(uid).state == "COMPLETED" and uid not in wl.store.held(wl.session.base_url, "reader1")

    wl.store.path.write_bytes(before_cut)  # the removal was lost
    again = WorklistClient(session_for(own_cloud, "reader1"))
    assert uid in again.store.held(again.session.base_url, "reader1")
    again.complete(uid, output_sop_refs=[ref])  # e.g. the outbox retrying: succeeds, changes nothing
    assert again.get(uid).state == "COMPLETED"
    assert uid not in again.store.held(again.session.base_url, "reader1")
    again.store.path.write_bytes(before_cut)
    assert uid not in {i.workitem_uid for i in again.my_items()}
    assert uid not in again.store.held(again.session.base_url, "reader1")  # the worklist forgot it


def _tiny_sr(study_uid: str) -> pydicom.Dataset:
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "SYNTHETIC^CLIENTTEST", "RRTEST-1", "SR"
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    ds.ContinuityOfContent = "SEPARATE"
    return ds


@pytest.mark.slow
def test_orthanc_killed_mid_retrieval_resumes(own_cloud, ct_series, readroom_home):
    study = pydicom.dcmread(ct_series[0], stop_before_pixels=True).StudyInstanceUID
    cache = InstanceCache()
    fetcher = StudyFetcher(session_for(own_cloud, "reader1"), cache, retry_for_s=90)
    killed = threading.Event()
    count = [0]
    lock = threading.Lock()

    def on_instance(sop, ds):
        with lock:
            count[0] += 1
            if count[0] == 25 and not killed.is_set():
                own_cloud.kill_orthanc()  # SIGKILL while the series is streaming
                killed.set()

    box: list = []
    t = threading.Thread(target=lambda: box.append(fetcher.fetch_study(study, on_instance=on_instance)))
    t.start()
    assert killed.wait(120)
    time.sleep(1.0)
    # Restart from this (long-lived) thread: the supervisor ties the child's life to the spawning thread.
    own_cloud.start_orthanc()
    t.join(180)
    assert box, "fetch did not finish"
    result = box[0]
    assert killed.is_set()
    assert result.complete and result.retries >= 1
    assert result.fetched + result.from_cache == len(ct_series)
    # no duplicates or corrupt entries: one index row per instance, each decodes to the source pixels
    rows = cache.instances(study)
    assert len(rows) == len({r.sop_uid for r in rows}) == len(ct_series)
    objects = [f for f in (paths.cache_dir() / "objects").rglob("*") if f.is_file()]
    assert len(objects) == len(ct_series)  # no orphan or temp files left behind
    for f in ct_series[::7]:
        src = pydicom.dcmread(f)
        assert np.array_equal(cache.get_dataset(src.SOPInstanceUID).pixel_array, src.pixel_array)
    # a second fetch refetches nothing
    again = fetcher.fetch_study(study)
    assert again.fetched == 0 and again.from_cache == len(ct_series)
    assert_no_plaintext(readroom_home, [PART10])


def _small_study(cloud, n=4, rows=64) -> tuple[str, list[pydicom.Dataset]]:
    from tests.unit.test_client_cache import make_instance

    study, series = generate_uid(), generate_uid()
    dss = [make_instance(study, series, k + 1, rows=rows, name="SYNTHETIC^PREFETCH") for k in range(n)]
    session_for(cloud, "clinic").stow(dss)
    return study, dss


def test_instances_cached_by_a_prefetch_during_a_fetch_are_delivered(own_cloud, readroom_home, monkeypatch):
    """A prefetch of the same study caches instances after the reader's fetch looked at the cache: the fetch
    must hand them to the viewer from the cache (it used to skip them, leaving the volume incomplete)."""
    study, _ = _small_study(own_cloud, n=12)
    cache = InstanceCache()
    StudyFetcher(session_for(own_cloud, "reader1"), cache).fetch_study(study)  # the prefetch, done
    everything = cache.cached_sop_uids(study)
    assert len(everything) == 12
    early = set(sorted(everything)[:3])  # what the reader's fetch saw when it started
    monkeypatch.setattr(cache, "cached_sop_uids", lambda _study: set(early))
    got = []
    result = StudyFetcher(session_for(own_cloud, "reader1"), cache).fetch_study(
        study, on_instance=lambda sop, ds: got.append((sop, ds.pixel_array.shape)))
    assert sorted(sop for sop, _ in got) == sorted(everything)  # each once, none missing
    # at most the priority (middle) slice, which goes out on its own request before the series is looked at
    assert result.complete and result.fetched <= 1 and result.fetched + result.from_cache == 12
    assert all(shape == (64, 64) for _, shape in got)


def test_prefetch_and_reader_fetch_of_one_study_at_once(own_cloud, readroom_home):
    study, dss = _small_study(own_cloud, n=40)
    cache = InstanceCache()
    fetcher = StudyFetcher(session_for(own_cloud, "reader1"), cache)
    got: list[str] = []
    pre = threading.Thread(target=lambda: fetcher.fetch_study(study, pin="prefetch"))
    pre.start()
    result = fetcher.fetch_study(study, on_instance=lambda sop, ds: got.append(sop))
    pre.join(60)
    assert sorted(got) == sorted(str(d.SOPInstanceUID) for d in dss) and result.complete
    assert len(cache.instances(study)) == 40


def test_prefetch_takes_the_most_urgent_assigned_studies(own_cloud, readroom_home):
    from cloud_client.prefetch import Prefetcher

    routine, _ = _small_study(own_cloud)
    urgent, _ = _small_study(own_cloud)
    later, _ = _small_study(own_cloud)
    make_workitem(own_cloud, routine, "reader2", priority="MEDIUM", deadline_h=2)
    urgent_item = make_workitem(own_cloud, urgent, "reader2", priority="HIGH", deadline_h=0.5)
    make_workitem(own_cloud, later, "reader2", priority="LOW", deadline_h=8)
    cache = InstanceCache()
    sess = session_for(own_cloud, "reader2")
    pf = Prefetcher(WorklistClient(sess, cache=cache), StudyFetcher(sess, cache), count=2, interval_s=3600)
    assert [i.study_uid for i in pf.next_items()] == [urgent, routine]
    pf.start()
    deadline = time.monotonic() + 60
    while len(pf.status.fetched) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pf.stop()
    assert pf.status.fetched == [urgent, routine]
    assert len(cache.instances(urgent)) == 4 and len(cache.instances(routine)) == 4
    assert cache.instances(later) == []
    assert {urgent, routine} <= cache.pinned()  # assigned, not yet reported: never evicted
    cache.evict(0)
    assert len(cache.instances(urgent)) == 4
    # the urgent study leaves the list (here: given up): the next round unpins it, eviction may reclaim it
    wl = WorklistClient(sess, cache=None)
    wl.claim(urgent_item)
    wl.release(urgent_item)
    pf.run_once()
    assert urgent not in cache.pinned() and routine in cache.pinned()
    cache.evict(0)
    assert cache.instances(urgent) == [] and len(cache.instances(routine)) == 4


def test_claim_whose_answer_was_lost_is_recovered(own_cloud, readroom_home):
    """The workstation sent the claim, the server took it, the answer never arrived (pending TUID persisted)."""
    from cloud_client.worklist import TransactionStore, new_uid

    uid = make_workitem(own_cloud, generate_uid(), "reader1")
    sess = session_for(own_cloud, "reader1")
    store = TransactionStore()
    tuid = new_uid()
    store.put(sess.base_url, "reader1", uid, tuid, pending=True)
    body = {"00081195": {"vr": "UI", "Value": [tuid]}, "00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}}
    sess.request("PUT", f"workitems/{uid}/state", json=body, headers={"Content-Type": "application/dicom+json"})
    wl = WorklistClient(sess)
    item = wl.claim(uid)  # the retry reuses the TUID, sees 409, proves ownership
    assert item.state == "IN PROGRESS" and item.held_here
    # while someone else's pending TUID for the same item is refused as "already claimed"
    other = WorklistClient(session_for(own_cloud, "reader1"), store=TransactionStore(readroom_home / "other.json"))
    other.store.put(sess.base_url, "reader1", uid, new_uid(), pending=True)
    with pytest.raises(AlreadyClaimed):
        other.claim(uid)
    wl.release(uid)


@pytest.mark.slow
def test_real_slice_in_nine_transfer_syntaxes_is_pixel_exact(own_cloud, real_data, readroom_home):
    """One real MR slice stored as ELE, ILE, EBE, RLE, JPEG lossless (x2), JPEG-LS (x2), J2K lossless: fetched
    as stored ("*"), every copy decodes to exactly the same pixels as its source file."""
    files = sorted((real_data / "06_mr_slice_transfer_syntaxes").glob("*.dcm"))
    assert len(files) == 9
    sources = [pydicom.dcmread(f) for f in files]
    session_for(own_cloud, "clinic").stow(sources)
    cache = InstanceCache()
    result = StudyFetcher(session_for(own_cloud, "reader1"), cache).fetch_study(sources[0].StudyInstanceUID)
    assert result.complete and result.fetched == 9
    reference = sources[0].pixel_array
    for src in sources:
        got = cache.get_dataset(src.SOPInstanceUID)
        assert got.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
        assert np.array_equal(got.pixel_array, src.pixel_array), src.file_meta.TransferSyntaxUID
        assert np.array_equal(got.pixel_array, reference)


def test_profile_asks_for_a_compressed_transfer_syntax(own_cloud, readroom_home):
    """Over the internet a profile may ask the archive to send JPEG-LS lossless: smaller, still exact."""
    study, dss = _small_study(own_cloud, n=3, rows=128)
    jls = "1.2.840.10008.1.2.4.80"
    cache = InstanceCache()
    sess = session_for(own_cloud, "reader1", transfer_syntaxes=[jls, "*"])
    result = StudyFetcher(sess, cache).fetch_study(study)
    assert result.complete and result.transfer_syntax == jls
    for src in dss:
        got = cache.get_dataset(src.SOPInstanceUID)
        assert got.file_meta.TransferSyntaxUID == jls
        assert np.array_equal(got.pixel_array, src.pixel_array)
    assert result.bytes_fetched < sum(len(s.PixelData) for s in dss)


def test_cloud_logs_never_hold_patient_data(cloud, readroom_home):
    """The reference cloud's own logs (Orthanc, worklist service, nginx access and error logs) after seeding,
    routing, a worklist search, a priors QIDO with ?PatientID= and a refused request: no seeded name or ID."""
    import requests

    st = cloud.seeded[0]
    wl = WorklistClient(session_for(cloud, "reader1"))
    wl.my_items(include_pool=True)
    wl.priors(patient_id=st.patient_id, issuer=st.issuer_of_patient_id, exclude_study=st.study_uid)
    requests.get(f"{cloud.base_url}/studies", params={"PatientID": st.patient_id, "PatientName": st.patient_name},
                 auth=("reader1", "wrong-password"), timeout=10)           # refused: 401 with the query
    requests.get(f"{cloud.base_url}/workitems", params={"PatientID": st.patient_id, "NoSuchKey": "x"},
                 auth=cloud.auth("reader1"), timeout=10)                  # refused by the worklist service
    logs = [p for p in (cloud.dir / "logs").rglob("*") if p.is_file()]
    assert logs
    secrets = {s.patient_id for s in cloud.seeded} | {s.patient_name for s in cloud.seeded}
    secrets |= {s.patient_name.replace("^", "%5E") for s in cloud.seeded}
    for p in logs:
        text = p.read_text(errors="replace")
        leaked = sorted(s for s in secrets if s and s in text)
        assert not leaked, f"{p.name} holds patient data: {len(leaked)} value(s)"
