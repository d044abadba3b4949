"""Hanging protocols: which series go in which viewport, with which window, for a study (and its priors).

Owns loading the protocols kept as data in ``resources/hanging_protocols/*.json`` and choosing one by modality,
body part and study description, then filling its viewports with series. No Qt, no VTK.

Protocol file fields: ``id``, ``name``, ``priority`` (higher wins among matches), ``requires_prior``, ``match``
(``modality``: list - required when given; ``min_series``; ``body_part``: list and ``description``: regex -
either one matching is enough when given), ``layout`` [rows, cols], ``viewports`` (each: ``study`` "current" | "prior";
``series`` rules: ``modality``, ``view_position`` list / ``description`` regex (either), ``plane``
("axial"|"coronal"|"sagittal"), ``prefer`` "most_images", ``same_as`` (index of the viewport whose series to
mirror in the prior); ``reformat`` (MPR plane to show), ``window`` (built-in preset id), ``label``, ``reuse``
(may show a series already placed)), ``link`` {scroll, window}.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources as _res

import numpy as np


@dataclasses.dataclass
class SeriesInfo:
    series_uid: str
    modality: str = ""
    description: str = ""
    body_part: str = ""
    view_position: str = ""
    plane: str | None = None          # axial | coronal | sagittal | oblique | None (no orientation)
    n_images: int = 0
    series_number: int | None = None

    @classmethod
    def from_dataset(cls, ds, n_images: int = 1) -> SeriesInfo:
        """From one instance's attributes (a pydicom Dataset, e.g. parsed WADO-RS/QIDO metadata)."""
        from viewer.orientation import plane_name

        plane = None
        iop = ds.get("ImageOrientationPatient")
        for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            groups = ds.get(seq)
            if iop is None and groups and "PlaneOrientationSequence" in groups[0]:
                iop = groups[0].PlaneOrientationSequence[0].ImageOrientationPatient
        if iop is not None and len(iop) == 6:
            v = np.array([float(x) for x in iop])
            plane = plane_name(v[:3], v[3:])
        return cls(series_uid=str(ds.get("SeriesInstanceUID", "")), modality=str(ds.get("Modality", "")),
                   description=str(ds.get("SeriesDescription", "")), body_part=str(ds.get("BodyPartExamined", "")),
                   view_position=str(ds.get("ViewPosition", "")), plane=plane,
                   n_images=max(int(n_images), int(ds.get("NumberOfFrames", 1) or 1)),
                   series_number=int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "") else None)


@dataclasses.dataclass
class StudyInfo:
    study_uid: str
    modalities: list[str] = dataclasses.field(default_factory=list)
    body_part: str = ""
    description: str = ""
    study_date: str = ""
    series: list[SeriesInfo] = dataclasses.field(default_factory=list)

    @classmethod
    def from_datasets(cls, datasets: Iterable) -> StudyInfo:
        """Group instances (Datasets of one study) into series."""
        by_series: dict[str, list] = {}
        for ds in datasets:
            by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
        if not by_series:
            raise ValueError("no instances given")
        first = next(iter(by_series.values()))[0]
        series = [SeriesInfo.from_dataset(items[0], n_images=len(items)) for items in by_series.values()]
        mods = list(dict.fromkeys(s.modality for s in series if s.modality))
        body = str(first.get("BodyPartExamined", "")) or next((s.body_part for s in series if s.body_part), "")
        return cls(study_uid=str(first.get("StudyInstanceUID", "")), modalities=mods, body_part=body,
                   description=str(first.get("StudyDescription", "")), study_date=str(first.get("StudyDate", "")),
                   series=series)


@dataclasses.dataclass
class ViewportAssignment:
    index: int
    study_uid: str | None
    series_uid: str | None            # None: nothing suitable (the viewport stays empty)
    reformat: str | None = None       # MPR plane to show instead of the acquired one
    window: str | None = None         # built-in preset id (viewer.presets), None = the series' default
    label: str = ""


@dataclasses.dataclass
class HangingPlan:
    protocol_id: str
    name: str
    rows: int
    cols: int
    viewports: list[ViewportAssignment]
    link_scroll: bool = False
    link_window: bool = False


@lru_cache(maxsize=1)
def load_protocols() -> tuple[dict, ...]:
    folder = _res.files("resources").joinpath("hanging_protocols")
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            proto = json.loads(entry.read_text(encoding="utf-8"))
            _validate(proto, entry.name)
            out.append(proto)
    return tuple(out)


