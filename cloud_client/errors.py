"""Errors the cloud client raises, worded for the person at the workstation.

Owns the exception hierarchy of cloud_client. Every message is something a radiologist can act on
("sign in again", "the archive cannot be reached") and never contains patient data (names, IDs); detail for
the log goes in ``detail`` (still no patient data: only UIDs, URLs without credentials, HTTP status codes).
"""
from __future__ import annotations


class CloudError(Exception):
    """Base class: a problem talking to the archive. ``str(exc)`` is fit to show to the user."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class AuthError(CloudError):
    """The server refused our credentials (HTTP 401/403): the user must sign in again."""

    def __init__(self, status: int | None = None, detail: str = "") -> None:
        if status == 403:
            msg = "The archive refused access for this account (403). Sign in again or ask your administrator."
        else:
            msg = "The archive did not accept your sign-in (wrong or expired password). Sign in again."
        super().__init__(msg, status=status, detail=detail)


class ArchiveUnavailable(CloudError):
    """The archive cannot be reached right now (connection refused/dropped, timeout, HTTP 5xx). Retry later."""

    def __init__(self, message: str = "The archive cannot be reached right now. ReadRoom will retry.",
                 *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message, status=status, detail=detail)


class InsecureConnectionError(CloudError):
    """A profile asks for plain http to a non-loopback host without allowing it explicitly."""


class RequestRejected(CloudError):
    """The server answered 4xx (other than 401/403) to a request: the request itself was refused."""


class NotFound(RequestRejected):
    """The server does not know the requested resource (HTTP 404/410)."""


class NotPermitted(RequestRejected):
    """The account is signed in but may not do this (HTTP 403 on an action, e.g. claiming without the reader role).
    Signing in again does not help; the administrator grants the role."""


class AlreadyClaimed(CloudError):
    """Someone else claimed the workitem first (or it is no longer open). Never retried blindly."""

    def __init__(self, workitem_uid: str, state: str | None = None) -> None:
        if state in ("COMPLETED", "CANCELED"):
            msg = f"This study was already {state.lower()} by someone else; it has left the worklist."
        else:
            msg = "Another reader took this study a moment ago. It has been removed from your list."
        super().__init__(msg, detail=f"workitem {workitem_uid} state {state}")
        self.workitem_uid = workitem_uid
        self.state = state


class NotHeld(CloudError):
    """We hold no Transaction UID for this workitem, so we may not change it."""

    def __init__(self, workitem_uid: str) -> None:
        super().__init__("This study is not claimed by you on this workstation, so it cannot be changed here.",
                         detail=f"workitem {workitem_uid}")
        self.workitem_uid = workitem_uid


class FetchCancelled(CloudError):
    """A retrieval was cancelled by the caller."""

    def __init__(self) -> None:
        super().__init__("The download was cancelled.")
