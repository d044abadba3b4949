"""Study retrieval: WADO-RS into the encrypted cache, the slice the viewer needs first, resumable.

Owns the download plan and the fast path. For each study:

1. QIDO-RS lists the series (with instance counts); the priority instance is the one asked for (``first``) or
   the middle (by InstanceNumber) of the largest series; it is fetched on its own connection right away.
2. Each series is streamed as one ``multipart/related`` WADO-RS response (one request per series is several
   times faster than one per instance on Orthanc), series in parallel over the pooled session
   (``profile.parallel_connections``). Each part is read straight into its own buffer as soon as its bytes
   arrive, parsed (:func:`~cloud_client.part10.read_part10`: the dataset pydicom.dcmread would give, at half its
   cost), handed to a cache-writer thread (which encrypts it and writes it into the
   :class:`~cloud_client.cache.InstanceCache`, one index commit per batch; file creation is kernel work that
   runs without the GIL, so it overlaps with the stream), its pixels decoded (``decode=True``: uncompressed
   greyscale with numpy straight from the Pixel Data bytes, anything else through pydicom) and
   ``on_instance(sop_uid, dataset)`` called - all off the caller's thread. ``on_instance`` may run before the
   instance's cache file is written; every instance is in the cache before ``fetch_study`` returns. Parsing
   and decoding run on the stream's own thread (``decode_workers=0``; the kernel keeps receiving meanwhile):
   on a 2-core machine that measured ~10% faster than handing parts to worker threads, which only fight over
   the GIL. Set ``decode_workers`` > 0 to hand parts to a pool (e.g. many cores and JPEG 2000 data).
3. What is already cached is never fetched again: a partly cached series is completed instance by instance
   when few are missing, or streamed with the cached parts skipped. A dropped connection or an archive restart
   is retried with back-off (up to ``retry_for_s``) and resumes from what is cached.
4. WADO-RS metadata of the study is fetched in parallel when ``on_metadata`` is given (for the viewer to lay
   out the volume before pixels arrive).

Transfer syntax: ``profile.transfer_syntaxes`` in order (``"*"`` = as stored); the next one is tried when the
server refuses (HTTP 406/400). Callbacks run on worker threads; a GUI must hand them to its own thread.
"""
from __future__ import annotations

import contextlib
import http.client
import io
import logging
import math
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import pydicom
import requests
import urllib3

from .audit import FAILURE, SUCCESS, AuditTrail
from .cache import InstanceCache, NewInstance
from .errors import ArchiveUnavailable, AuthError, CloudError, FetchCancelled, RequestRejected
from .multipart import MultipartError, boundary_of, iter_parts_from
from .part10 import convert_now, pixel_ids, quick_value, read_part10
from .session import DicomWebSession, check_status

log = logging.getLogger(__name__)

# A partly cached series with at most this fraction missing is completed instance by instance.
PER_INSTANCE_FRACTION = 0.25
PER_INSTANCE_MAX = 24
# What the stream reads of each instance (the index entry, how to decode its pixels), converted in one go.
_QUICK_TAGS = [0x00080018, 0x0020000D, 0x0020000E, 0x00200013, 0x00280002, 0x00280004, 0x00280006, 0x00280008,
               0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280103, 0x7FE00010]


@dataclass
class FetchProgress:
    """Progress of one study retrieval (all counts include what came from the cache)."""

    study_uid: str
    instances_done: int
    instances_total: int
    bytes_done: int  # bytes received over the network in this fetch
    elapsed_s: float
    rate_bytes_s: float
    eta_s: float | None
    from_cache: int = 0

    @property
    def fraction(self) -> float:
        return self.instances_done / self.instances_total if self.instances_total else 1.0


@dataclass
class FetchResult:
    study_uid: str
    instances_total: int
    fetched: int
    from_cache: int
    bytes_fetched: int
    seconds: float
    first_instance_s: float | None
    priority_sop_uid: str | None = None
    transfer_syntax: str = "*"
    retries: int = 0
    series_uids: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.fetched + self.from_cache >= self.instances_total


OnInstance = Callable[[str, pydicom.Dataset], None]
OnProgress = Callable[[FetchProgress], None]


class _Cancel:
    def __init__(self, cancel) -> None:
        self._c = cancel

    def __call__(self) -> bool:
        c = self._c
        if c is None:
            return False
        if isinstance(c, threading.Event):
            return c.is_set()
        return bool(c())


