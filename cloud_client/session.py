"""An authenticated, pooled connection to one DICOMweb archive (QIDO-RS, WADO-RS metadata, STOW-RS).

Owns HTTP for the cloud client: one ``requests.Session`` per profile with a connection pool sized for parallel
retrieval, certificate verification (custom CA bundle allowed, never switched off), Basic or Bearer auth, a
timeout on every request, and the translation of transport failures into :mod:`cloud_client.errors`
(401/403 -> :class:`AuthError`, connection problems and 5xx -> :class:`ArchiveUnavailable`, other 4xx ->
:class:`RequestRejected`). Values cross the boundary as DICOM JSON dicts (PS3.18 F.2) or pydicom Datasets.
"""
from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterable
from typing import Any, Self

import pydicom
import requests
from requests.adapters import HTTPAdapter

from .errors import ArchiveUnavailable, AuthError, NotFound, RequestRejected
from .profiles import ServerProfile, check_transport, resolve_password

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"


class _TimeoutAdapter(HTTPAdapter):
    """Pooled adapter that puts a (connect, read) timeout on every request that does not name one, and
    enforces certificate verification: the profile's CA bundle when one is set (requests would otherwise let
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override it), and never ``verify=False``."""

    def __init__(self, timeout: tuple[float, float], pool_size: int, ca_bundle: str | None = None) -> None:
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        super().__init__(pool_connections=4, pool_maxsize=pool_size, max_retries=0)

    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        if self._ca_bundle:
            kwargs["verify"] = self._ca_bundle
        elif kwargs.get("verify") is False:
            kwargs["verify"] = True
        return super().send(request, **kwargs)


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r


