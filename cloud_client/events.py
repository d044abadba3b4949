"""Worklist events pushed by the archive: UPS-RS subscription and the WebSocket event channel (PS3.18 11.10).

Owns the workstation's subscription to UPS events so that a new assignment (a STAT study routed to this reader)
or a state change (another reader claimed an item) reaches the worklist within a second, not at the next poll.
:class:`WorklistEvents` subscribes this workstation's AE title globally (``POST
{base}/workitems/1.2.840.10008.5.1.4.34.5/subscribers/{AET}``), opens ``ws(s)://{base}/subscribers/{AET}`` with the
session's credentials and calls ``on_event(message)`` for each event (DICOM JSON: workitem UID, event type,
state; UIDs, never patient names). A dropped channel is reopened with back-off; an archive without UPS events
(404/405/501 on subscribe) leaves the caller on polling, which it keeps anyway as a safety net. Runs one daemon
thread; ``on_event`` and ``on_state`` are called on it. No Qt.
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable

from .errors import AuthError, CloudError, RequestRejected
from .session import DicomWebSession

log = logging.getLogger(__name__)

GLOBAL_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5"
CONNECTED, DISCONNECTED, UNSUPPORTED = "connected", "disconnected", "unsupported"


def subscriber_aet(user: str, station: str | None = None) -> str:
    """The AE title this workstation subscribes as (16 characters at most: letters, digits, '_').

    It names this installation, not only the user: a reader signed in at home and at the hospital has two
    subscriptions, and closing one workstation (which unsubscribes) does not silence the other."""
    station = station if station is not None else installation_id()
    name = re.sub(r"[^A-Z0-9_]", "_", user.upper())[: 15 - len(station)]
    return f"{name}_{station}"[:16]


def installation_id() -> str:
    """Six characters that stay the same for this ReadRoom installation (kept in the config folder)."""
    import secrets

    from .paths import config_dir

    path = config_dir() / "station-id"
    try:
        value = path.read_text().strip().upper()
        if re.fullmatch(r"[A-Z0-9]{6}", value):
            return value
    except OSError:
        pass
    value = secrets.token_hex(3).upper()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    except OSError as exc:  # a read-only config folder: this session still has a unique name
        log.info("station id not saved (%s)", type(exc).__name__)
    return value


class WorklistEvents:
    """Subscribe and listen; ``stop()`` ends the thread (and unsubscribes unless ``keep_subscription``)."""

    def __init__(self, session: DicomWebSession, on_event: Callable[[dict], None], *, aet: str | None = None,
                 on_state: Callable[[str], None] | None = None, max_backoff_s: float = 30.0) -> None:
        self.session = session
        self.aet = aet or subscriber_aet(session.user)
        self.on_event = on_event
        self.on_state = on_state
        self.max_backoff_s = max_backoff_s
        self.state = DISCONNECTED
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws = None
        self._keep = False
        self._lock = threading.Lock()

    # -- URLs and credentials -----------------------------------------------------------------------------------
    def subscription_path(self) -> str:
        return f"{self.session.profile.workitems_path}/{GLOBAL_SUBSCRIPTION}/subscribers/{self.aet}"

    def channel_url(self) -> str:
        base = self.session.base_url
        scheme, rest = base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/subscribers/{self.aet}"

    def _auth_header(self) -> dict[str, str]:
        auth = self.session.http.auth
        if isinstance(auth, tuple):
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            return {"Authorization": f"Basic {token}"}
        token = getattr(auth, "_token", None)
        return {"Authorization": f"Bearer {token}"} if token else {}

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def subscribe(self) -> bool:
        """Create the global subscription (idempotent); False when the archive has no UPS event service."""
        try:
            self.session.request("POST", self.subscription_path(), ok=(200, 201))
            return True
        except AuthError:
            raise
        except CloudError as exc:
            status = getattr(exc, "status", None)
            if (isinstance(exc, RequestRejected) and status != 429) or status in (404, 405, 501):
                log.info("the archive has no UPS subscriptions (HTTP %s): the worklist is polled", status)
                return False
            raise

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rr-worklist-events", daemon=True)
            self._thread.start()

    def stop(self, keep_subscription: bool = False, timeout: float = 1.0) -> None:
        """End the listener without blocking the caller for long: the socket is closed here; the thread itself
        unsubscribes on its way out (after any subscribe request it was still making, so none is left behind)."""
        self._keep = keep_subscription
        self._stop.set()
        with self._lock:
            ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):  # closing a socket that is already dead
                ws.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _unsubscribe(self) -> None:
        try:
            self.session.request("DELETE", self.subscription_path(), ok=(200, 204, 404),
                                 timeout=(self.session.profile.connect_timeout_s, 3.0))
        except Exception as exc:  # noqa: BLE001 - best effort on the way out (the session may be closing)
            log.info("unsubscribe failed (%s)", type(exc).__name__)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                try:
                    self.on_state(state)
                except Exception:
                    log.exception("worklist event state callback failed")

    def _run(self) -> None:
        subscribed = False
        try:
            subscribed = self._listen()
        finally:
            if subscribed and not self._keep:
                self._unsubscribe()
            self._set_state(UNSUPPORTED if self.state == UNSUPPORTED else DISCONNECTED)

    def _listen(self) -> bool:
        """The listening loop; returns whether a subscription was made (to be removed on the way out)."""
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        backoff = 1.0
        subscribed = False
        while not self._stop.is_set():
            try:
                # subscribed again on every (re)connect: idempotent, and it restores a subscription that was
                # removed meanwhile (the archive restarted without it, or an administrator cleared it)
                if not self.subscribe():
                    self._set_state(UNSUPPORTED)
                    return subscribed
                subscribed = True
                ssl_ctx = None
                if self.channel_url().startswith("wss://"):
                    import ssl

                    ssl_ctx = ssl.create_default_context(cafile=self.session.profile.ca_bundle)
                with connect(self.channel_url(), additional_headers=self._auth_header(), ssl=ssl_ctx,
                             open_timeout=self.session.profile.connect_timeout_s, close_timeout=1) as ws:
                    with self._lock:
                        self._ws = ws
                    if self._stop.is_set():
                        return subscribed
                    self._set_state(CONNECTED)
                    backoff = 1.0
                    for raw in ws:
                        try:
                            message = json.loads(raw)
                        except ValueError:
                            continue
                        try:
                            self.on_event(message)
                        except Exception:
                            log.exception("worklist event handler failed")
            except AuthError:
                log.warning("worklist events: the archive asks to sign in again; retrying")
            except InvalidStatus as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                log.info("worklist event channel refused (HTTP %s)", status)
                if status in (404, 405, 501):
                    self._set_state(UNSUPPORTED)
                    return subscribed
            except (WebSocketException, OSError, TimeoutError, CloudError) as exc:
                log.info("worklist event channel down (%s)", type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 - anything else: logged, and the channel is tried again
                log.warning("worklist event channel failed (%s); retrying", type(exc).__name__)
            finally:
                with self._lock:
                    self._ws = None
            if self._stop.is_set():
                break
            self._set_state(DISCONNECTED)
            self._stop.wait(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)
        return subscribed