class _Run:
    """State of one fetch_study call (shared by its threads)."""

    def __init__(self, fetcher: StudyFetcher, study_uid: str, on_instance, on_progress, cancel) -> None:
        self.f = fetcher
        self.study_uid = study_uid
        self.on_instance = on_instance
        self.on_progress = on_progress
        self.cancelled = _Cancel(cancel)
        self.lock = threading.Lock()
        self.done: set[str] = set()
        self.t0 = time.perf_counter()
        self.first_s: float | None = None
        self.total = 0
        self.fetched = 0
        self.from_cache = 0
        self.bytes = 0
        self.retries = 0
        self.ts = fetcher.session.profile.transfer_syntaxes[0]
        self.workers = ThreadPoolExecutor(max_workers=max(1, fetcher.decode_workers),
                                          thread_name_prefix="rr-decode")
        self.inflight = threading.BoundedSemaphore(fetcher.max_inflight_parts)
        self.errors: list[BaseException] = []
        self.abort = threading.Event()  # set when the fetch failed or was cancelled: every stream stops
        self.responses: set = set()  # open pixel streams, closed on abort to unblock their reads
        self.writer = _CacheWriter(fetcher.cache, self, max_queued=fetcher.max_inflight_parts)

    def stop_streams(self) -> None:
        self.abort.set()
        with self.lock:
            open_now = list(self.responses)
        for resp in open_now:
            # Shut the socket down rather than close the response: close() waits for the buffered reader's
            # lock, which a thread blocked in recv() holds. After shutdown() that recv() returns at once,
            # and the stream's own thread closes the response.
            with contextlib.suppress(Exception):
                sock = getattr(getattr(resp.raw, "_connection", None), "sock", None)
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)

    def claim(self, sop_uid: str) -> bool:
        with self.lock:
            if sop_uid in self.done:
                return False
            self.done.add(sop_uid)
            return True

    def unclaim(self, sop_uid: str) -> None:
        with self.lock:
            self.done.discard(sop_uid)

    def delivered(self, sop_uid: str, n_bytes: int, cached: bool) -> None:
        with self.lock:
            if self.first_s is None:
                self.first_s = time.perf_counter() - self.t0
            if cached:
                self.from_cache += 1
            else:
                self.fetched += 1
                self.bytes += n_bytes
            progress = self._progress()
        if self.on_progress is not None:
            try:
                self.on_progress(progress)
            except Exception:  # a broken progress bar must not break the download
                log.exception("progress callback failed")

    def _progress(self) -> FetchProgress:
        elapsed = time.perf_counter() - self.t0
        done = self.fetched + self.from_cache
        rate = self.bytes / elapsed if elapsed > 0 else 0.0
        eta = None
        if self.fetched and self.total:
            per = elapsed / self.fetched
            eta = max(0.0, (self.total - done) * per)
        return FetchProgress(self.study_uid, done, self.total, self.bytes, elapsed, rate, eta, self.from_cache)

    def check_cancel(self) -> None:
        if self.abort.is_set() or self.cancelled():
            raise FetchCancelled()


_STOP = object()


class _CacheWriter:
    """Writes fetched parts into the cache on its own thread, a batch at a time (one index commit per batch).

    Encrypting is fast (AES-GCM); creating and writing the files is kernel work that runs without the GIL, so
    on this thread it overlaps with receiving and parsing the next parts on the stream's thread. ``put``
    blocks while ``max_queued`` parts wait (memory stays bounded). A failed write is reported through
    ``run.errors`` (the fetch then fails; nothing half-written is indexed)."""

    BATCH = 32

    def __init__(self, cache: InstanceCache, run: _Run, max_queued: int) -> None:
        self._cache = cache
        self._run = run
        self._q: queue.Queue = queue.Queue(max(1, max_queued))
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._discard = False  # set on cancel/failure: what still waits is dropped, not written

    def put(self, entry: NewInstance) -> None:
        with self._start_lock:
            if self._closed:  # only after the fetch failed or was cancelled: a late part is dropped
                raise FetchCancelled()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="rr-cache-writer", daemon=True)
                self._thread.start()
        while True:
            self._run.check_cancel()
            try:
                self._q.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self, discard: bool = False) -> None:
        """Write what waits (or drop it when ``discard``) and end the thread."""
        with self._start_lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is None:
            return
        if discard:
            self._discard = True
        self._q.put(_STOP)
        thread.join()

    def _loop(self) -> None:
        stop = False
        while not stop:
            batch: list[NewInstance] = []
            item = self._q.get()
            while True:
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                if len(batch) >= self.BATCH:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
            if not batch or self._discard:
                continue
            try:
                self._cache.put_many(batch)
            except BaseException as exc:  # noqa: BLE001 - reported from fetch_study
                self._discard = True
                for e in batch:
                    self._run.unclaim(e.sop_uid)
                with self._run.lock:
                    self._run.errors.append(exc)


