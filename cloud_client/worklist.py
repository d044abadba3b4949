"""The reader's worklist over UPS-RS (DICOM PS3.18 ch. 11, PS3.4 Annex CC).

Owns :class:`WorklistItem` (a plain value for the UI and CLI), :class:`WorklistClient` (search "my" items,
claim, release, complete, priors) and the local store of Transaction UIDs (``paths.data_dir()/worklist``, each
with its study UID once known, so completing needs no lookup), so a restarted workstation can still complete or
release what it holds: the server never returns a Transaction UID. A lost claim race (any 400/409 on claim)
re-reads the workitem and raises :class:`AlreadyClaimed`; it is never retried blindly. Wire format and paths:
docs/dev/team-contracts.md.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.valuerep import DA, DT

from . import paths
from .audit import FAILURE, SUCCESS, AuditTrail
from .errors import AlreadyClaimed, AuthError, CloudError, NotHeld, NotPermitted, RequestRejected
from .session import DICOM_JSON, DicomWebSession
from .vault import atomic_write

log = logging.getLogger(__name__)

SCHEDULED, IN_PROGRESS, COMPLETED, CANCELED = "SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED"
_PRIORITY_RANK = {"STAT": 0, "HIGH": 0, "MEDIUM": 1, "ROUTINE": 1, "LOW": 2}
PERFORMER_KEY = "ScheduledHumanPerformersSequence.HumanPerformerCodeSequence.CodeValue"
CODING_SCHEME = "READROOM"


@dataclass
class WorklistItem:
    """One UPS workitem as the reader sees it."""

    workitem_uid: str
    study_uid: str | None
    state: str
    priority: str  # HIGH (STAT) | MEDIUM | LOW
    patient_name: str = ""
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_sex: str = ""
    patient_age: str = ""
    patient_birth_date: date | None = None
    modality: str = ""
    body_part: str = ""
    study_description: str = ""
    site_id: str = ""
    clinic: str = ""
    scheduled: datetime | None = None
    deadline: datetime | None = None
    assigned_to: str | None = None  # reader's user name; None = shared pool
    retrieve_url: str | None = None
    held_here: bool = False  # this workstation holds its Transaction UID

    @property
    def is_stat(self) -> bool:
        return self.priority in ("HIGH", "STAT")

    @property
    def in_pool(self) -> bool:
        return self.assigned_to is None

    def sort_key(self) -> tuple:
        far = datetime.max.replace(tzinfo=UTC)
        return (_PRIORITY_RANK.get(self.priority, 1), _aware(self.deadline) or far,
                _aware(self.scheduled) or far, self.workitem_uid)

    def as_json(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            out[k] = v.isoformat() if isinstance(v, (date, datetime)) else v
        out["is_stat"] = self.is_stat
        return out


@dataclass
class PriorStudy:
    """Another study of the same patient (QIDO-RS result)."""

    study_uid: str
    study_date: date | None
    description: str = ""
    modalities: list[str] = field(default_factory=list)
    accession_number: str = ""
    instances: int | None = None


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _dt(value) -> datetime | None:
    if not value:
        return None
    try:
        v = DT(str(value))
        return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=v.tzinfo)
    except (ValueError, TypeError):
        return None


def _text(v) -> str:
    return "" if v is None else str(v)


def parse_workitem(data: dict, user: str | None = None) -> WorklistItem:
    """DICOM JSON workitem -> WorklistItem (missing optional attributes become empty values)."""
    ds = Dataset.from_json(data)
    study_uid = ds.get("StudyInstanceUID")
    retrieve_url = None
    for inp in ds.get("InputInformationSequence", []) or []:
        study_uid = study_uid or inp.get("StudyInstanceUID")
        for wado in inp.get("WADORSRetrievalSequence", []) or []:   # where the access macro puts it
            retrieve_url = retrieve_url or wado.get("RetrieveURL")
        retrieve_url = retrieve_url or inp.get("RetrieveURL")
    assigned = None
    for perf in ds.get("ScheduledHumanPerformersSequence", []) or []:
        for code in perf.get("HumanPerformerCodeSequence", []) or []:
            if code.get("CodeValue"):
                assigned = str(code.CodeValue)
                break
        if assigned:
            break
    site_id = clinic = ""
    for loc in ds.get("ScheduledStationGeographicLocationCodeSequence", []) or []:
        site_id, clinic = _text(loc.get("CodeValue")), _text(loc.get("CodeMeaning"))
        break
    modality = body_part = ""
    for p in ds.get("ScheduledProcessingParametersSequence", []) or []:
        concept = (p.get("ConceptNameCodeSequence") or [None])[0]
        if concept is None:
            continue
        if concept.get("CodeValue") == "121139":
            modality = _text(p.get("TextValue"))
        elif concept.get("CodeValue") == "123014":
            body_part = _text(p.get("TextValue"))
    birth = None
    if ds.get("PatientBirthDate"):
        try:
            d = DA(str(ds.PatientBirthDate))
            birth = date(d.year, d.month, d.day)
        except (ValueError, TypeError):
            birth = None
    return WorklistItem(
        workitem_uid=str(ds.SOPInstanceUID) if "SOPInstanceUID" in ds else "",
        study_uid=str(study_uid) if study_uid else None,
        state=_text(ds.get("ProcedureStepState")),
        priority=_text(ds.get("ScheduledProcedureStepPriority")) or "MEDIUM",
        patient_name=_text(ds.get("PatientName")),
        patient_id=_text(ds.get("PatientID")),
        issuer_of_patient_id=_text(ds.get("IssuerOfPatientID")),
        patient_sex=_text(ds.get("PatientSex")),
        patient_age=_text(ds.get("PatientAge")),
        patient_birth_date=birth,
        modality=modality,
        body_part=body_part,
        study_description=_text(ds.get("ProcedureStepLabel")),
        site_id=site_id,
        clinic=clinic,
        scheduled=_dt(ds.get("ScheduledProcedureStepStartDateTime")),
        deadline=_dt(ds.get("ExpectedCompletionDateTime")),
        assigned_to=assigned,
        retrieve_url=_text(retrieve_url) or None,
    )


def new_uid() -> str:
    """A fresh UID under the 2.25 (UUID) root, as the standard suggests for Transaction UIDs."""
    return f"2.25.{uuid.uuid4().int}"


class _FileLock:
    """Thread + process lock (fcntl on a side file) around the store's read-modify-write."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tlock = threading.Lock()
        self._fd: int | None = None

    def __enter__(self):
        self._tlock.acquire()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._fd is not None:
                os.close(self._fd)  # releases the flock
        finally:
            self._fd = None
            self._tlock.release()


