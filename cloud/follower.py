"""Follows Orthanc's /changes feed and turns stable studies into routed workitems.

Owns: reading a study's facts from Orthanc's REST API, building its UPS workitem (the wire format in
docs/dev/team-contracts.md), asking cloud.routing for priority/performer/deadline, creating it at most once
per study (WorkitemStore.create_for_study), remembering the feed position in the worklist database, and
handing newly stored SR instances to cloud.ehr_outbound.handle_stored_sr (if that module exists) so reports
reach DIR/outbound. Runs in a background thread of the worklist service; survives Orthanc restarts by retrying.
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pydicom
import requests
from pydicom.dataset import Dataset

from cloud.config import CloudConfig
from cloud.routing import NON_IMAGE_MODALITIES, RoutingDecision, StudyFacts, deadline, is_reading_task, route
from cloud.ups import Event, UpsError, WorkitemStore, dicom_dt

log = logging.getLogger("readroom.cloud.follower")

SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
FEED_KEY = "orthanc_changes_seq"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning[:64]
    return c


def build_workitem(study: dict, decision: RoutingDecision, config: CloudConfig, base_url: str,
                   now: dt.datetime) -> dict:
    """The DICOM JSON workitem for a study. ``study`` keys: StudyInstanceUID, StudyDescription, PatientName,
    PatientID, IssuerOfPatientID, PatientSex, PatientBirthDate, PatientAge, InstitutionName, AccessionNumber,
    modality, body_part, series_uids."""
    ds = Dataset()
    ds.ProcedureStepState = "SCHEDULED"
    ds.ScheduledProcedureStepPriority = decision.priority
    ds.ScheduledProcedureStepStartDateTime = dicom_dt(now)
    ds.ExpectedCompletionDateTime = dicom_dt(deadline(now, decision.priority, config.sla_minutes))
    ds.InputReadinessState = "READY"
    ds.ProcedureStepLabel = (study.get("StudyDescription") or "Study")[:64]
    ds.WorklistLabel = "ReadRoom"
    for kw in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientSex", "PatientBirthDate", "PatientAge",
               "AccessionNumber"):
        setattr(ds, kw, study.get(kw) or "")
    ds.StudyInstanceUID = study["StudyInstanceUID"]
    ref = Dataset()
    ref.StudyInstanceUID = study["StudyInstanceUID"]
    if len(study.get("series_uids") or []) == 1:
        ref.SeriesInstanceUID = study["series_uids"][0]
    ref.ReferencedSOPSequence = []
    url = f"{base_url}/studies/{study['StudyInstanceUID']}"
    ref.TypeOfInstances = "DICOM"
    # Referenced Instances and Access macro (PS3.3 Table 10-3b): the URL in the WADO-RS Retrieval Sequence; also
    # at the item's top level, where earlier ReadRoom clients looked for it
    ref.WADORSRetrievalSequence = [Dataset()]
    ref.WADORSRetrievalSequence[0].RetrieveURL = url
    ref.RetrieveURL = url
    ds.InputInformationSequence = [ref]
    performers = []
    if decision.reader:
        user = config.users[decision.reader]
        p = Dataset()
        p.HumanPerformerCodeSequence = [_code(user.name, "READROOM", user.display_name)]
        p.HumanPerformerName = user.display_name[:64]
        performers.append(p)
    ds.ScheduledHumanPerformersSequence = performers
    inst = study.get("InstitutionName") or ""
    site = "".join(ch for ch in inst.upper() if ch.isalnum())[:16] or "UNKNOWN"
    ds.ScheduledStationGeographicLocationCodeSequence = [_code(site, "READROOM", inst or "Unknown site")]
    params = []
    for (scheme, value, meaning), text in (((("DCM", "121139", "Modality")), study.get("modality")),
                                           ((("DCM", "123014", "Target Region")), study.get("body_part"))):
        if text:
            item = Dataset()
            item.ValueType = "TEXT"
            item.ConceptNameCodeSequence = [_code(value, scheme, meaning)]
            item.TextValue = text
            params.append(item)
    ds.ScheduledProcessingParametersSequence = params
    if decision.subspecialty:
        ds.ScheduledWorkitemCodeSequence = [_code(decision.subspecialty.upper(), "READROOM",
                                                  f"Read ({decision.subspecialty})")]
    return ds.to_json_dict()


class OrthancFollower:
    def __init__(self, store: WorkitemStore, config: CloudConfig, orthanc_url: str, auth: tuple[str, str],
                 base_url: str, outbound_dir: Path, publish: Callable[[list[Event]], None],
                 poll_s: float = 0.5, clock: Callable[[], dt.datetime] | None = None):
        self.store, self.config = store, config
        self.orthanc_url = orthanc_url.rstrip("/")
        self.base_url = base_url.rstrip("/")
        self.outbound_dir = Path(outbound_dir)
        self.publish = publish
        self.poll_s = poll_s
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.http = requests.Session()
        self.http.auth = auth
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- Orthanc reads
    def _get(self, path: str, **params):
        r = self.http.get(self.orthanc_url + path, params=params, timeout=30)
        r.raise_for_status()
        return r

    def study_info(self, study_id: str) -> tuple[StudyFacts, dict]:
        st = self._get(f"/studies/{study_id}").json()
        tags = dict(st.get("PatientMainDicomTags") or {})
        tags.update(st.get("MainDicomTags") or {})
        series = self._get(f"/studies/{study_id}/series").json()
        mods, parts, image_series, sample = set(), set(), [], None
        for s in series:
            m = (s.get("MainDicomTags") or {})
            mod = (m.get("Modality") or "").upper()
            if mod:
                mods.add(mod)
            if mod not in NON_IMAGE_MODALITIES:
                image_series.append(m.get("SeriesInstanceUID"))
                if m.get("BodyPartExamined"):
                    parts.add(m["BodyPartExamined"].upper())
                if sample is None and s.get("Instances"):
                    sample = s["Instances"][0]
        extra = {}
        if sample:
            extra = self._get(f"/instances/{sample}/simplified-tags").json()
            if extra.get("BodyPartExamined"):
                parts.add(str(extra["BodyPartExamined"]).upper())
        for kw in ("IssuerOfPatientID", "InstitutionName", "PatientAge", "RequestedProcedurePriority"):
            if not tags.get(kw) and isinstance(extra.get(kw), str):
                tags[kw] = extra[kw]
        image_mods = sorted(mods - NON_IMAGE_MODALITIES)
        facts = StudyFacts(study_uid=tags.get("StudyInstanceUID", ""), modalities=frozenset(image_mods),
                           body_parts=frozenset(parts), description=tags.get("StudyDescription", ""),
                           requested_priority=tags.get("RequestedProcedurePriority", ""),
                           study_date=tags.get("StudyDate", ""))
        tags.update(modality="\\".join(image_mods) if image_mods else "", body_part=min(parts) if parts else "",
                    series_uids=[u for u in image_series if u])
        return facts, tags

    def route_study(self, study_id: str) -> str | None:
        facts, tags = self.study_info(study_id)
        now = self.clock()
        if not facts.study_uid or not is_reading_task(facts, self.config, now):
            log.info("a stable study is not a reading task (reports only, or an old prior): no workitem")
            return None
        if self.store.routed_workitem(facts.study_uid):
            return None
        decision = route(facts, self.config, now, self.store.open_workload())
        log.info("routing a new study: priority %s, %s", decision.priority, decision.reason)
        ds = build_workitem(tags, decision, self.config, self.base_url, now)
        uid, events = self.store.create_for_study(facts.study_uid, ds)
        if events:
            self.publish(events)
        return uid

    def handle_new_instance(self, instance_id: str) -> None:
        r = self.http.get(f"{self.orthanc_url}/instances/{instance_id}/metadata/SopClassUid", timeout=30)
        if r.status_code != 200 or not r.text.startswith(SR_CLASS_PREFIX):
            return
        try:
            from cloud import ehr_outbound
        except ImportError:
            log.warning("an SR was stored but cloud.ehr_outbound is not available: no EHR outbound written")
            return
        data = self._get(f"/instances/{instance_id}/file").content
        ds = pydicom.dcmread(io.BytesIO(data))
        self.outbound_dir.mkdir(parents=True, exist_ok=True)
        written = ehr_outbound.handle_stored_sr(ds, self.outbound_dir)
        log.info("report SR stored: wrote %d outbound file(s)", len(written or []))
        if ehr_outbound.is_addendum(ds):
            self.record_addendum(ds)

    def record_addendum(self, ds: pydicom.Dataset) -> str | None:
        """An addendum SR was stored: reference it in its study's COMPLETED workitem (next to the report)."""
        study, series, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        item = {"0040E020": {"vr": "CS", "Value": ["DICOM"]},  # Type of Instances
                "0020000D": {"vr": "UI", "Value": [study]},
                "0020000E": {"vr": "UI", "Value": [series]},
                "00081199": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": [str(ds.SOPClassUID)]},
                                                     "00081155": {"vr": "UI", "Value": [sop]}}]},
                "0040E025": {"vr": "SQ", "Value": [  # WADO-RS Retrieval Sequence > Retrieve URL
                    {"00081190": {"vr": "UR", "Value": [f"{self.base_url}/studies/{study}"]}}]}}
        uid = self.store.record_output(study, item, sop)
        if uid:
            log.info("addendum referenced in its study's completed workitem")
        else:
            log.info("addendum stored for a study without a completed workitem: not referenced")
        return uid

    # ---- the feed
    def poll_once(self) -> int:
        """Process one page of /changes; returns how many changes were handled."""
        since = int(self.store.get_kv(FEED_KEY, "0"))
        page = self._get("/changes", since=since, limit=100).json()
        changes = page.get("Changes") or []
        for ch in changes:
            kind, rid = ch.get("ChangeType"), ch.get("ID")
            try:
                if kind == "StableStudy":
                    self.route_study(rid)
                elif kind == "NewInstance":
                    self.handle_new_instance(rid)
            except requests.HTTPError as e:
                if e.response is not None and e.response.status_code == 404:
                    log.info("resource of change %s was deleted before it was handled", ch.get("Seq"))
                else:
                    raise
            except UpsError as e:  # its message may quote a value of the study (invalid DICOM JSON: ...)
                log.warning("workitem for change %s not created (refused, status %s)", ch.get("Seq"), e.status)
            except Exception as e:  # a bad study must not stop the feed; it is logged without patient data:
                # the type only (a message or traceback may quote tag values), the traceback at DEBUG
                log.error("change %s (%s) could not be handled: %s", ch.get("Seq"), kind, type(e).__name__,
                          exc_info=log.isEnabledFor(logging.DEBUG))
            self.store.set_kv(FEED_KEY, str(ch.get("Seq", since)))
        last = page.get("Last")
        if not changes and isinstance(last, int) and last > since:
            self.store.set_kv(FEED_KEY, str(last))
        return len(changes)

    def run(self) -> None:
        backoff = self.poll_s
        while not self._stop.is_set():
            try:
                n = self.poll_once()
                backoff = self.poll_s
                if n:
                    continue
            except requests.RequestException as e:
                log.warning("Orthanc not reachable (%s); retrying", type(e).__name__)
                backoff = min(max(backoff * 2, 0.5), 5.0)
            self._stop.wait(backoff)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="orthanc-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
