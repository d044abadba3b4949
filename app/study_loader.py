"""Opening a study for reading: metadata first, one progressive volume per image series, pixels streamed in.

Owns the Qt-free logic between the cloud client's retrieval and the viewer: group WADO-RS metadata by series,
plan a :class:`viewer.loader.VolumeBuilder` per displayable series (SR, presentation states and key-object
notes are not images), and route each arriving instance into its builder. Callers get plain events
(:class:`SeriesReady`, :class:`SlicesArrived`, :class:`LoadProgress`) that the GUI turns into viewport
updates. One copy of the pixels: the builder writes into the volume the viewport already shows.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom import Dataset

log = logging.getLogger(__name__)

NON_IMAGE_MODALITIES = {"SR", "PR", "KO", "DOC", "REG", "SEG", "RTSTRUCT", "AU", "ECG"}


@dataclass
class SeriesInfo:
    series_uid: str
    modality: str = ""
    body_part: str = ""
    description: str = ""
    series_number: int | None = None
    instances: int = 0
    view_position: str = ""
    image_laterality: str = ""


@dataclass
class SeriesReady:
    """A series' volume is planned and preallocated; slices arrive later."""

    info: SeriesInfo
    volume: object           # viewer.volume.Volume


@dataclass
class LayoutPlanned:
    """The hanging protocol's plan for the study (rows x cols, which series where, which window)."""

    plan: object             # viewer.hanging.HangingPlan


@dataclass
class SlicesArrived:
    series_uid: str
    slices: list[int]


@dataclass
class LoadProgress:
    done: int
    total: int
    bytes: int = 0
    rate_mb_s: float | None = None
    eta_s: float | None = None


@dataclass
class SeriesFailed:
    series_uid: str
    message: str


@dataclass
class StudyLoad:
    """What a finished (or cancelled) load produced."""

    study_uid: str
    series: list[SeriesInfo] = field(default_factory=list)
    volumes: dict[str, object] = field(default_factory=dict)
    instances: int = 0
    seconds: float = 0.0
    first_slice_s: float | None = None
    retried: bool = False                 # some series were incomplete after the first retrieval


def _text(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword)
    return "" if v is None else str(v)


def group_series(metadata: list[Dataset]) -> dict[str, tuple[SeriesInfo, list[Dataset]]]:
    out: dict[str, tuple[SeriesInfo, list[Dataset]]] = {}
    for ds in metadata:
        uid = _text(ds, "SeriesInstanceUID")
        if uid not in out:
            num = ds.get("SeriesNumber")
            out[uid] = (SeriesInfo(series_uid=uid, modality=_text(ds, "Modality"),
                                   body_part=_text(ds, "BodyPartExamined"),
                                   description=_text(ds, "SeriesDescription"),
                                   series_number=int(num) if num not in (None, "") else None,
                                   view_position=_text(ds, "ViewPosition"),
                                   image_laterality=_text(ds, "ImageLaterality") or _text(ds, "Laterality")),
                        [])
        out[uid][1].append(ds)
        out[uid][0].instances += 1
    return out


def displayable(info: SeriesInfo, datasets: list[Dataset]) -> bool:
    return info.modality.upper() not in NON_IMAGE_MODALITIES and any("Rows" in d for d in datasets)