class TransactionStore:
    """Transaction UIDs this workstation holds, persisted (atomic JSON file, UIDs only - no patient data).
    Safe when the GUI and the CLI use it at the same time."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else paths.data_dir() / "worklist" / "transactions.json"
        self._lock = _FileLock(self.path.with_name(self.path.name + ".lock"))

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.error("The local list of claimed studies is damaged; starting a new one.")
            return {}

    @staticmethod
    def _key(server: str, user: str, workitem_uid: str) -> str:
        return f"{server}|{user}|{workitem_uid}"

    def get(self, server: str, user: str, workitem_uid: str) -> dict | None:
        with self._lock:
            return self._read().get(self._key(server, user, workitem_uid))

    def put(self, server: str, user: str, workitem_uid: str, tuid: str, *, pending: bool,
            study_uid: str | None = None) -> None:
        """Record (or update) a claim. ``study_uid``, once known, is kept with it so completing or releasing
        the item needs no lookup to find the study whose cached images to unpin."""
        with self._lock:
            data = self._read()
            entry = data.get(self._key(server, user, workitem_uid)) or {}
            entry.update({"tuid": tuid, "pending": pending, "workitem_uid": workitem_uid,
                          "claimed_at": entry.get("claimed_at") or datetime.now(UTC).isoformat()})
            if study_uid:
                entry["study_uid"] = study_uid
            data[self._key(server, user, workitem_uid)] = entry
            atomic_write(self.path, json.dumps(data, indent=1).encode())

    def remove(self, server: str, user: str, workitem_uid: str, *, durable: bool = True) -> None:
        """Forget a claim. ``durable=False`` (the new file's bytes fsynced, its rename not) is for a workitem in a
        final state (COMPLETED): if a power cut undoes the rename, the old file - with every other claim intact -
        brings this claim back, which is harmless: the worklist finds the workitem COMPLETED and forgets it again,
        and completing it again succeeds. A released claim must not come back (someone else may hold the workitem
        by then): durable."""
        with self._lock:
            data = self._read()
            if data.pop(self._key(server, user, workitem_uid), None) is not None:
                atomic_write(self.path, json.dumps(data, indent=1).encode(), durable=durable)

    def held(self, server: str, user: str) -> list[str]:
        prefix = f"{server}|{user}|"
        with self._lock:
            return [v["workitem_uid"] for k, v in self._read().items() if k.startswith(prefix)]


class _AlongsideFailed(Exception):
    """Carries the error of :meth:`WorklistClient.complete`'s ``alongside`` work past the handling meant for
    the UPS requests (a 400/409 there may mean "already COMPLETED"; from a STOW it never does)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


class WorklistClient:
    """UPS-RS worklist for one reader. ``cache`` (optional InstanceCache) is unpinned on complete/release."""

    def __init__(self, session: DicomWebSession, user: str | None = None, *, audit: AuditTrail | None = None,
                 store: TransactionStore | None = None, cache=None, station_name: str | None = None) -> None:
        self.session = session
        self.user = user or session.user
        self.audit = audit if audit is not None else AuditTrail()
        self.store = store if store is not None else TransactionStore()
        self.cache = cache
        self.station_name = station_name or socket.gethostname()
        p = session.profile
        self._wp = p.workitems_path.strip("/")
        self._state_suffix = p.state_suffix.strip("/")
        self._side: ThreadPoolExecutor | None = None  # runs complete()'s ``alongside`` work
        self._side_lock = threading.Lock()

    # -- queries ----------------------------------------------------------------------------------------------
    def search(self, filters: dict[str, str] | None = None, *, limit: int | None = None) -> list[WorklistItem]:
        params: list[tuple[str, str]] = list((filters or {}).items())
        if limit:
            params.append(("limit", str(limit)))
        resp = self.session.request("GET", self._wp, params=params, headers={"Accept": DICOM_JSON},
                                    ok=(200, 204))
        if resp.status_code == 204 or not resp.content.strip():
            return []
        return [parse_workitem(d) for d in resp.json()]

    def get(self, workitem_uid: str) -> WorklistItem:
        resp = self.session.request("GET", f"{self._wp}/{workitem_uid}", headers={"Accept": DICOM_JSON})
        data = resp.json()
        item = parse_workitem(data[0] if isinstance(data, list) else data)
        item.workitem_uid = item.workitem_uid or workitem_uid
        item.held_here = self._tuid(workitem_uid) is not None
        return item

    def my_items(self, include_pool: bool = False) -> list[WorklistItem]:
        """SCHEDULED items assigned to me, IN PROGRESS items I hold (or assigned to me), optionally the pool.

        Sorted STAT/HIGH first, then by deadline.
        """
        try:
            items = {i.workitem_uid: i for i in self.search({PERFORMER_KEY: self.user})
                     if i.state in (SCHEDULED, IN_PROGRESS)}
            if include_pool:
                for i in self.search({"ProcedureStepState": SCHEDULED}):
                    if i.in_pool and i.state == SCHEDULED:
                        items.setdefault(i.workitem_uid, i)
            for uid in self.store.held(self.session.base_url, self.user):
                if uid not in items:
                    try:
                        held = self.get(uid)
                    except CloudError as exc:
                        if getattr(exc, "status", None) in (404, 410):
                            self.store.remove(self.session.base_url, self.user, uid)
                        continue
                    if held.state == IN_PROGRESS:
                        items[uid] = held
                    elif held.state in (COMPLETED, CANCELED):
                        self.store.remove(self.session.base_url, self.user, uid)
        except CloudError as exc:
            self._audit("worklist-query", FAILURE, detail=type(exc).__name__)
            raise
        for item in items.values():
            item.held_here = self._tuid(item.workitem_uid) is not None
        result = sorted(items.values(), key=WorklistItem.sort_key)
        self._audit("worklist-query", SUCCESS, detail=f"{len(result)} items")
        return result

    def priors(self, item: WorklistItem | None = None, *, patient_id: str | None = None,
               issuer: str | None = None, exclude_study: str | None = None) -> list[PriorStudy]:
        """Other studies of the same patient (PatientID + issuer), newest first."""
        if item is not None:
            patient_id = patient_id or item.patient_id
            issuer = issuer if issuer is not None else item.issuer_of_patient_id
            exclude_study = exclude_study or item.study_uid
        if not patient_id:
            return []
        try:
            rows = self.session.qido_studies(
                {"PatientID": patient_id},
                includefield=["IssuerOfPatientID", "StudyDescription", "ModalitiesInStudy", "StudyTime",
                              "NumberOfStudyRelatedInstances", "AccessionNumber"])
        except CloudError as exc:
            self._audit("query", FAILURE, detail=type(exc).__name__)
            raise
        out = []
        for row in rows:
            ds = Dataset.from_json(row)
            if exclude_study and ds.get("StudyInstanceUID") == exclude_study:
                continue
            found_issuer = _text(ds.get("IssuerOfPatientID"))
            if issuer and found_issuer and found_issuer != issuer:
                continue  # same ID from another assigning authority: another patient
            sd = None
            if ds.get("StudyDate"):
                try:
                    d = DA(str(ds.StudyDate))
                    sd = date(d.year, d.month, d.day)
                except (ValueError, TypeError):
                    sd = None
            mods = ds.get("ModalitiesInStudy") or []
            mods = [str(m) for m in (mods if isinstance(mods, (list, tuple)) or hasattr(mods, "__iter__")
                                     and not isinstance(mods, str) else [mods])]
            n = ds.get("NumberOfStudyRelatedInstances")
            out.append(PriorStudy(study_uid=str(ds.StudyInstanceUID), study_date=sd,
                                  description=_text(ds.get("StudyDescription")), modalities=mods,
                                  accession_number=_text(ds.get("AccessionNumber")),
                                  instances=int(n) if n not in (None, "") else None))
        out.sort(key=lambda p: (p.study_date or date.min), reverse=True)
        self._audit("query", SUCCESS, study_uids=[p.study_uid for p in out], detail=f"priors: {len(out)}")
        return out

    # -- state changes ----------------------------------------------------------------------------------------
    def claim(self, workitem_uid: str) -> WorklistItem:
        """SCHEDULED -> IN PROGRESS with a new Transaction UID. Raises AlreadyClaimed when we lost the race."""
        base, user = self.session.base_url, self.user
        existing = self.store.get(base, user, workitem_uid)
        if existing and not existing.get("pending"):
            item = self.get(workitem_uid)
            if item.state == IN_PROGRESS:
                self._remember_study(workitem_uid, existing, item.study_uid)
                return item  # we already hold it (e.g. after a restart)
        tuid = existing["tuid"] if existing else new_uid()
        # Persist before asking: if we crash after the server accepted, we still hold the TUID.
        self.store.put(base, user, workitem_uid, tuid, pending=True)
        try:
            self._put_state(workitem_uid, tuid, IN_PROGRESS)
        except RequestRejected as exc:
            if exc.status in (400, 409) and existing and self._holds(workitem_uid, tuid):
                # An earlier attempt with this TUID went through but its answer was lost: the item is ours.
                self.store.put(base, user, workitem_uid, tuid, pending=False)
                item = self.get(workitem_uid)
                self._remember_study(workitem_uid, {"tuid": tuid}, item.study_uid)
                self._audit("claim", SUCCESS, workitem_uid=workitem_uid, study_uids=_uids(item.study_uid),
                            detail="confirmed after a lost answer")
                return item
            if exc.status in (400, 409):
                self.store.remove(base, user, workitem_uid)
                try:
                    item = self.get(workitem_uid)
                    state = item.state
                except CloudError:
                    state = None
                self._audit("claim", FAILURE, workitem_uid=workitem_uid, detail=f"lost claim ({exc.status})")
                raise AlreadyClaimed(workitem_uid, state) from exc
            self.store.remove(base, user, workitem_uid)
            self._audit("claim", FAILURE, workitem_uid=workitem_uid, detail=f"HTTP {exc.status}")
            raise
        except AuthError as exc:
            self.store.remove(base, user, workitem_uid)
            self._audit("claim", FAILURE, workitem_uid=workitem_uid, detail=f"auth {exc.status}")
            if exc.status == 403:  # signed in, but this account may not take reading tasks
                raise NotPermitted("This account is not allowed to claim studies for reading (it has no reader "
                                   "role on the archive). Ask the administrator.", status=403,
                                   detail=f"workitem {workitem_uid}") from exc
            raise
        except CloudError as exc:
            # Unknown outcome (connection dropped): keep the pending TUID so a retry reuses it.
            self._audit("claim", FAILURE, workitem_uid=workitem_uid, detail=type(exc).__name__)
            raise
        self.store.put(base, user, workitem_uid, tuid, pending=False)
        item = self.get(workitem_uid)
        self._remember_study(workitem_uid, {"tuid": tuid}, item.study_uid)
        self._audit("claim", SUCCESS, workitem_uid=workitem_uid, study_uids=_uids(item.study_uid))
        return item

    def _remember_study(self, workitem_uid: str, entry: dict, study_uid: str | None) -> None:
        """Keep the study UID beside the held Transaction UID (complete/release then need no lookup)."""
        if study_uid and entry.get("study_uid") != study_uid:
            self.store.put(self.session.base_url, self.user, workitem_uid, entry["tuid"], pending=False,
                           study_uid=study_uid)

    def release(self, workitem_uid: str, reason: str = "Released by the reader for reassignment") -> None:
        """Give a claimed item up. UPS has no way back to SCHEDULED (PS3.4 CC.1.1), so the holder cancels the
        procedure step with a reason (PUT state CANCELED after recording the cancellation); the scheduler may
        reassign the study as a new workitem."""
        entry = self._held_entry(workitem_uid)
        if entry is None:
            raise NotHeld(workitem_uid)
        tuid = entry["tuid"]
        now = _now_dt()
        ds = Dataset()
        progress = Dataset()
        progress.ProcedureStepCancellationDateTime = now
        progress.ReasonForCancellation = reason[:64]
        ds.ProcedureStepProgressInformationSequence = [progress]
        try:
            self._update(workitem_uid, tuid, ds)
            self._put_state(workitem_uid, tuid, CANCELED)
        except CloudError as exc:
            self._audit("release", FAILURE, workitem_uid=workitem_uid, detail=type(exc).__name__)
            raise
        item_study = entry.get("study_uid") or self._study_of(workitem_uid)
        self.store.remove(self.session.base_url, self.user, workitem_uid)
        if self.cache is not None and item_study:
            self.cache.unpin(item_study)
        self._audit("release", SUCCESS, workitem_uid=workitem_uid, study_uids=_uids(item_study))

    def complete(self, workitem_uid: str,
                 output_sop_refs: Iterable[tuple[str, str, str, str]] = (), *,
                 workitem_code: tuple[str, str, str] = ("READ", CODING_SCHEME, "Radiology report reading"),
                 alongside: Callable[[], None] | None = None) -> None:
        """Update with the final-state attributes (Output Information = the signed SR etc.), then COMPLETED.

        ``output_sop_refs``: (sop_class_uid, sop_instance_uid, series_uid, study_uid) of the stored outputs.
        ``alongside``: work that must succeed before the workitem may be COMPLETED - storing those outputs - run
        while the Update is sent from another thread (one round trip less); its error is raised, and the state
        is not changed, when it fails. Idempotent: completing an item that is already COMPLETED by us succeeds.
        """
        output_sop_refs = list(output_sop_refs)
        entry = self._held_entry(workitem_uid)  # one read of the local store: TUID, claim time, study
        if entry is None:
            if alongside is not None:
                alongside()  # the outputs are stored whatever became of the workitem (e.g. a second signed SR)
            if self.get(workitem_uid).state == COMPLETED:
                return  # a retry after success (e.g. by the outbox): nothing left to do
            raise NotHeld(workitem_uid)
        tuid = entry["tuid"]
        body = self.final_state_json(output_sop_refs, started=entry.get("claimed_at"), workitem_code=workitem_code)
        try:
            try:
                try:
                    if alongside is None:
                        self._update(workitem_uid, tuid, body)
                    else:
                        self._update_alongside(workitem_uid, tuid, body, alongside)
                    self._put_state(workitem_uid, tuid, COMPLETED)
                except RequestRejected as exc:
                    if exc.status not in (400, 409):
                        raise
                    item = self.get(workitem_uid)  # a retry after a dropped answer: is it already done?
                    if item.state != COMPLETED:
                        raise
            except CloudError as exc:
                self._audit("complete", FAILURE, workitem_uid=workitem_uid, detail=type(exc).__name__)
                raise
        except _AlongsideFailed as failed:  # the outputs were not stored: their own error, as it was raised
            raise failed.error from None
        # the study was saved at claim time; only entries written by older versions need the lookup
        study = entry.get("study_uid") or self._study_of(workitem_uid)
        self.store.remove(self.session.base_url, self.user, workitem_uid, durable=False)  # COMPLETED: final
        if self.cache is not None and study:
            self.cache.unpin(study)
        self._audit("complete", SUCCESS, workitem_uid=workitem_uid, study_uids=_uids(study),
                    sop_count=len(output_sop_refs) or None)

    def _update_alongside(self, workitem_uid: str, tuid: str, body: dict, alongside: Callable[[], None]) -> None:
        """The final-state Update on a pool thread while ``alongside`` (the longer STOW) runs on this one, so
        that it starts at once; both have finished on return. ``alongside``'s error wins over the Update's."""
        update = self._side_pool().submit(self._update, workitem_uid, tuid, body)
        first: BaseException | None = None
        try:
            alongside()
        except BaseException as exc:  # noqa: BLE001 - raised below, once the Update has finished too
            first = exc
        try:
            update.result()
        except BaseException:
            if first is None:
                raise
        if first is not None:  # kept apart from the Update's errors (see complete())
            raise _AlongsideFailed(first)

    def _side_pool(self) -> ThreadPoolExecutor:
        with self._side_lock:
            if self._side is None:
                self._side = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rr-ups-alongside")
            return self._side

    def final_state_dataset(self, refs: list[tuple[str, str, str, str]], *, started: str | None = None,
                            workitem_code=("READ", CODING_SCHEME, "Radiology report reading")) -> Dataset:
        """The Update payload that makes the workitem complete-able (standards.md "Required for final state")."""
        return Dataset.from_json(self.final_state_json(refs, started=started, workitem_code=workitem_code))

    def final_state_json(self, refs: list[tuple[str, str, str, str]], *, started: str | None = None,
                         workitem_code=("READ", CODING_SCHEME, "Radiology report reading")) -> dict:
        """:meth:`final_state_dataset` as DICOM JSON, built directly (what :meth:`complete` sends: no pydicom
        Dataset built and re-serialised on the reader's wait)."""
        now = _now_dt()
        station = _item(CodeValue=self.station_name[:16], CodingSchemeDesignator=CODING_SCHEME,
                        CodeMeaning=f"ReadRoom workstation {self.station_name}"[:64])
        code = dict(zip(("CodeValue", "CodingSchemeDesignator", "CodeMeaning"), workitem_code, strict=True))
        human = _item(HumanPerformerCodeSequence=[_item(CodeValue=self.user, CodingSchemeDesignator=CODING_SCHEME,
                                                        CodeMeaning=self.user)],
                      HumanPerformerName=self.user)
        grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for sop_class, sop_uid, series_uid, study_uid in refs:
            grouped.setdefault((study_uid, series_uid), []).append((sop_class, sop_uid))
        outputs = [_item(TypeOfInstances="DICOM", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
                         ReferencedSOPSequence=[_item(ReferencedSOPClassUID=c, ReferencedSOPInstanceUID=u)
                                                for c, u in sops],
                         WADORSRetrievalSequence=[_item(RetrieveURL=f"{self.session.base_url}/studies/{study_uid}")])
                   for (study_uid, series_uid), sops in grouped.items()]
        performed = _item(PerformedStationNameCodeSequence=[station],
                          PerformedProcedureStepStartDateTime=_to_dt(started) if started else now,
                          PerformedProcedureStepEndDateTime=now,
                          PerformedWorkitemCodeSequence=[_item(**code)],
                          ActualHumanPerformersSequence=[human],
                          OutputInformationSequence=outputs)
        return _item(ScheduledProcedureStepModificationDateTime=now,  # (0040,4010)
                     UnifiedProcedureStepPerformedProcedureSequence=[performed])

    # -- helpers ----------------------------------------------------------------------------------------------
    def _held_entry(self, workitem_uid: str) -> dict | None:
        """The local store's entry for a workitem this workstation holds (claim confirmed), else None."""
        entry = self.store.get(self.session.base_url, self.user, workitem_uid)
        return entry if entry and not entry.get("pending") else None

    def _tuid(self, workitem_uid: str) -> str | None:
        entry = self._held_entry(workitem_uid)
        return entry["tuid"] if entry else None

    def _study_of(self, workitem_uid: str) -> str | None:
        try:
            return self.get(workitem_uid).study_uid
        except CloudError:
            return None

    def _holds(self, workitem_uid: str, tuid: str) -> bool:
        """Does ``tuid`` own the workitem? Probed with a harmless Update only the holder may make."""
        ds = Dataset()
        ds.ScheduledProcedureStepModificationDateTime = _now_dt()
        try:
            self._update(workitem_uid, tuid, ds)
        except RequestRejected:
            return False
        return True

    def _put_state(self, workitem_uid: str, tuid: str, state: str) -> None:
        body = {"00081195": {"vr": "UI", "Value": [tuid]}, "00741000": {"vr": "CS", "Value": [state]}}
        self.session.request("PUT", f"{self._wp}/{workitem_uid}/{self._state_suffix}", json=body,
                             headers={"Content-Type": DICOM_JSON, "Accept": DICOM_JSON}, ok=(200, 204))

    def _update(self, workitem_uid: str, tuid: str, ds: Dataset | dict) -> None:
        body = dict(ds) if isinstance(ds, dict) else ds.to_json_dict()
        body["00081195"] = {"vr": "UI", "Value": [tuid]}  # also in the body: some servers cannot read the query
        self.session.request("POST", f"{self._wp}/{workitem_uid}", params={"transaction": tuid}, json=body,
                             headers={"Content-Type": DICOM_JSON, "Accept": DICOM_JSON}, ok=(200, 204))

    def _audit(self, action: str, outcome: str, **kw) -> None:
        try:
            self.audit.record(action, self.user, outcome, **kw)
        except OSError:
            log.exception("Could not write the audit trail")


def _item(**attrs) -> dict:
    """A DICOM JSON dataset (PS3.18 F.2) from keyword=value: VRs from the data dictionary, sequences as lists of
    such dicts, person names as Alphabetic; empty values become attributes without a Value."""
    out = {}
    for kw, value in attrs.items():
        tag = tag_for_keyword(kw)
        vr = dictionary_VR(tag)
        key = f"{tag:08X}"
        if value is None or value == "" or value == []:
            out[key] = {"vr": vr}
        elif vr == "PN":
            out[key] = {"vr": vr, "Value": [{"Alphabetic": value}]}
        else:
            out[key] = {"vr": vr, "Value": value if isinstance(value, list) else [value]}
    return out


def _uids(uid: str | None) -> list[str]:
    return [uid] if uid else []


def _now_dt() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f+0000")


def _to_dt(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y%m%d%H%M%S.%f+0000")
    except ValueError:
        return _now_dt()