class DicomWebSession:
    """One signed-in connection to ``profile.base_url``.

    ``password`` (or token for ``auth_kind="bearer"``) defaults to ``READROOM_PASSWORD`` or the keyring entry.
    """

    def __init__(self, profile: ServerProfile, password: str | None = None) -> None:
        check_transport(profile)
        self.profile = profile
        self.user = profile.user
        self.base_url = profile.base_url
        secret = resolve_password(profile, password)
        s = requests.Session()
        s.verify = profile.ca_bundle or True
        if secret is not None:
            s.auth = (profile.user, secret) if profile.auth_kind == "basic" else _BearerAuth(secret)
        adapter = _TimeoutAdapter((profile.connect_timeout_s, profile.timeout_s),
                                  pool_size=max(8, profile.parallel_connections * 2 + 2),
                                  ca_bundle=profile.ca_bundle)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.headers["User-Agent"] = "ReadRoom/0.1"
        # The environment's proxy (HTTP(S)_PROXY, NO_PROXY) and CA (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) settings
        # for this server, read once: requests would otherwise read the whole environment again on every
        # request (about 1 ms each - more than an UPS state change takes on loopback). netrc is not consulted:
        # credentials live in the keyring.
        env = s.merge_environment_settings(self.base_url, {}, None, s.verify, None)
        s.proxies.update(env.get("proxies") or {})
        if s.verify is True and isinstance(env.get("verify"), str):
            s.verify = env["verify"]
        s.trust_env = False
        self.http = s
        self.has_credentials = secret is not None

    # -- plumbing ---------------------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200,), **kwargs) -> requests.Response:
        """Send one request; return the response if its status is in ``ok``, else raise a CloudError."""
        url = self.url(path)
        try:
            resp = self.http.request(method, url, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise ArchiveUnavailable("The archive's security certificate could not be verified. Check the "
                                     "server address or the configured certificate authority.",
                                     detail=f"{method} {_safe(url)}: {type(exc).__name__}") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ArchiveUnavailable(detail=f"{method} {_safe(url)}: {type(exc).__name__}") from exc
        check_status(resp, ok)
        return resp

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dicomweb_client(self):
        """A ``dicomweb_client.DICOMwebClient`` sharing this session (auth, pool, TLS settings)."""
        from dicomweb_client.api import DICOMwebClient

        return DICOMwebClient(url=self.base_url, session=self.http)

    # -- sign-in ----------------------------------------------------------------------------------------------
    def check_sign_in(self) -> None:
        """Make one cheap authenticated request; raises AuthError / ArchiveUnavailable."""
        self.request("GET", "studies", params={"limit": "1"}, headers={"Accept": DICOM_JSON}, ok=(200, 204))

    # -- QIDO-RS ----------------------------------------------------------------------------------------------
    def _qido(self, path: str, filters: dict[str, Any] | None, limit: int | None, offset: int | None,
              includefield: Iterable[str] | None) -> list[dict]:
        params: list[tuple[str, str]] = []
        for k, v in (filters or {}).items():
            params.append((k, str(v)))
        for f in includefield or ():
            params.append(("includefield", f))
        if limit is not None:
            params.append(("limit", str(limit)))
        if offset:
            params.append(("offset", str(offset)))
        resp = self.request("GET", path, params=params, headers={"Accept": DICOM_JSON}, ok=(200, 204))
        if resp.status_code == 204 or not resp.content.strip():
            return []
        return resp.json()

    def qido_studies(self, filters: dict[str, Any] | None = None, *, limit: int | None = None,
                     offset: int | None = None, includefield: Iterable[str] | None = None) -> list[dict]:
        return self._qido("studies", filters, limit, offset, includefield)

    def qido_series(self, study_uid: str, filters: dict[str, Any] | None = None, **kw) -> list[dict]:
        return self._qido(f"studies/{study_uid}/series", filters, kw.get("limit"), kw.get("offset"),
                          kw.get("includefield"))

    def qido_instances(self, study_uid: str, series_uid: str | None = None,
                       filters: dict[str, Any] | None = None, **kw) -> list[dict]:
        path = f"studies/{study_uid}/series/{series_uid}/instances" if series_uid else \
            f"studies/{study_uid}/instances"
        return self._qido(path, filters, kw.get("limit"), kw.get("offset"), kw.get("includefield"))

    # -- WADO-RS metadata -------------------------------------------------------------------------------------
    def metadata(self, study_uid: str, series_uid: str | None = None) -> list[dict]:
        path = f"studies/{study_uid}/series/{series_uid}/metadata" if series_uid else \
            f"studies/{study_uid}/metadata"
        resp = self.request("GET", path, headers={"Accept": DICOM_JSON}, ok=(200, 204))
        if resp.status_code == 204 or not resp.content.strip():
            return []
        return resp.json()

    # -- STOW-RS ----------------------------------------------------------------------------------------------
    def stow(self, datasets: list[pydicom.Dataset], study_uid: str | None = None) -> dict:
        """Store ``datasets`` (STOW-RS). Storing an instance the archive already has is not an error.

        Returns the server's response (DICOM JSON dict, may be empty). Raises RequestRejected when the
        archive refused any instance.
        """
        parts = []
        for ds in datasets:
            part = io.BytesIO()
            pydicom.dcmwrite(part, ds, enforce_file_format=True)
            parts.append(part.getvalue())
        return self.stow_part10(parts, study_uid)

    def stow_part10(self, parts: list[bytes], study_uid: str | None = None) -> dict:
        """Store instances already encoded as DICOM Part 10 files (e.g. the bytes the report outbox persisted),
        sent as they are - no decoding, no re-encoding. Same answers and errors as :meth:`stow`."""
        boundary = uuid.uuid4().hex
        head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        chunks = []
        for part in parts:
            chunks += (head, part, b"\r\n")
        chunks.append(f"--{boundary}--\r\n".encode())
        path = f"studies/{study_uid}" if study_uid else "studies"
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": DICOM_JSON}
        resp = self.request("POST", path, data=b"".join(chunks), headers=headers, ok=(200, 202, 409))
        result = resp.json() if resp.content.strip() else {}
        failed = result.get("00081198", {}).get("Value") if isinstance(result, dict) else None
        if failed or resp.status_code == 409:
            raise RequestRejected("The archive refused to store the report objects.", status=resp.status_code,
                                  detail=f"{len(failed or [])} instance(s) failed")
        return result


def check_status(resp: requests.Response, ok: Iterable[int]) -> None:
    """Translate an HTTP status that is not in ``ok`` into a CloudError (no patient data in messages)."""
    code = resp.status_code
    if code in tuple(ok):
        return
    where = f"{resp.request.method if resp.request else ''} {_safe(resp.url)} -> {code}"
    if code in (401, 403):
        raise AuthError(code, detail=where)
    if code >= 500:
        raise ArchiveUnavailable(status=code, detail=where)
    if code in (404, 410):
        raise NotFound("The archive does not have the requested item (it may have been removed).",
                       status=code, detail=where)
    raise RequestRejected(f"The archive refused the request (HTTP {code}).", status=code,
                          detail=f"{where}: {resp.text[:300]}")


def _safe(url: str) -> str:
    """URL without query string (queries may carry patient IDs)."""
    return url.split("?", 1)[0]
