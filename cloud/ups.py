"""The UPS-RS worklist's state: workitems in SQLite, the PS3.4 Annex CC state machine, matching and events.

Owns the rules of the Unified Procedure Step (PS3.4 CC, PS3.18 11): create (state SCHEDULED), retrieve
(never returning the Transaction UID), update (TUID forbidden while SCHEDULED, required while IN PROGRESS),
change state (claim = compare-and-set in SQL, so concurrent claims cannot both win; COMPLETED only with the
final-state attributes present), cancel requests, search (QIDO-style matching, limit/offset), workload per
reader, the routed-study ledger (one workitem per study), event subscriptions and the change-feed position.
No HTTP here: errors are ``UpsError(status, message)`` and mutations return ``Event`` values that the
service pushes to WebSocket subscribers. Workitems are stored as DICOM JSON plus indexed columns.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
import re
import sqlite3
import threading
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import generate_uid

UPS_PUSH_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.1"
GLOBAL_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5"
FILTERED_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5.1"
STATES = ("SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED")
FINAL = ("COMPLETED", "CANCELED")
PRIORITIES = ("HIGH", "MEDIUM", "LOW")

# EventTypeID (0000,1002) values, PS3.4 Table CC.2.4-1
EVENT_STATE_REPORT = 1
EVENT_CANCEL_REQUESTED = 2
EVENT_ASSIGNED = 5

T_STATE = "00741000"
T_TUID = "00081195"
T_SOP_UID = "00080018"
T_SOP_CLASS = "00080016"
T_PRIORITY = "00741200"
T_SCHED_START = "00404005"
T_EXPECTED_END = "00404011"
T_MODIFIED = "00404010"
T_INPUT_READINESS = "00404041"
T_PERFORMERS = "00404034"
T_PERFORMER_CODE = "00404009"
T_CODE_VALUE = "00080100"
T_STUDY_UID = "0020000D"
T_PATIENT_ID = "00100020"
T_INPUT_INFO = "00404021"
T_PERFORMED_SEQ = "00741216"
T_OUTPUT_INFO = "00404033"
T_PROGRESS_INFO = "00741002"
T_CANCEL_DT = "00404052"
T_CANCEL_REASON = "00741238"

FINAL_STATE_TOP = {"ScheduledProcedureStepPriority": T_PRIORITY,
                   "ScheduledProcedureStepModificationDateTime": T_MODIFIED,
                   "ScheduledProcedureStepStartDateTime": T_SCHED_START,
                   "InputReadinessState": T_INPUT_READINESS}
FINAL_STATE_PERFORMED = {"PerformedStationNameCodeSequence": "00404028",
                         "PerformedProcedureStepStartDateTime": "00404050",
                         "PerformedProcedureStepEndDateTime": "00404051",
                         "PerformedWorkitemCodeSequence": "00404019",
                         "OutputInformationSequence": "00404033"}


class UpsError(Exception):
    """A request the UPS rules refuse: ``status`` is the HTTP code, ``message`` says why in plain words."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class Event:
    workitem_uid: str
    event_type: int
    message: dict              # DICOM JSON event report
    workitem: dict             # the workitem after the change (no TUID), for subscription filters


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def dicom_dt(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S") + "+0000"


# ---------------------------------------------------------------- DICOM JSON helpers

def tag_of(key: str) -> str:
    """'PatientID' or '00100020' -> '00100020'; UpsError 400 for anything else."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        return key.upper()
    t = tag_for_keyword(key)
    if t is None:
        raise UpsError(400, f"unknown attribute {key!r} in query")
    return f"{t:08X}"


def first(ds: dict, tag: str):
    v = (ds.get(tag) or {}).get("Value")
    return v[0] if v else None


def text(ds: dict, tag: str) -> str | None:
    v = first(ds, tag)
    if isinstance(v, dict):
        return v.get("Alphabetic")
    return None if v is None else str(v)


def put(ds: dict, tag: str, value, vr: str | None = None) -> None:
    vr = vr or dictionary_VR(int(tag, 16))
    if value is None or value == []:
        ds[tag] = {"vr": vr}
    elif vr == "SQ":
        ds[tag] = {"vr": vr, "Value": list(value)}
    else:
        ds[tag] = {"vr": vr, "Value": list(value) if isinstance(value, (list, tuple)) else [value]}


def performer_of(ds: dict) -> str | None:
    for item in (ds.get(T_PERFORMERS) or {}).get("Value") or []:
        for code in (item.get(T_PERFORMER_CODE) or {}).get("Value") or []:
            v = text(code, T_CODE_VALUE)
            if v:
                return v
    return None


def study_of(ds: dict) -> str | None:
    s = text(ds, T_STUDY_UID)
    if s:
        return s
    for item in (ds.get(T_INPUT_INFO) or {}).get("Value") or []:
        s = text(item, T_STUDY_UID)
        if s:
            return s
    return None


def parse_body(body: bytes, *, want_list_ok: bool = True) -> dict:
    """A DICOM JSON dataset from a request body; UpsError 400 with the reason if it is not one."""
    if not body or not body.strip():
        raise UpsError(400, "request body is empty: expected a DICOM JSON dataset")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UpsError(400, f"malformed JSON: {getattr(e, 'msg', str(e))} "
                            f"(line {getattr(e, 'lineno', '?')}, column {getattr(e, 'colno', '?')})") from None
    if want_list_ok and isinstance(data, list):
        if len(data) != 1:
            raise UpsError(400, "expected exactly one dataset in the JSON array")
        data = data[0]
    if not isinstance(data, dict):
        raise UpsError(400, "expected a DICOM JSON object (tags as keys)")
    for k, v in data.items():
        if not re.fullmatch(r"[0-9A-Fa-f]{8}", k) or not isinstance(v, dict) or "vr" not in v:
            raise UpsError(400, f"not DICOM JSON: key {k!r} must be an 8-digit hex tag with a 'vr'")
    try:
        pydicom.Dataset.from_json(data)
    except Exception as e:  # noqa: BLE001 - pydicom raises several types for malformed DICOM JSON
        raise UpsError(400, f"invalid DICOM JSON: {e}") from None
    return {k.upper(): v for k, v in data.items()}


def _dt_norm(value: str, upper: bool) -> str:
    digits = re.sub(r"[^0-9]", "", value.split("+")[0].split("-")[0] if value else "")[:14]
    pad = "99991231235959" if upper else "00000101000000"
    if upper and len(digits) == 8:
        return digits + "235959"
    return digits + pad[len(digits):]


# ---------------------------------------------------------------- store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workitems(
  uid TEXT PRIMARY KEY, state TEXT NOT NULL, priority TEXT, performer TEXT, study_uid TEXT,
  patient_id TEXT, scheduled TEXT, deadline TEXT, tuid TEXT, created TEXT NOT NULL, modified TEXT NOT NULL,
  cancel_requested INTEGER NOT NULL DEFAULT 0, dataset TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS wi_state ON workitems(state);
CREATE INDEX IF NOT EXISTS wi_performer ON workitems(performer, state);
CREATE INDEX IF NOT EXISTS wi_study ON workitems(study_uid);
CREATE TABLE IF NOT EXISTS routed_studies(study_uid TEXT PRIMARY KEY, workitem_uid TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions(aet TEXT NOT NULL, target TEXT NOT NULL, filter TEXT NOT NULL,
  PRIMARY KEY(aet, target));
CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_PRIORITY_ORDER = "CASE priority WHEN 'HIGH' THEN 0 WHEN 'MEDIUM' THEN 1 WHEN 'LOW' THEN 2 ELSE 3 END"


class WorkitemStore:
    """SQLite-backed workitems. Thread-safe; the claim is also a compare-and-set in SQL."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        # WAL + synchronous=NORMAL: a commit appends to the WAL without an fsync (the WAL is synced at
        # checkpoints), so an Update or state change costs no disk flush. A crash or kill -9 of the service loses
        # nothing; only an OS crash / power loss may roll back the last commits, never corrupt the database. The
        # claim's safety does not depend on it: it is a compare-and-set in one UPDATE (WHERE state='SCHEDULED').
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- reading
    def _row(self, uid: str):
        return self._db.execute("SELECT state, tuid, dataset, cancel_requested FROM workitems WHERE uid=?",
                                (uid,)).fetchone()

    def get(self, uid: str) -> dict:
        with self._lock:
            row = self._row(uid)
        if row is None:
            raise UpsError(404, "no such workitem")
        return json.loads(row[2])

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM workitems").fetchone()[0]

    def open_workload(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT performer, COUNT(*) FROM workitems WHERE performer IS NOT NULL "
                                    "AND state IN ('SCHEDULED','IN PROGRESS') GROUP BY performer").fetchall()
        return {p: n for p, n in rows}

    # ---- create
    def create(self, ds: dict, uid: str | None = None) -> tuple[str, list[Event]]:
        ds = dict(ds)
        state = text(ds, T_STATE)
        if state not in (None, "SCHEDULED"):
            raise UpsError(400, f"a new workitem must be SCHEDULED, not {state}")
        if T_TUID in ds:
            raise UpsError(400, "a new workitem must not carry a Transaction UID (0008,1195)")
        body_uid = text(ds, T_SOP_UID) or text(ds, "00001000")
        if uid and body_uid and uid != body_uid:
            raise UpsError(400, "workitem UID in the query and in the dataset differ")
        uid = uid or body_uid or generate_uid(prefix=None)
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid) or len(uid) > 64:
            raise UpsError(400, "workitem UID is not a valid DICOM UID")
        now = now_utc()
        put(ds, T_STATE, "SCHEDULED", "CS")
        put(ds, T_SOP_UID, uid, "UI")
        put(ds, T_SOP_CLASS, UPS_PUSH_SOP_CLASS, "UI")
        if not text(ds, T_PRIORITY):
            put(ds, T_PRIORITY, "MEDIUM", "CS")
        elif text(ds, T_PRIORITY) not in PRIORITIES:
            raise UpsError(400, "ScheduledProcedureStepPriority must be HIGH, MEDIUM or LOW")
        if not text(ds, T_SCHED_START):
            put(ds, T_SCHED_START, dicom_dt(now), "DT")
        if not text(ds, T_INPUT_READINESS):
            put(ds, T_INPUT_READINESS, "READY", "CS")
        put(ds, T_MODIFIED, dicom_dt(now), "DT")
        ds.pop("00001000", None)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO workitems(uid,state,priority,performer,study_uid,patient_id,scheduled,deadline,"
                    "tuid,created,modified,dataset) VALUES(?,?,?,?,?,?,?,?,NULL,?,?,?)",
                    (uid, "SCHEDULED", text(ds, T_PRIORITY), performer_of(ds), study_of(ds),
                     text(ds, T_PATIENT_ID), _dt_norm(text(ds, T_SCHED_START) or "", False),
                     _dt_norm(text(ds, T_EXPECTED_END) or "", True), now.isoformat(), now.isoformat(),
                     json.dumps(ds)))
            except sqlite3.IntegrityError:
                raise UpsError(409, "a workitem with this UID already exists") from None
        events = [self._event(uid, EVENT_STATE_REPORT, ds)]
        if performer_of(ds):
            events.append(self._event(uid, EVENT_ASSIGNED, ds))
        return uid, events

    def create_for_study(self, study_uid: str, ds: dict) -> tuple[str | None, list[Event]]:
        """Create the routed workitem for a study unless one was already made (idempotent)."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM routed_studies WHERE study_uid=?", (study_uid,)).fetchone():
                return None, []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                uid, events = self.create(ds)
                self._db.execute("INSERT INTO routed_studies VALUES(?,?)", (study_uid, uid))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return uid, events

    def routed_workitem(self, study_uid: str) -> str | None:
        row = self._db.execute("SELECT workitem_uid FROM routed_studies WHERE study_uid=?",
                               (study_uid,)).fetchone()
        return row[0] if row else None

    # ---- archive-side record of later outputs
    def record_output(self, study_uid: str, output_item: dict, sop_uid: str) -> str | None:
        """Reference a later output of a finished reading (an addendum SR) in the study's COMPLETED workitem.

        Readers cannot update a COMPLETED workitem (PS3.4 CC.2.6); the archive side, which saw the addendum being
        stored, appends it to the Output Information Sequence of the workitem's performed procedure, so the
        workitem lists the report and every addendum. Idempotent (an SOP Instance already referenced is not added
        again). Returns the workitem UID, or None when the study has no COMPLETED workitem."""
        with self._lock:
            # the routed workitem of the study, else the latest COMPLETED one (a workitem a scheduler created)
            uid = self.routed_workitem(study_uid)
            row = self._row(uid) if uid else None
            if row is None or row[0] != "COMPLETED":
                found = self._db.execute("SELECT uid FROM workitems WHERE study_uid=? AND state='COMPLETED' "
                                         "ORDER BY modified DESC LIMIT 1", (study_uid,)).fetchone()
                uid = found[0] if found else None
                row = self._row(uid) if uid else None
            if row is None:
                return None
            ds = json.loads(row[2])
            performed = (ds.get(T_PERFORMED_SEQ) or {}).get("Value") or []
            if not performed:
                return None
            outputs = performed[0].setdefault(T_OUTPUT_INFO, {"vr": "SQ"}).setdefault("Value", [])
            for out in outputs:
                for ref in (out.get("00081199") or {}).get("Value") or []:
                    if text(ref, "00081155") == sop_uid:
                        return uid
            outputs.append(output_item)
            put(ds, T_MODIFIED, dicom_dt(now_utc()), "DT")
            self._db.execute("UPDATE workitems SET dataset=?, modified=? WHERE uid=? AND state='COMPLETED'",
                             (json.dumps(ds), now_utc().isoformat(), uid))
        return uid

    # ---- update
    def update(self, uid: str, changes: dict, tuid: str | None) -> list[Event]:
        changes = dict(changes)
        body_tuid = text(changes, T_TUID)
        changes.pop(T_TUID, None)
        tuid = tuid or body_tuid
        if T_STATE in changes:
            raise UpsError(400, "Update cannot change ProcedureStepState; use PUT .../state")
        for t in (T_SOP_UID, T_SOP_CLASS):
            changes.pop(t, None)
        with self._lock:
            row = self._row(uid)
            if row is None:
                raise UpsError(404, "no such workitem")
            state, cur_tuid, raw, _ = row
            if state in FINAL:
                raise UpsError(400, f"the workitem is {state} and can no longer be updated")
            if state == "SCHEDULED" and tuid:
                raise UpsError(400, "the workitem is SCHEDULED: update it without a Transaction UID")
            if state == "IN PROGRESS":
                if not tuid:
                    raise UpsError(400, "the workitem is IN PROGRESS: the Transaction UID (?transaction=) "
                                        "of its owner is required")
                if tuid != cur_tuid:
                    raise UpsError(400, "wrong Transaction UID: the workitem is owned by another claim")
            if T_PRIORITY in changes and text(changes, T_PRIORITY) not in PRIORITIES:
                raise UpsError(400, "ScheduledProcedureStepPriority must be HIGH, MEDIUM or LOW")
            ds = json.loads(raw)
            before = performer_of(ds)
            ds.update(changes)
            put(ds, T_MODIFIED, dicom_dt(now_utc()), "DT")
            cur = self._db.execute(
                "UPDATE workitems SET dataset=?, priority=?, performer=?, study_uid=?, patient_id=?, scheduled=?,"
                " deadline=?, modified=? WHERE uid=? AND state=? AND tuid IS ?",
                (json.dumps(ds), text(ds, T_PRIORITY), performer_of(ds), study_of(ds), text(ds, T_PATIENT_ID),
                 _dt_norm(text(ds, T_SCHED_START) or "", False), _dt_norm(text(ds, T_EXPECTED_END) or "", True),
                 now_utc().isoformat(), uid, state, cur_tuid))
            if cur.rowcount != 1:
                raise UpsError(409, "the workitem changed while it was being updated; fetch it and retry")
        events = []
        if performer_of(ds) and performer_of(ds) != before:
            events.append(self._event(uid, EVENT_ASSIGNED, ds))
        return events

    # ---- change state
    def change_state(self, uid: str, tuid: str | None, new_state: str | None) -> list[Event]:
        if not tuid:
            raise UpsError(400, "Transaction UID (0008,1195) is required to change the state")
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", tuid) or len(tuid) > 64:
            raise UpsError(400, "Transaction UID is not a valid DICOM UID")
        if new_state not in STATES:
            raise UpsError(400, "ProcedureStepState (0074,1000) must be IN PROGRESS, COMPLETED or CANCELED")
        with self._lock:
            row = self._row(uid)
            if row is None:
                raise UpsError(404, "no such workitem")
            state, cur_tuid, raw, _ = row
            ds = json.loads(raw)
            now = dicom_dt(now_utc())
            if new_state == "SCHEDULED":
                raise UpsError(400, "a workitem cannot go back to SCHEDULED")
            if new_state == "IN PROGRESS":
                if state == "IN PROGRESS":
                    raise UpsError(409, "the workitem is already IN PROGRESS (claimed by someone else)")
                if state in FINAL:
                    raise UpsError(409, f"the workitem is already {state}")
                put(ds, T_STATE, "IN PROGRESS", "CS")
                put(ds, T_MODIFIED, now, "DT")
                # compare-and-set: only one concurrent claim can flip SCHEDULED -> IN PROGRESS
                cur = self._db.execute("UPDATE workitems SET state='IN PROGRESS', tuid=?, dataset=?, modified=? "
                                       "WHERE uid=? AND state='SCHEDULED'",
                                       (tuid, json.dumps(ds), now_utc().isoformat(), uid))
                if cur.rowcount != 1:
                    raise UpsError(409, "the workitem is already IN PROGRESS (claimed by someone else)")
                return [self._event(uid, EVENT_STATE_REPORT, ds)]
            # COMPLETED / CANCELED
            if state in FINAL:
                raise UpsError(409, f"the workitem is already {state}")
            if state != "IN PROGRESS":
                raise UpsError(409, f"the workitem is SCHEDULED: claim it (IN PROGRESS) before {new_state}; "
                                    "to cancel an unclaimed item use cancelrequest")
            if tuid != cur_tuid:
                raise UpsError(400, "wrong Transaction UID: the workitem is owned by another claim")
            if new_state == "COMPLETED":
                missing = missing_final_state(ds)
                if missing:
                    raise UpsError(400, "cannot complete: missing final-state attributes: " + ", ".join(missing)
                                   + " (Update the workitem with them first)")
            else:
                _ensure_cancel_info(ds, now, None)
            put(ds, T_STATE, new_state, "CS")
            put(ds, T_MODIFIED, now, "DT")
            cur = self._db.execute("UPDATE workitems SET state=?, dataset=?, modified=? "
                                   "WHERE uid=? AND state='IN PROGRESS' AND tuid=?",
                                   (new_state, json.dumps(ds), now_utc().isoformat(), uid, tuid))
            if cur.rowcount != 1:
                raise UpsError(409, "the workitem changed state concurrently; fetch it again")
        return [self._event(uid, EVENT_STATE_REPORT, ds)]

    def cancel_request(self, uid: str, reason: str | None, extra: dict | None = None) -> list[Event]:
        """SCHEDULED items are canceled at once; IN PROGRESS ones get a cancel-requested event for the owner."""
        with self._lock:
            row = self._row(uid)
            if row is None:
                raise UpsError(404, "no such workitem")
            state, _, raw, _ = row
            ds = json.loads(raw)
            if state in FINAL:
                raise UpsError(409, f"the workitem is already {state}")
            now = dicom_dt(now_utc())
            if state == "SCHEDULED":
                _ensure_cancel_info(ds, now, reason)
                put(ds, T_STATE, "CANCELED", "CS")
                put(ds, T_MODIFIED, now, "DT")
                cur = self._db.execute("UPDATE workitems SET state='CANCELED', dataset=?, modified=?, "
                                       "cancel_requested=1 WHERE uid=? AND state='SCHEDULED'",
                                       (json.dumps(ds), now_utc().isoformat(), uid))
                if cur.rowcount != 1:
                    raise UpsError(409, "the workitem was claimed meanwhile; the cancel request went unheard")
                return [self._event(uid, EVENT_STATE_REPORT, ds)]
            self._db.execute("UPDATE workitems SET cancel_requested=1 WHERE uid=?", (uid,))
        msg = self._event(uid, EVENT_CANCEL_REQUESTED, ds)
        if reason:
            put(msg.message, T_CANCEL_REASON, reason, "LT")
        for k, v in (extra or {}).items():
            msg.message[k] = v
        return [msg]

    # ---- search
    def search(self, params: list[tuple[str, str]], limit: int | None = None, offset: int = 0) -> list[dict]:
        return [json.loads(r) if isinstance(r, str) else r for r in self.search_raw(params, limit, offset)]

    def search_raw(self, params: list[tuple[str, str]], limit: int | None = None,
                   offset: int = 0) -> list[str | dict]:
        """Matches in worklist order, as stored JSON text when only indexed keys were used (no re-encoding).
        Stored datasets never hold a Transaction UID (create refuses one, update strips it)."""
        where, args, generic = [], [], []
        for key, value in params:
            if value == "":
                continue
            path = [tag_of(k) for k in key.split(".")]
            col = _COLUMN_KEYS.get(tuple(path))
            if col == "scheduled" or col == "deadline":
                lo, _, hi = value.partition("-") if "-" in value else (value, "", value)
                if lo:
                    where.append(f"{col} >= ?")
                    args.append(_dt_norm(lo, False))
                if hi:
                    where.append(f"{col} <= ?")
                    args.append(_dt_norm(hi, True))
            elif col and not any(c in value for c in "*?\\"):
                values = value.split("\\") if "\\" in value else [value]
                where.append(f"{col} IN ({','.join('?' * len(values))})")
                args.extend(values)
            else:
                generic.append((path, value))
        sql = "SELECT dataset FROM workitems"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {_PRIORITY_ORDER}, deadline, created, uid"
        if not generic:
            sql += " LIMIT ? OFFSET ?"
            args += [-1 if limit is None else int(limit), int(offset)]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        if not generic:
            return [r[0] for r in rows]
        out = [json.loads(r[0]) for r in rows]
        out = [ds for ds in out if all(matches(ds, p, v) for p, v in generic)]
        return out[offset:] if limit is None else out[offset:offset + int(limit)]

    # ---- subscriptions and feed position
    def subscribe(self, aet: str, target: str, filter_params: list[tuple[str, str]]) -> None:
        if target not in (GLOBAL_SUBSCRIPTION, FILTERED_SUBSCRIPTION):
            self.get(target)  # 404 if unknown
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO subscriptions VALUES(?,?,?)",
                             (aet, target, json.dumps(filter_params)))

    def unsubscribe(self, aet: str, target: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM subscriptions WHERE aet=? AND target=?", (aet, target))

    def subscribers_for(self, event: Event) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT aet, target, filter FROM subscriptions").fetchall()
        out = set()
        for aet, target, flt in rows:
            if target == event.workitem_uid or target == GLOBAL_SUBSCRIPTION:
                out.add(aet)
            elif target == FILTERED_SUBSCRIPTION:
                try:
                    if all(matches(event.workitem, [tag_of(k) for k in key.split(".")], v)
                           for key, v in json.loads(flt) if v != ""):
                        out.add(aet)
                except UpsError:
                    continue
        return out

    def get_kv(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_kv(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES(?,?)", (key, value))

    @staticmethod
    def _event(uid: str, event_type: int, ds: dict) -> Event:
        msg: dict = {}
        put(msg, "00001000", uid, "UI")
        put(msg, "00001002", event_type, "US")
        put(msg, T_STATE, text(ds, T_STATE), "CS")
        put(msg, T_INPUT_READINESS, text(ds, T_INPUT_READINESS) or "READY", "CS")
        if event_type == EVENT_ASSIGNED:
            msg[T_PERFORMERS] = ds.get(T_PERFORMERS, {"vr": "SQ"})
            for t in (T_PRIORITY, T_STUDY_UID, T_EXPECTED_END, "00741204"):
                if t in ds:
                    msg[t] = ds[t]
        clean = {k: v for k, v in ds.items() if k != T_TUID}
        return Event(uid, event_type, msg, clean)


_PERFORMER_PATH = (T_PERFORMERS, T_PERFORMER_CODE, T_CODE_VALUE)
_COLUMN_KEYS = {
    (T_STATE,): "state",
    (T_PRIORITY,): "priority",
    _PERFORMER_PATH: "performer",
    (T_STUDY_UID,): "study_uid",
    (T_INPUT_INFO, T_STUDY_UID): "study_uid",
    ("0040A370", T_STUDY_UID): "study_uid",      # ReferencedRequestSequence.StudyInstanceUID
    (T_PATIENT_ID,): "patient_id",
    (T_SCHED_START,): "scheduled",
    (T_EXPECTED_END,): "deadline",
    (T_SOP_UID,): "uid",
}


def _values_at(ds: dict, path: list[str]) -> list:
    items = [ds]
    for t in path[:-1]:
        items = [sub for it in items for sub in ((it.get(t) or {}).get("Value") or [])]
    out = []
    for it in items:
        for v in (it.get(path[-1]) or {}).get("Value") or []:
            out.append(v.get("Alphabetic", "") if isinstance(v, dict) else v)
    return out


def matches(ds: dict, path: list[str], value: str) -> bool:
    """QIDO-style matching of one key: single value, list (backslash), wildcards * ?, DA/DT/TM ranges."""
    have = _values_at(ds, path)
    vr = dictionary_VR(int(path[-1], 16)) if path else ""
    if vr in ("DA", "DT", "TM") and "-" in value:
        lo, _, hi = value.partition("-")
        return any((not lo or _dt_norm(str(h), False) >= _dt_norm(lo, False))
                   and (not hi or _dt_norm(str(h), False) <= _dt_norm(hi, True)) for h in have)
    wanted = value.split("\\")
    for h in have:
        hs = str(h)
        for w in wanted:
            if "*" in w or "?" in w:
                if fnmatch.fnmatchcase(hs.upper() if vr == "PN" else hs, w.upper() if vr == "PN" else w):
                    return True
            elif (hs.upper() == w.upper()) if vr == "PN" else (hs == w):
                return True
    return False


def missing_final_state(ds: dict) -> list[str]:
    missing = [kw for kw, t in FINAL_STATE_TOP.items() if not first(ds, t)]
    items = (ds.get(T_PERFORMED_SEQ) or {}).get("Value") or [{}]
    item = items[0]
    for kw, t in FINAL_STATE_PERFORMED.items():
        if not (item.get(t) or {}).get("Value"):
            missing.append(f"UnifiedProcedureStepPerformedProcedureSequence > {kw}")
    return missing


def _ensure_cancel_info(ds: dict, now: str, reason: str | None) -> None:
    items = (ds.get(T_PROGRESS_INFO) or {}).get("Value") or [{}]
    item = dict(items[0])
    if not first(item, T_CANCEL_DT):
        put(item, T_CANCEL_DT, now, "DT")
    if reason and not first(item, T_CANCEL_REASON):
        put(item, T_CANCEL_REASON, reason, "LT")
    put(ds, T_PROGRESS_INFO, [item] + items[1:], "SQ")
