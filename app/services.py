"""The workstation's connection to the other parts: one object the Qt widgets call (from worker threads).

Owns the wiring of a signed-in :class:`~app.session.ReaderSession` to the cloud client (worklist, instance
cache, retrieval, prefetch, audit), the reporting core (drafts, signing, outbox) and the dictation core. It is
Qt-free so the same calls can be exercised headless; each method is a plain blocking call that the GUI runs
through :func:`app.workers.run_task`.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from cloud_client.audit import AuditTrail
from cloud_client.cache import InstanceCache
from cloud_client.retrieve import StudyFetcher
from cloud_client.worklist import WorklistClient, WorklistItem
from reporting.outbox import Outbox

from .session import ReaderSession
from .settings import WorkstationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedSummary:
    study_uid: str
    signed_at: str
    description: str = ""
    modality: str = ""
    body_part: str = ""
    addendum: bool = False


class Workstation:
    def __init__(self, session: ReaderSession, settings: WorkstationSettings) -> None:
        self.session = session
        self.settings = settings
        self.cache = InstanceCache(max_bytes=session.profile.cache_max_bytes)
        self.audit = AuditTrail()
        self.worklist = WorklistClient(session.web, session.user, cache=self.cache, audit=self.audit)
        self.fetcher = StudyFetcher(session.web, self.cache, audit=self.audit)
        self.prefetcher = None
        self.outbox = Outbox()
        self.outbox_worker = None
        self.events = None
        self._lock = threading.Lock()
        self._prepare_pool: ThreadPoolExecutor | None = None

    @property
    def user(self) -> str:
        return self.session.user

    # -- worklist ---------------------------------------------------------------------------------------------
    def list_worklist(self) -> list[WorklistItem]:
        return self.worklist.my_items(include_pool=self.settings.show_shared_pool)

    def claim(self, item: WorklistItem) -> WorklistItem:
        claimed = self.worklist.claim(item.workitem_uid)
        if claimed.study_uid:
            self.cache.pin(claimed.study_uid)
        return claimed

    def release(self, item: WorklistItem) -> None:
        self.worklist.release(item.workitem_uid)

    def priors(self, item: WorklistItem):
        return self.worklist.priors(item)

    # -- studies --------------------------------------------------------------------------------------------
    def load_study(self, study_uid: str, progress=None, cancelled: threading.Event | None = None,
                   pin: bool = False):
        """Stream a study into progressive volumes; ``progress`` receives study_loader events. ``pin`` keeps
        it in the cache until its report is done (the claimed study; not priors or QA views)."""
        from .study_loader import StudyLoader

        if self.prefetcher is not None:
            self.prefetcher.pause()       # the study being read gets the bandwidth

        def fetch(uid, **kw):
            return self.fetch(uid, pin=pin, **kw)
        try:
            return StudyLoader(fetch).load(study_uid, progress or (lambda _e: None), cancelled)
        finally:
            if self.prefetcher is not None:
                self.prefetcher.resume()

    def fetch(self, study_uid: str, *, on_instance, on_progress, on_metadata, cancel=None, pin: bool = False,
              series_uids: list[str] | None = None):
        """The cloud client's streaming retrieval into the encrypted cache (first-needed slice first)."""
        return self.fetcher.fetch_study(study_uid, on_instance=on_instance, on_progress=on_progress,
                                        on_metadata=on_metadata, cancel=cancel, pin=pin, series_uids=series_uids)

    def opened(self, item: WorklistItem) -> None:
        self.audit.record("study-opened", self.user, study_uids=[item.study_uid] if item.study_uid else [],
                          workitem_uid=item.workitem_uid)

    # -- reports --------------------------------------------------------------------------------------------
    def person(self):
        from reporting.model import Person

        return Person(user_id=self.user, display_name=self.user)

    def draft_store(self):
        from reporting.drafts import DraftStore

        return DraftStore()

    def study_context(self, item: WorklistItem):
        from reporting.model import StudyContext

        return StudyContext(study_uid=item.study_uid or "", patient_id=item.patient_id,
                            issuer_of_patient_id=item.issuer_of_patient_id, patient_name=item.patient_name,
                            patient_sex=item.patient_sex,
                            patient_birth_date=item.patient_birth_date.strftime("%Y%m%d")
                            if item.patient_birth_date else "",
                            modality=item.modality, body_part=item.body_part, description=item.study_description,
                            institution=item.clinic, workitem_uid=item.workitem_uid)

    def open_report(self, item: WorklistItem):
        """The report for a study: the autosaved draft if there is one (after a crash too), else the last
        signed version, else a new report on the template chosen from the study."""
        from reporting import workflow
        from reporting.model import Report
        from reporting.templates import choose_template

        draft = self.draft_store().load(item.study_uid)
        if draft is not None:
            draft._restored = True
            return draft
        records = workflow.signed_records(self.outbox, item.study_uid)
        if records:
            return records[-1].report()
        template = choose_template(item.modality, item.body_part, item.study_description)
        return Report(template, self.study_context(item), author=self.person())

    def present_measurement_ids(self):
        """Ids of measurements the viewer still shows (None: not tracked, check against the study)."""
        return

    def has_signing_key(self) -> bool:
        from reporting import signing

        return signing.has_key(self.user)

    def create_signing_key(self, pin: str) -> None:
        from reporting import signing

        signing.generate_key(self.user, pin)

    def prepare_signing(self, report) -> Future:
        """Start building the report's SR (``reporting.workflow.prepare_sr``) while the reader types the PIN; pass
        the returned future to :meth:`sign_report`. Only the time of signing is then written into the SR."""
        from reporting import workflow

        with self._lock:
            if self._prepare_pool is None:
                self._prepare_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rr-prepare-sr")
            pool = self._prepare_pool
        return pool.submit(workflow.prepare_sr, report, self.person())

    def sign_report(self, report, pin: str, prepared: Future | None = None):
        """Sign (the reader confirmed the warnings in the editor), write to the outbox, wake the sender.
        ``prepared``: from :meth:`prepare_signing` (used only if it holds this very content)."""
        from cloud_client.audit import SUCCESS
        from reporting import workflow

        ready = None
        if prepared is not None:
            try:
                ready = prepared.result(timeout=30)
            except Exception as exc:  # noqa: BLE001 - e.g. the report changed under it: the SR is built below
                log.info("The SR prepared during PIN entry is not used (%s)", type(exc).__name__)
        if report.is_addendum:
            result = workflow.sign_addendum(report, self.person(), pin, outbox=self.outbox, accept_warnings=True,
                                            prepared=ready, outputs=False)
        else:
            result = workflow.sign_report(report, self.person(), pin, outbox=self.outbox,
                                          drafts=self.draft_store(),
                                          present_measurement_ids=self.present_measurement_ids(),
                                          accept_warnings=True, prepared=ready, outputs=False)
        self.audit.record("report-signed", self.user, SUCCESS, study_uids=[report.study.study_uid],
                          workitem_uid=report.study.workitem_uid or None)
        if self.outbox_worker is not None:
            self.outbox_worker.wake()  # the SR goes out now; its PDF / FHIR / HL7 renderings are made meanwhile
        try:
            workflow.write_outputs(result.record)
        except Exception as exc:  # noqa: BLE001 - signed and queued; read_output() makes them when asked
            log.warning("The report is signed and queued; its PDF/FHIR/HL7 copies will be made when needed (%s)",
                        type(exc).__name__)
        return result

    def start_addendum(self, report):
        from reporting import workflow

        records = workflow.signed_records(self.outbox, report.study.study_uid)
        if not records:
            raise ValueError("No signed report for this study is held on this workstation.")
        return workflow.start_addendum(records[-1], self.person())

    def recently_signed(self, limit: int = 20) -> list[SignedSummary]:
        """This workstation's signed reports (newest first, one per study) - to reopen for an addendum."""
        from reporting import workflow

        latest: dict[str, SignedSummary] = {}
        for rec in workflow.signed_records(self.outbox):
            study = rec.study_identity.get("study_uid", "")
            c = rec.content
            study_ctx = c.get("study") or {}
            latest[study] = SignedSummary(study_uid=study, signed_at=c.get("signed_at", ""),
                                          description=study_ctx.get("description", ""),
                                          modality=study_ctx.get("modality", ""),
                                          body_part=study_ctx.get("body_part", ""),
                                          addendum=bool(c.get("predecessor")))
        return sorted(latest.values(), key=lambda s: s.signed_at, reverse=True)[:limit]

    def outbox_pending(self) -> int:
        return self.outbox.pending_count()

    def start_background(self) -> None:
        """Outbox delivery and prefetch threads (called once the window is up)."""
        from cloud_client.archive import ArchiveSink
        from reporting.outbox import OutboxWorker

        if self.outbox_worker is None:
            sink = ArchiveSink(self.session.web, self.worklist, audit=self.audit)
            self.outbox_worker = OutboxWorker(self.outbox, sink, idle_poll_s=10.0).start()
        self.start_prefetch()

    # -- measurements and annotations as DICOM (viewer.persistence) -------------------------------------------
    def save_measurements(self, items: list, key_images: list):
        """SR (TID 1500) + GSPS + KOS for what the reader drew, durably queued in the outbox and stored on the
        archive beside the images. Returns the outbox item, or None when there was nothing to save."""
        from reporting.outbox import OutboxItem
        from viewer import persistence

        if not items and not key_images:
            return None
        sops = {m.sop_instance_uid for m in [*items, *key_images] if getattr(m, "sop_instance_uid", None)}
        sources = [self.cache.get_dataset(sop) for sop in sorted(sops) if self.cache.has(sop)]
        if not sources:
            raise ValueError("The images the measurements were made on are no longer in the local cache.")
        saved = persistence.save_all(items, key_images, sources, observer_name=_pn(self.user))
        if not saved.datasets:
            return None
        item = self.outbox.enqueue(OutboxItem.create("measurements", saved.datasets))
        if self.outbox_worker is not None:
            self.outbox_worker.wake()
        return item

    def saved_annotations(self, study_uid: str) -> list:
        """Measurement SRs, presentation states and key-object notes stored for a study (not reports/reviews)."""
        from reporting import peer_review as pr

        out = []
        for series in self.session.web.qido_series(study_uid, includefield=["00080060"]):
            modality = (series.get("00080060", {}).get("Value") or [""])[0]
            series_uid = (series.get("0020000E", {}).get("Value") or [None])[0]
            if modality not in ("SR", "PR", "KO") or not series_uid:
                continue
            for inst in self.session.web.qido_instances(study_uid, series_uid):
                sop = (inst.get("00080018", {}).get("Value") or [None])[0]
                if not sop:
                    continue
                ds = self._retrieve(study_uid, series_uid, sop)
                if modality == "SR" and (pr.is_review_sr(ds) or _is_report_sr(ds)):
                    continue
                out.append(ds)
        return out

    # -- QA peer review ---------------------------------------------------------------------------------------
    def _sr_instances(self) -> list:
        """Every SR instance on the archive as (study, series, sop, series description)."""
        out = []
        for row in self.session.web._qido("series", {"Modality": "SR"}, None, None,
                                          ["0008103E", "0020000D"]):
            study = row.get("0020000D", {}).get("Value", [None])[0]
            series = row.get("0020000E", {}).get("Value", [None])[0]
            desc = (row.get("0008103E", {}).get("Value") or [""])[0]
            if not study or not series:
                continue
            for inst in self.session.web.qido_instances(study, series):
                sop = inst.get("00080018", {}).get("Value", [None])[0]
                if sop:
                    out.append((study, series, sop, desc))
        return out

    def _retrieve(self, study: str, series: str, sop: str):
        ds = self.cache.get_dataset(sop) if self.cache.has(sop) else None
        if ds is None:
            ds = self.session.web.dicomweb_client().retrieve_instance(study, series, sop)
        return ds

    def qa_worklist(self):
        """(signed reports of other readers, reviews) from the archive and this workstation's outbox."""
        from reporting import peer_review as pr

        reports, reviews = [], {}
        for study, series, sop, desc in self._sr_instances():
            ds = self._retrieve(study, series, sop)
            if pr.is_review_sr(ds):
                rv = pr.review_from_sr(ds)
                reviews[rv.review_id] = rv
                continue
            try:
                rep = pr.ReviewedReport.from_sr(ds)
            except (AttributeError, KeyError, ValueError) as exc:
                log.info("SR %s is not a report (%s)", sop, type(exc).__name__)
                continue
            if rep.reader != self.user:
                reports.append(rep)
        for item in self.outbox.items():
            if item.kind == "peer-review":
                for ds in item.dicom_datasets():
                    rv = pr.review_from_sr(ds)
                    reviews[rv.review_id] = rv
        done = {r.reviewed_sop_instance_uid for r in reviews.values() if r.reviewer == self.user}
        reports = [r for r in reports if r.sop_instance_uid not in done]
        return reports, list(reviews.values())

    def submit_review(self, review, original):
        """Write the review SR durably to the outbox; the outbox worker stores it on the archive."""
        from reporting import peer_review as pr

        ds = pr.build_review_sr(review, original, reviewer_name=self.user)
        item = pr.queue_review(ds, self.outbox)
        if self.outbox_worker is not None:
            self.outbox_worker.wake()
        return item

    # -- prefetch ---------------------------------------------------------------------------------------------
    def start_prefetch(self) -> None:
        from cloud_client.prefetch import Prefetcher

        if self.prefetcher is None and self.session.profile.prefetch_count > 0:
            self.prefetcher = Prefetcher(self.worklist, self.fetcher, count=self.session.profile.prefetch_count,
                                         include_pool=self.settings.show_shared_pool)
            self.prefetcher.start()

    # -- worklist events -------------------------------------------------------------------------------------
    def start_events(self, on_change) -> None:
        """Listen to the archive's UPS events: ``on_change(message)`` (on the listener thread) when a workitem
        was created, assigned or changed state; the prefetcher is woken as well. Polling stays as a safety net."""
        from cloud_client.events import WorklistEvents

        def on_event(message: dict) -> None:
            if self.prefetcher is not None:
                self.prefetcher.poke()
            on_change(message)

        if self.events is None:
            self.events = WorklistEvents(self.session.web, on_event)
            self.events.start()

    def stop_background(self) -> None:
        """Stop prefetch and outbox delivery threads (what is queued stays durable in the outbox)."""
        if self.events is not None:
            self.events.stop()
            self.events = None
        if self.prefetcher is not None:
            self.prefetcher.stop()
            self.prefetcher = None
        if self.outbox_worker is not None:
            self.outbox_worker.stop()
            self.outbox_worker = None
        with self._lock:
            pool, self._prepare_pool = self._prepare_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.stop_background()
        try:
            self.cache.close()
        finally:
            self.session.close()


def _pn(user: str) -> str:
    """A DICOM person name for a login id (single component, explicitly marked as the family name)."""
    return user if "^" in user else f"{user}^"


def _is_report_sr(ds) -> bool:
    """A ReadRoom diagnostic report (TID 2000 title), as opposed to a measurement report (TID 1500)."""
    try:
        code = ds.ConceptNameCodeSequence[0]
    except (AttributeError, IndexError):
        return False
    return str(code.CodeValue) in ("18748-4", "18782-3", "11528-7") or "Imaging Report" in str(code.CodeMeaning) \
        and "Measurement" not in str(code.CodeMeaning)