class DamagedInstance(RequestRejected):
    """The archive sent an instance that cannot be read as DICOM (or its pixels cannot be decoded)."""

    def __init__(self, series_uid: str, cause: BaseException) -> None:
        super().__init__("The archive sent an image that ReadRoom cannot read (damaged or not DICOM), so the "
                         "study is not complete. Try again; if it keeps happening, ask the archive administrator "
                         "to check this study.", detail=f"series {series_uid}: {type(cause).__name__}")


class StudyFetcher:
    """Fetches studies through one session into one cache. Thread-safe; one instance can serve many fetches."""

    def __init__(self, session: DicomWebSession, cache: InstanceCache, *, audit: AuditTrail | None = None,
                 decode: bool = True, retry_for_s: float = 60.0, decode_workers: int = 0,
                 max_inflight_parts: int = 64, fast_part10: bool = True) -> None:
        self.session = session
        # read_part10 (the same datasets as pydicom.dcmread, faster); False: pydicom.dcmread itself - the
        # library path, kept as the comparison in the fetch benchmark
        self.read_part = read_part10 if fast_part10 else _dcmread_bytes
        self.cache = cache
        self.audit = audit if audit is not None else AuditTrail()
        self.decode = decode
        self.retry_for_s = retry_for_s
        self.decode_workers = decode_workers
        self.max_inflight_parts = max_inflight_parts

    # -- public -----------------------------------------------------------------------------------------------
    def fetch_study(self, study_uid: str, *, on_progress: OnProgress | None = None,
                    on_instance: OnInstance | None = None, on_metadata: Callable[[list[dict]], None] | None = None,
                    first: str | None = None, cancel=None, series_uids: list[str] | None = None,
                    pin: bool | str = False) -> FetchResult:
        """Bring every instance of the study into the cache (or only ``series_uids``); see the module notes.

        ``pin``: keep the study in the cache (never evicted) - True pins as "reading", a string names the reason
        (the prefetcher uses "prefetch"). Raises FetchCancelled, AuthError, ArchiveUnavailable (after
        ``retry_for_s``) or another CloudError.
        """
        run = _Run(self, study_uid, on_instance, on_progress, cancel)
        user = self.session.user
        self.audit.record("retrieve-begin", user, study_uids=[study_uid])
        if pin:
            self.cache.pin(study_uid, pin if isinstance(pin, str) else "reading")
        nets = ThreadPoolExecutor(max_workers=self.session.profile.parallel_connections + 2,
                                  thread_name_prefix="rr-fetch")
        try:
            result = self._fetch(run, nets, first, on_metadata, series_uids)
        except BaseException as exc:
            run.stop_streams()
            nets.shutdown(wait=False, cancel_futures=True)  # their blocked reads were just closed
            run.workers.shutdown(wait=True, cancel_futures=True)
            run.writer.close(discard=True)
            self.audit.record("retrieve", user, FAILURE, study_uids=[study_uid], sop_count=run.fetched,
                              detail=type(exc).__name__)
            raise
        nets.shutdown(wait=True)
        self.audit.record("retrieve", user, SUCCESS, study_uids=[study_uid],
                          sop_count=result.fetched + result.from_cache,
                          detail=f"{result.fetched} fetched, {result.from_cache} cached")
        return result

    # -- plan and run -----------------------------------------------------------------------------------------
    def _fetch(self, run: _Run, nets: ThreadPoolExecutor, first: str | None, on_metadata,
               only_series: list[str] | None) -> FetchResult:
        s = self.session
        study = run.study_uid
        series_rows = self._retry(run, lambda: s.qido_series(study, includefield=["00201209"]))
        series = []  # (series_uid, count)
        for row in series_rows:
            uid = row.get("0020000E", {}).get("Value", [None])[0]
            if not uid or (only_series and uid not in only_series):
                continue
            count = row.get("00201209", {}).get("Value", [0])[0]
            if not count:  # the server did not say: count the instances
                count = len(self._retry(run, lambda uid=uid: s.qido_instances(study, uid)))
            series.append((uid, int(count or 0)))
        if not series:
            raise RequestRejected("The archive has no images for this study.", detail=f"study {study}")
        run.total = sum(c for _, c in series)
        cached = self.cache.cached_sop_uids(study)

        meta_future: Future | None = None
        if on_metadata is not None:
            meta_future = nets.submit(self._metadata_task, run, on_metadata)

        # Priority instance: requested, or the middle of the largest series.
        prio_series, prio_sop = None, first
        if prio_sop is None:
            big_uid, big_n = max(series, key=lambda x: x[1])
            try:
                rows = s.qido_instances(study, big_uid, {"InstanceNumber": str(big_n // 2 + 1)}, limit=1) \
                    if big_n > 2 else []
            except CloudError:
                rows = []
            if rows:
                prio_sop = rows[0].get("00080018", {}).get("Value", [None])[0]
                prio_series = big_uid
        futures: list[Future] = []
        if prio_sop:
            if prio_sop in cached:
                self._deliver_cached(run, prio_sop)
            else:
                futures.append(nets.submit(self._instance_task, run, prio_series, prio_sop))

        # Everything cached is delivered (from the cache) as well, so the viewer has one path for all slices.
        if run.on_instance is not None and cached:
            for sop in sorted(cached):
                if run.claim(sop):
                    run.workers.submit(self._deliver_cached_claimed, run, sop)
        else:
            for sop in cached:
                if run.claim(sop):
                    run.delivered(sop, 0, cached=True)

        for uid, count in series:
            futures.append(nets.submit(self._series_task, run, uid, count, bool(cached)))
        while True:  # poll so that a cancel also interrupts a stream stalled inside a read
            done, pending = wait(futures, timeout=0.1, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    raise exc
            if not pending:
                break
            run.check_cancel()
        run.workers.shutdown(wait=True)
        run.writer.close()  # every fetched part is in the cache before the fetch returns
        if run.errors:
            raise run.errors[0]
        if meta_future is not None:
            meta_future.result()
        # Anything the streams did not deliver (server changed the study meanwhile, or parts were refused)?
        missing_total = run.total - (run.fetched + run.from_cache)
        if missing_total > 0:
            log.warning("Study fetch finished with %d instances missing", missing_total)
        return FetchResult(study_uid=study, instances_total=run.total, fetched=run.fetched,
                           from_cache=run.from_cache, bytes_fetched=run.bytes,
                           seconds=time.perf_counter() - run.t0, first_instance_s=run.first_s,
                           priority_sop_uid=prio_sop, transfer_syntax=run.ts, retries=run.retries,
                           series_uids=[u for u, _ in series])

    def _metadata_task(self, run: _Run, on_metadata) -> None:
        meta = self._retry(run, lambda: self.session.metadata(run.study_uid))
        on_metadata(meta)

    # -- tasks ------------------------------------------------------------------------------------------------
    def _instance_task(self, run: _Run, series_uid: str | None, sop_uid: str) -> None:
        """The priority instance on its own request. Failing here is not fatal: the series streams bring it."""
        try:
            if series_uid is None:  # a requested first instance: find its series
                rows = self.session.qido_instances(run.study_uid, None, {"SOPInstanceUID": sop_uid})
                series_uid = rows[0].get("0020000E", {}).get("Value", [None])[0] if rows else None
            if series_uid is None:
                return
            path = f"studies/{run.study_uid}/series/{series_uid}/instances/{sop_uid}"
            self._retry(run, lambda: self._stream(run, path, series_uid, skip=set()))
        except (AuthError, FetchCancelled):
            raise
        except CloudError as exc:
            log.info("Priority instance request failed (%s); the series stream will bring it",
                     type(exc).__name__)

    def _series_task(self, run: _Run, series_uid: str, count: int, maybe_cached: bool) -> None:
        path = f"studies/{run.study_uid}/series/{series_uid}"
        attempt = 0
        deadline = time.monotonic() + self.retry_for_s
        while True:
            run.check_cancel()
            try:
                if attempt == 0 and not maybe_cached:
                    self._stream(run, path, series_uid, skip=set())
                else:
                    self._complete_series(run, series_uid)
                return
            except (ArchiveUnavailable, MultipartError, requests.exceptions.ChunkedEncodingError,
                    requests.ConnectionError) as exc:
                attempt += 1
                run.retries += 1
                if time.monotonic() > deadline:
                    raise _as_unavailable(exc)
                log.info("retrying after %s (%s)", type(exc).__name__, getattr(exc, "detail", ""))
                log.info("Series stream interrupted (%s); resuming from the cache", type(exc).__name__)
                self._backoff(run, attempt)

    def _complete_series(self, run: _Run, series_uid: str) -> None:
        """Fetch what of the series is not cached yet: per instance when few are missing, else streamed."""
        rows = self.session.qido_instances(run.study_uid, series_uid, includefield=["00200013"])
        sops = [r.get("00080018", {}).get("Value", [None])[0] for r in rows]
        sops = [x for x in sops if x]
        with run.lock:
            todo = [x for x in sops if x not in run.done]
        # Cached since this fetch looked (e.g. by a prefetch of the same study running alongside): delivered from
        # the cache, not skipped - the viewer must get every instance.
        for x in todo:
            if self.cache.has(x):
                self._deliver_cached(run, x)
        with run.lock:  # what is still not delivered (including a cache entry found damaged just now)
            missing = [x for x in todo if x not in run.done]
        if not missing:
            return
        if len(missing) <= max(PER_INSTANCE_MAX, PER_INSTANCE_FRACTION * len(sops)) and len(missing) < len(sops):
            n = self.session.profile.parallel_connections
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="rr-inst") as ex:
                futs = [ex.submit(self._stream, run, f"studies/{run.study_uid}/series/{series_uid}/instances/{x}",
                                  series_uid, set()) for x in missing]
                for f in futs:
                    f.result()
        else:
            self._stream(run, f"studies/{run.study_uid}/series/{series_uid}", series_uid, skip=set(sops) - set(missing))

    def _stream(self, run: _Run, path: str, series_uid: str, skip: set[str]) -> None:
        """One WADO-RS request; every part goes to the workers. Transfer syntax falls back on 406/400."""
        run.check_cancel()
        resp = self._open(run, path)
        with run.lock:
            run.responses.add(resp)
        try:
            boundary = boundary_of(resp.headers.get("Content-Type", ""))
            src = _Body(resp)
            for _headers, body in iter_parts_from(src.read, boundary, readinto=src.readinto):
                run.check_cancel()
                run.inflight.acquire()
                if self.decode_workers == 0:  # inline: no hand-off between threads
                    self._store_part(run, series_uid, body, skip)
                    if run.errors:
                        raise run.errors[0]
                    continue
                try:
                    run.workers.submit(self._store_part, run, series_uid, body, skip)
                except BaseException:
                    run.inflight.release()
                    raise
        finally:
            with run.lock:
                run.responses.discard(resp)
            resp.close()

    def _open(self, run: _Run, path: str) -> requests.Response:
        profile = self.session.profile
        options = profile.transfer_syntaxes
        start = options.index(run.ts) if run.ts in options else 0
        last: Exception | None = None
        for ts in options[start:]:
            accept = f'multipart/related; type="application/dicom"; transfer-syntax={ts}'
            try:
                # identity: pixel data is compressed by transfer syntax, not by gzip (server CPU, latency)
                resp = self.session.http.get(self.session.url(path), stream=True,
                                             headers={"Accept": accept, "Accept-Encoding": "identity"})
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise ArchiveUnavailable(detail=f"GET {path}: {type(exc).__name__}") from exc
            if resp.status_code in (406, 400) and ts != options[-1]:
                resp.close()
                log.info("Archive refused transfer syntax %s; trying the next one", ts)
                last = RequestRejected(f"transfer syntax {ts} refused", status=resp.status_code)
                with run.lock:
                    run.ts = options[min(options.index(ts) + 1, len(options) - 1)]
                continue
            try:
                check_status(resp, (200,))
            except BaseException:
                resp.close()
                raise
            return resp
        raise last or RequestRejected("No acceptable transfer syntax.")

    def _store_part(self, run: _Run, series_uid: str, body: bytes, skip: set[str]) -> None:
        try:
            if run.cancelled():
                return
            # Without a consumer only the header is parsed (prefetch): the bytes go to the cache as they are.
            full = run.on_instance is not None
            try:
                ds = self.read_part(body, stop_before_pixels=not full)
                convert_now(ds, _QUICK_TAGS)
                sop = str(ds.SOPInstanceUID)
            except Exception as exc:  # noqa: BLE001 - the parser's words may quote the data: not shown
                raise DamagedInstance(series_uid, exc) from None
            if sop in skip or not run.claim(sop):
                return
            try:
                number = ds.get("InstanceNumber")
                series = str(ds.get("SeriesInstanceUID", series_uid))
                run.writer.put(NewInstance(sop, str(ds.StudyInstanceUID), series, body,
                                           int(number) if number not in (None, "") else None))
            except BaseException:
                run.unclaim(sop)
                raise
            if full and self.decode and "PixelData" in ds:
                try:
                    decode_pixels(ds)
                except Exception as exc:  # noqa: BLE001 - cached bytes stay; the reader gets clear words
                    raise DamagedInstance(series_uid, exc) from None
            run.delivered(sop, len(body), cached=False)
            if run.on_instance is not None:
                run.on_instance(sop, ds)
        except BaseException as exc:  # noqa: BLE001 - reported from fetch_study
            with run.lock:
                run.errors.append(exc)
        finally:
            run.inflight.release()

    def _deliver_cached(self, run: _Run, sop: str) -> None:
        if run.claim(sop):
            self._deliver_cached_claimed(run, sop)

    def _deliver_cached_claimed(self, run: _Run, sop: str) -> None:
        try:
            if run.on_instance is None:
                run.delivered(sop, 0, cached=True)
                return
            try:
                ds = self.cache.get_dataset(sop)
            except KeyError:  # damaged entry dropped by the cache: fetch it again
                run.unclaim(sop)
                return
            convert_now(ds, _QUICK_TAGS)
            if self.decode and "PixelData" in ds:
                decode_pixels(ds)
            run.delivered(sop, 0, cached=True)
            run.on_instance(sop, ds)
        except BaseException as exc:  # noqa: BLE001 - reported from fetch_study
            with run.lock:
                run.errors.append(exc)

    # -- retry ------------------------------------------------------------------------------------------------
    def _retry(self, run: _Run, fn):
        deadline = time.monotonic() + self.retry_for_s
        attempt = 0
        while True:
            run.check_cancel()
            try:
                return fn()
            except (ArchiveUnavailable, MultipartError, requests.exceptions.ChunkedEncodingError,
                    requests.ConnectionError) as exc:
                attempt += 1
                run.retries += 1
                if time.monotonic() > deadline:
                    raise _as_unavailable(exc)
                log.info("retrying after %s (%s)", type(exc).__name__, getattr(exc, "detail", ""))
                self._backoff(run, attempt)

    @staticmethod
    def _backoff(run: _Run, attempt: int) -> None:
        delay = min(2.0, 0.1 * math.pow(2, attempt - 1))
        end = time.monotonic() + delay
        while time.monotonic() < end:
            run.check_cancel()
            time.sleep(0.05)


class _Body:
    """The response body as ``read(n)`` (blocks until n bytes or the end) and ``readinto(view)`` (fills the
    view, fewer bytes only at the end), transport errors mapped to ArchiveUnavailable.

    A chunked body (what proxies such as nginx send) is de-chunked by :class:`Dechunker`: http.client's
    per-chunk reads cost more Python time than the network does. An uncompressed body without chunking is
    read through http.client straight into the caller's buffer. Anything else goes through urllib3."""

    def __init__(self, resp: requests.Response) -> None:
        raw = resp.raw
        hc = getattr(raw, "_fp", None)  # http.client.HTTPResponse
        fp = getattr(hc, "fp", None)
        plain = resp.headers.get("Content-Encoding", "identity").lower() in ("identity", "")
        self.readinto = None
        if plain and fp is not None and hasattr(fp, "read1") and getattr(hc, "chunked", False) \
                and getattr(hc, "chunk_left", 0) is None:
            d = Dechunker(fp)
            self.read, self.readinto = d.read, d.readinto
        elif plain and hc is not None and not getattr(hc, "chunked", True) and hasattr(hc, "readinto"):
            self._hc = hc
            self.read, self.readinto = self._hc_read, self._hc_readinto
        else:
            self._raw = raw
            self.read = self._urllib3_read

    def _urllib3_read(self, n: int) -> bytes:
        try:
            return self._raw.read(n, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ArchiveUnavailable(detail=f"stream interrupted: {type(exc).__name__}") from exc

    def _hc_read(self, n: int) -> bytes:
        try:
            return self._hc.read(n)
        except (http.client.HTTPException, OSError) as exc:
            raise ArchiveUnavailable(detail=f"stream interrupted: {type(exc).__name__}") from exc

    def _hc_readinto(self, view: memoryview) -> int:
        got, n = 0, len(view)
        try:
            while got < n:
                k = self._hc.readinto(view[got:])
                if not k:
                    break
                got += k
        except (http.client.HTTPException, OSError) as exc:
            raise ArchiveUnavailable(detail=f"stream interrupted: {type(exc).__name__}") from exc
        return got


class Dechunker:
    """HTTP/1.1 chunked transfer decoding over a buffered socket file.

    Small chunks (proxies often send a few KB each) are parsed out of large reads into one buffer (``read1`` /
    ``readinto1``: one call per megabyte, not per chunk); the large remainder of a large chunk is read
    straight into the caller's buffer (``readinto``), so its bytes are copied once on their way from the
    socket."""

    DIRECT = 1 << 16  # read at least this much of a chunk straight into the caller's buffer

    def __init__(self, fp, block: int = 1 << 20) -> None:
        self._fp = fp
        self._buf = bytearray(max(block, 64))
        self._mv = memoryview(self._buf)
        self._start = 0  # unread bytes are self._buf[self._start:self._end]
        self._end = 0
        self._left = 0  # bytes left in the current chunk
        self._crlf = False  # the CRLF after the current chunk is still to be read
        self._eof = False
        self._into1 = getattr(fp, "readinto1", None)
        self._into = getattr(fp, "readinto", None)

    def _fill(self) -> None:
        """At least one more byte into the buffer (ArchiveUnavailable when the connection ended)."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf):  # full: move what is unread to the front
            rest = bytes(self._mv[self._start:self._end])
            self._start, self._end = 0, len(rest)
            self._buf[: len(rest)] = rest
            if self._end == len(self._buf):  # all of it unread (a long size line): make room
                self._mv.release()
                self._buf.extend(bytes(len(self._buf)))
                self._mv = memoryview(self._buf)
        try:
            if self._into1 is not None:
                k = self._into1(self._mv[self._end:])
            else:
                data = self._fp.read1(len(self._buf) - self._end)
                k = len(data)
                self._mv[self._end: self._end + k] = data
        except OSError as exc:
            raise ArchiveUnavailable(detail=f"stream interrupted: {type(exc).__name__}") from exc
        if not k:
            raise ArchiveUnavailable(detail="stream interrupted: connection closed inside a chunked body")
        self._end += k

    def _next_chunk(self) -> bool:
        """Read the next chunk's size line; False at the last (empty) chunk."""
        if self._crlf:
            while self._end - self._start < 2:
                self._fill()
            if self._buf[self._start: self._start + 2] != b"\r\n":
                raise MultipartError("malformed chunked transfer encoding (no CRLF after a chunk)")
            self._start += 2
            self._crlf = False
        j = self._buf.find(b"\r\n", self._start, self._end)
        while j < 0:
            if self._end - self._start > 4096:
                raise MultipartError("malformed chunked transfer encoding (chunk size line too long)")
            self._fill()
            j = self._buf.find(b"\r\n", self._start, self._end)
        line = bytes(self._mv[self._start: j]).split(b";", 1)[0].strip()
        self._start = j + 2
        try:
            size = int(line, 16)
        except ValueError as exc:
            raise MultipartError("malformed chunked transfer encoding") from exc
        if size == 0:
            self._eof = True  # trailers are ignored; the connection is not reused
            return False
        self._left = size
        self._crlf = True
        return True

    def _ready(self) -> bool:
        """Positioned inside a chunk with bytes left (reading the next size line if needed); False at the end."""
        while self._left == 0:
            if self._eof or not self._next_chunk():
                return False
        return True

    def readinto(self, view) -> int:
        """Fill ``view`` with body bytes; fewer than ``len(view)`` only at the end of the body."""
        n = len(view)
        got = 0
        while got < n and self._ready():
            want = min(self._left, n - got)
            avail = self._end - self._start
            if avail:
                take = min(want, avail)
                view[got: got + take] = self._mv[self._start: self._start + take]
                self._start += take
            elif want >= self.DIRECT and self._into is not None:
                try:
                    take = self._into(view[got: got + want])
                except OSError as exc:
                    raise ArchiveUnavailable(detail=f"stream interrupted: {type(exc).__name__}") from exc
                if not take:
                    raise ArchiveUnavailable(detail="stream interrupted: connection closed inside a chunked body")
            else:
                self._fill()
                continue
            got += take
            self._left -= take
        return got

    def read(self, n: int) -> bytes:
        """Up to n body bytes (fewer only at the end of the body)."""
        pieces = []
        while n > 0 and self._ready():
            if self._start == self._end:
                self._fill()
            take = min(self._left, n, self._end - self._start)
            pieces.append(bytes(self._mv[self._start: self._start + take]))
            self._start += take
            self._left -= take
            n -= take
        return b"".join(pieces)


def decode_pixels(ds: pydicom.Dataset) -> None:
    """Decode the pixels once and keep the array on the dataset (``ds.pixel_array`` then returns it).

    Uncompressed little-endian greyscale (what a loopback archive sends) is read straight from the Pixel Data
    bytes with numpy - the same values, dtype and shape as pydicom's decoder, including its correction of
    unused high bits - at a tenth of the cost; everything else goes through pydicom's ``pixel_array``."""
    arr = _native_pixels(ds)
    if arr is None:
        ds.pixel_array  # noqa: B018 - the general path: pydicom (+ pylibjpeg/gdcm plugins)
        return
    # The attributes pydicom's own ``convert_pixel_data`` keeps its decoded array in; the ids say which
    # elements it was decoded from, so a later change of Pixel Data or its description decodes again.
    ds._pixel_array = arr
    ds._pixel_id = pixel_ids(ds)


def _native_pixels(ds: pydicom.Dataset) -> np.ndarray | None:
    """The pixel array of an uncompressed little-endian greyscale dataset, as pydicom would return it; None
    when the dataset is anything else (compressed, colour, float, 1-bit, short or odd Pixel Data)."""
    # The values are read from the raw elements (part10.quick_value): converting each through pydicom cost
    # more than decoding the pixels.
    try:
        ts = ds.file_meta.TransferSyntaxUID
        if not ts.is_little_endian or ts.is_encapsulated or 0x7FE00008 in ds or 0x7FE00009 in ds:
            return None
        if quick_value(ds, 0x00280002, "US", 1) != 1 or quick_value(ds, 0x00280004, "CS", "") not in (
                "MONOCHROME1", "MONOCHROME2"):
            return None
        rows, cols = int(quick_value(ds, 0x00280010, "US", 0)), int(quick_value(ds, 0x00280011, "US", 0))
        allocated = int(quick_value(ds, 0x00280100, "US", 0))
        stored = int(quick_value(ds, 0x00280101, "US", 0))
        signed = int(quick_value(ds, 0x00280103, "US", -1))
        frames = int(quick_value(ds, 0x00280008, "IS", None) or 1)
        if allocated not in (8, 16, 32) or not 0 < stored <= allocated or signed not in (0, 1) \
                or rows < 1 or cols < 1 or frames < 1:
            return None
        data = ds.PixelData
        count = frames * rows * cols
        if not isinstance(data, bytes) or len(data) < count * allocated // 8:
            return None
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}")
    src = np.frombuffer(data, dtype=dtype.newbyteorder("<"), count=count)
    shape = (frames, rows, cols) if frames > 1 else (rows, cols)
    # A writable array of its own in native byte order (as pydicom's), made in one pass where possible.
    if stored == allocated:
        return src.astype(dtype).reshape(shape)
    arr = np.empty(count, dtype)
    shift = allocated - stored
    if signed:  # as pydicom: shift the unused high bits out, which sign-extends
        np.left_shift(src, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    else:  # the same result for unsigned data: the unused high bits cleared
        np.bitwise_and(src, (1 << stored) - 1, out=arr)
    return arr.reshape(shape)


def _dcmread_bytes(data: bytes, *, stop_before_pixels: bool = False) -> pydicom.FileDataset:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)


def _as_unavailable(exc: BaseException) -> ArchiveUnavailable:
    if isinstance(exc, ArchiveUnavailable):
        return exc
    err = ArchiveUnavailable(detail=type(exc).__name__)
    err.__cause__ = exc
    return err


def fetch_study(session: DicomWebSession, cache: InstanceCache, study_uid: str, *,
                on_progress: OnProgress | None = None, on_instance: OnInstance | None = None,
                on_metadata=None, first: str | None = None, cancel=None, series_uids: list[str] | None = None,
                pin: bool | str = False, decode: bool = True, audit: AuditTrail | None = None) -> FetchResult:
    """Convenience wrapper: ``StudyFetcher(session, cache).fetch_study(...)``."""
    return StudyFetcher(session, cache, audit=audit, decode=decode).fetch_study(
        study_uid, on_progress=on_progress, on_instance=on_instance, on_metadata=on_metadata, first=first,
        cancel=cancel, series_uids=series_uids, pin=pin)