def _validate(proto: dict, name: str) -> None:
    for key in ("id", "name", "layout", "viewports"):
        if key not in proto:
            raise ValueError(f"hanging protocol {name}: missing {key!r}")
    rows, cols = proto["layout"]
    if len(proto["viewports"]) > rows * cols:
        raise ValueError(f"hanging protocol {name}: more viewports than the layout has cells")


def _upper(values) -> set[str]:
    return {str(v).upper() for v in values or []}


def _study_score(proto: dict, study: StudyInfo, has_prior: bool) -> float | None:
    if proto.get("requires_prior") and not has_prior:
        return None
    m = proto.get("match", {})
    if len(study.series) < int(m.get("min_series", 0)):
        return None
    score = float(proto.get("priority", 0))
    if m.get("modality"):
        if not (_upper(m["modality"]) & _upper(study.modalities)):
            return None
        score += 10
    alternatives = []
    if m.get("body_part"):
        alternatives.append(study.body_part.upper() in _upper(m["body_part"]) or any(
            s.body_part.upper() in _upper(m["body_part"]) for s in study.series if s.body_part))
    if m.get("description"):
        text = " ".join([study.description] + [s.description for s in study.series])
        alternatives.append(bool(re.search(m["description"], text)))
    if alternatives:
        if not any(alternatives):
            return None
        score += 5 * sum(alternatives)
    return score


def _series_ok(rule: dict, s: SeriesInfo) -> bool:
    if rule.get("modality") and s.modality.upper() not in _upper(rule["modality"]):
        return False
    if rule.get("plane") and s.plane not in (rule["plane"], None):
        return False
    alternatives = []
    if rule.get("view_position"):
        alternatives.append(s.view_position.upper() in _upper(rule["view_position"]))
    if rule.get("description"):
        alternatives.append(bool(re.search(rule["description"], s.description or "")))
    return not alternatives or any(alternatives)


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _pick(rule: dict, series: Sequence[SeriesInfo], used: set[str], reuse: bool,
          mirror: SeriesInfo | None) -> SeriesInfo | None:
    pool = [s for s in series if (reuse or s.series_uid not in used)]
    if mirror is not None:
        same = [s for s in pool if s.modality == mirror.modality] or pool
        same = [s for s in same if s.plane == mirror.plane] or same
        return max(same, key=lambda s: (len(_tokens(s.description) & _tokens(mirror.description)), s.n_images),
                   default=None)
    fits = [s for s in pool if _series_ok(rule, s)]
    if rule.get("plane"):
        exact = [s for s in fits if s.plane == rule["plane"]]
        fits = exact or fits
    if not fits:
        return None
    if rule.get("prefer") == "most_images":
        return max(fits, key=lambda s: s.n_images)
    return fits[0]


def choose_protocol(study: StudyInfo, priors: Sequence[StudyInfo] = (),
                    protocols: Sequence[dict] | None = None) -> HangingPlan:
    """The best-matching protocol for ``study`` (priors newest first), with its viewports filled."""
    protocols = list(protocols if protocols is not None else load_protocols())
    ranked = []
    for proto in protocols:
        score = _study_score(proto, study, bool(priors))
        if score is not None:
            ranked.append((score, proto))
    ranked.sort(key=lambda t: -t[0])
    for _, proto in ranked:
        plan = _fill(proto, study, priors)
        if plan is not None:
            return plan
    raise ValueError("no hanging protocol fits this study (not even the default); check resources")


def _fill(proto: dict, study: StudyInfo, priors: Sequence[StudyInfo]) -> HangingPlan | None:
    rows, cols = proto["layout"]
    placed: list[SeriesInfo | None] = []
    used: set[str] = set()
    out = []
    for n, vp in enumerate(proto["viewports"]):
        target = study if vp.get("study", "current") == "current" else (priors[0] if priors else None)
        rule = vp.get("series", {})
        mirror = None
        if "same_as" in rule:
            ref = rule["same_as"]
            mirror = placed[ref] if 0 <= ref < len(placed) else None
            if mirror is None:
                return None
        s = _pick(rule, target.series, used, bool(vp.get("reuse")), mirror) if target else None
        if s is None and n == 0:
            return None
        placed.append(s)
        if s is not None and target is study:
            used.add(s.series_uid)
        out.append(ViewportAssignment(index=n, study_uid=target.study_uid if target else None,
                                      series_uid=s.series_uid if s else None, reformat=vp.get("reformat"),
                                      window=vp.get("window"), label=vp.get("label", "")))
    link = proto.get("link", {})
    return HangingPlan(protocol_id=proto["id"], name=proto["name"], rows=rows, cols=cols, viewports=out,
                       link_scroll=bool(link.get("scroll")), link_window=bool(link.get("window")))