class StudyLoader:
    """Loads one study. ``fetch`` is the cloud client's streaming retrieval, called as
    ``fetch(study_uid, on_instance=f(sop_uid, ds), on_progress=f(FetchProgress), on_metadata=f(list[dict]),
    cancel=threading.Event)``. Metadata and pixels travel in parallel: instances that arrive before the
    metadata are held back and routed as soon as the volumes are planned."""

    def __init__(self, fetch: Callable[..., object]) -> None:
        self._fetch = fetch

    def load(self, study_uid: str, emit: Callable[[object], None],
             cancelled: threading.Event | None = None) -> StudyLoad:
        from viewer.loader import SeriesError, VolumeBuilder

        t0 = time.monotonic()
        cancelled = cancelled or threading.Event()
        result = StudyLoad(study_uid=study_uid)
        lock = threading.RLock()
        builders: dict[str, VolumeBuilder] = {}
        by_sop: dict[str, str] = {}
        waiting: list[Dataset] = []
        planned = threading.Event()
        count = [0]

        def route(ds: Dataset) -> None:
            series_uid = by_sop.get(_text(ds, "SOPInstanceUID")) or _text(ds, "SeriesInstanceUID")
            builder = builders.get(series_uid)
            if builder is None:
                return
            try:
                ks = builder.add_instance(ds)
            except SeriesError as exc:
                emit(SeriesFailed(series_uid, str(exc)))
                return
            if ks:
                if result.first_slice_s is None:
                    result.first_slice_s = time.monotonic() - t0
                emit(SlicesArrived(series_uid, ks))

        def on_metadata(meta: list[dict]) -> None:
            groups = group_series([Dataset.from_json(_without_bulk(d)) for d in meta])
            ordered = sorted(groups.values(),
                             key=lambda g: (g[0].series_number is None, g[0].series_number or 0))
            images = [d for info, datasets in ordered if displayable(info, datasets) for d in datasets]
            plan = plan_layout(images)
            if plan is not None:
                emit(LayoutPlanned(plan))
            with lock:
                for info, datasets in ordered:
                    result.series.append(info)
                    if not displayable(info, datasets):
                        continue
                    try:
                        builder = VolumeBuilder(datasets)
                    except SeriesError as exc:
                        emit(SeriesFailed(info.series_uid, str(exc)))
                        continue
                    builders[info.series_uid] = builder
                    result.volumes[info.series_uid] = builder.volume
                    for ds in datasets:
                        by_sop[_text(ds, "SOPInstanceUID")] = info.series_uid
                    emit(SeriesReady(info, builder.volume))
                planned.set()
                held, waiting[:] = list(waiting), []
                for ds in held:
                    route(ds)

        def on_instance(_sop_uid: str, ds: Dataset) -> None:
            with lock:  # builders are not thread-safe; decoding already happened in the fetcher
                count[0] += 1
                if not planned.is_set():
                    waiting.append(ds)
                    return
                route(ds)

        def on_progress(p) -> None:
            emit(LoadProgress(done=int(getattr(p, "instances_done", 0) or 0),
                              total=int(getattr(p, "instances_total", 0) or 0),
                              bytes=int(getattr(p, "bytes_done", 0) or 0), rate_mb_s=_rate(p),
                              eta_s=getattr(p, "eta_s", None)))

        fetched = self._fetch(study_uid, on_instance=on_instance, on_progress=on_progress,
                              on_metadata=on_metadata, cancel=cancelled)
        incomplete = [uid for uid, b in builders.items() if not b.complete]
        if incomplete and not cancelled.is_set():
            # The retrieval ended with images missing (the archive changed the study meanwhile, or an entry was
            # found damaged): ask once more for those series; what is cached comes from the cache, the rest from
            # the archive. (Instances a prefetch of the same study caches meanwhile are delivered by the fetch.)
            log.warning("%d series incomplete after retrieval; fetching them again", len(incomplete))
            result.retried = True
            self._fetch(study_uid, on_instance=on_instance, on_progress=on_progress, on_metadata=None,
                        cancel=cancelled, series_uids=incomplete)
            still = [uid for uid, b in builders.items() if not b.complete]
            for uid in still:
                emit(SeriesFailed(uid, "Some images of this series could not be retrieved; what is shown is "
                                       "incomplete. Reopen the study to try again."))
        result.instances = count[0]
        result.seconds = time.monotonic() - t0
        total = int(getattr(fetched, "instances_total", count[0]) or count[0])
        emit(LoadProgress(done=total, total=total))
        return result


def plan_layout(datasets: list[Dataset], priors=()):
    """The hanging protocol's plan for these image datasets (None when no protocol fits)."""
    from viewer import hanging

    if not datasets:
        return None
    try:
        return hanging.choose_protocol(hanging.StudyInfo.from_datasets(datasets), priors)
    except ValueError as exc:
        log.warning("No hanging protocol fits (%s); one viewport per series.", exc)
        return None


def _without_bulk(d: dict) -> dict:
    """Metadata without bulk-data references (pixels come with the instances, not from the metadata)."""
    return {k: v for k, v in d.items() if not (isinstance(v, dict) and "BulkDataURI" in v)}


def _rate(p) -> float | None:
    for name in ("rate_mb_s", "mb_per_s"):
        v = getattr(p, name, None)
        if v is not None:
            return float(v)
    v = getattr(p, "rate_bytes_s", None) or getattr(p, "bytes_per_s", None)
    return float(v) / 1e6 if v else None
