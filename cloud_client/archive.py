"""The narrow interface the reporting outbox uses to deliver signed reports to the archive.

Owns :class:`ArchiveSink`: ``store(datasets)`` (STOW-RS; storing the same SOP instance again is harmless, so
retries are idempotent), ``store_part10(blobs, study_uids)`` (the same for objects already encoded, sent byte for
byte as the outbox persisted them), ``complete_workitem(uid, output_sop_refs)`` (UPS-RS final-state Update, then
COMPLETED, through :class:`~cloud_client.worklist.WorklistClient`) and ``store_part10_and_complete`` (both, the
Update sent while the STOW runs; COMPLETED only after both succeeded). Connection problems and HTTP 5xx raise
:class:`ArchiveUnavailable` so the outbox keeps the item and retries; :class:`AuthError` means "sign in again";
other refusals raise :class:`RequestRejected` (the outbox should park the item and tell the user).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pydicom

from .audit import FAILURE, SUCCESS, AuditTrail
from .errors import ArchiveUnavailable, AuthError, CloudError, RequestRejected
from .session import DicomWebSession
from .worklist import WorklistClient

__all__ = ["ArchiveSink", "ArchiveUnavailable", "AuthError", "RequestRejected"]

SopRef = tuple[str, str, str, str]  # (sop_class_uid, sop_instance_uid, series_uid, study_uid)


class ArchiveSink:
    """Store report objects and complete their workitem. Thread-safe as far as the session is."""

    def __init__(self, session: DicomWebSession, worklist: WorklistClient | None = None, *,
                 audit: AuditTrail | None = None) -> None:
        self.session = session
        self.audit = audit if audit is not None else AuditTrail()
        self.worklist = worklist or WorklistClient(session, audit=self.audit)

    def store(self, datasets: list[pydicom.Dataset]) -> None:
        if not datasets:
            return
        studies = sorted({str(ds.StudyInstanceUID) for ds in datasets})
        self._audited_store(lambda: self.session.stow(datasets), studies, len(datasets))

    def store_part10(self, blobs: Sequence[bytes], study_uids: Iterable[str]) -> None:
        """Store DICOM Part 10 files as they are (no decode/re-encode). ``study_uids``: their studies, for the
        audit trail."""
        if not blobs:
            return
        self._audited_store(lambda: self.session.stow_part10(list(blobs)), sorted(set(study_uids)), len(blobs))

    def _audited_store(self, send, studies: list[str], count: int) -> None:
        try:
            send()
        except CloudError as exc:
            self.audit.record("store", self.session.user, FAILURE, study_uids=studies, sop_count=count,
                              detail=type(exc).__name__)
            raise
        self.audit.record("store", self.session.user, SUCCESS, study_uids=studies, sop_count=count)

    def complete_workitem(self, workitem_uid: str, output_sop_refs: list[SopRef]) -> None:
        self.worklist.complete(workitem_uid, output_sop_refs=output_sop_refs)

    def store_part10_and_complete(self, blobs: Sequence[bytes], study_uids: Iterable[str], workitem_uid: str,
                                  output_sop_refs: list[SopRef], on_stored: Callable[[], None] | None = None
                                  ) -> None:
        """:meth:`store_part10`, then COMPLETED as :meth:`complete_workitem` - the workitem's final-state Update
        sent while the objects are being stored (it only names them; the state changes after both succeeded).
        The objects are stored even when this workstation no longer holds the workitem. ``on_stored`` is called
        once they are (before the workitem is completed)."""
        study_uids = list(study_uids)

        def store() -> None:
            self.store_part10(blobs, study_uids)
            if on_stored is not None:
                on_stored()

        self.worklist.complete(workitem_uid, output_sop_refs=output_sop_refs, alongside=store)
