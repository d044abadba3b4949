"""Measurements and annotations as values: geometry in patient millimetres, what image they were made on, and the
maths (length, angle, Cobb angle, ROI statistics, pixel probe).

Owns the dataclasses the viewer's tools produce and persistence saves/restores: :class:`Length`, :class:`Angle`,
:class:`CobbAngle`, :class:`EllipseROI`, :class:`FreehandROI`, :class:`PixelProbe`, :class:`Arrow`,
:class:`TextNote`, :class:`KeyImage`. Every one carries

* ``points``: patient coordinates (DICOM LPS, mm) - the truth the values are computed from;
* ``sop_instance_uid`` + ``frame_number`` (1-based, None for single-frame) of the image it was made on;
* ``image_points``: the same points as DICOM image coordinates (column, row) with (0, 0) at the top-left corner
  of the top-left pixel, so pixel (i, j)'s centre is (i + 0.5, j + 0.5) (PS3.3 C.10.5.1.2 / C.18.6.1.1);
* ``calibration``: "patient" | "detector" | "uncalibrated" (from ``Volume.metadata["calibration"]``); lengths are
  in mm for the first two (labelled "(detector)" for the second) and in pixels when uncalibrated;
* ``uid``: a tracking UID (kept through save/restore).

Use ``Kind.from_volume(volume, points, ...)`` to fill reference, image points, calibration (and ROI statistics)
from the volume the points were picked on. No Qt, no VTK.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydicom.uid import generate_uid

Point3 = tuple[float, float, float]
Point2 = tuple[float, float]
CALIBRATIONS = ("patient", "detector", "uncalibrated")


class MeasurementError(ValueError):
    """A measurement that cannot be computed as asked (clear words for the user)."""


def _p3(points) -> list[Point3]:
    out = []
    for p in points:
        q = tuple(float(c) for c in p)
        if len(q) != 3:
            raise MeasurementError("points must be patient coordinates (x, y, z) in mm")
        out.append(q)
    return out


def _new_uid() -> str:
    return generate_uid()


@dataclasses.dataclass
class RoiStats:
    mean: float
    sd: float                 # population standard deviation of the pixel values inside
    min: float
    max: float
    pixel_count: int
    units: str                # "HU" for CT, "" otherwise


@dataclasses.dataclass(kw_only=True)
class Annotation:
    """Common fields of every measurement and annotation."""
    points: list[Point3]
    sop_instance_uid: str | None = None
    frame_number: int | None = None
    series_instance_uid: str | None = None
    image_points: list[Point2] | None = None
    calibration: str = "patient"
    text: str = ""
    uid: str = dataclasses.field(default_factory=_new_uid)

    n_points: ClassVar[tuple[int, ...]] = ()          # allowed point counts (empty: any >= 1)
    kind: ClassVar[str] = "annotation"

    def __post_init__(self) -> None:
        self.points = _p3(self.points)
        if self.n_points and len(self.points) not in self.n_points:
            raise MeasurementError(f"{type(self).__name__} needs {' or '.join(map(str, self.n_points))} points, "
                                   f"got {len(self.points)}")
        if self.calibration not in CALIBRATIONS:
            raise MeasurementError(f"calibration must be one of {CALIBRATIONS}")
        if self.image_points is not None:
            self.image_points = [(float(c), float(r)) for c, r in self.image_points]

    @property
    def length_unit(self) -> str:
        return "px" if self.calibration == "uncalibrated" else "mm"

    @property
    def calibration_suffix(self) -> str:
        return " (detector)" if self.calibration == "detector" else (" (uncalibrated)"
                                                                     if self.calibration == "uncalibrated" else "")

    def label(self) -> str:
        return self.text

    @classmethod
    def from_volume(cls, volume, points, **fields):
        """Build from points picked on ``volume``: fills image reference, image points and calibration."""
        fields = {**locate(volume, points), **fields}
        return cls(points=points, **fields)


def locate(volume, points) -> dict:
    """Reference fields for patient points on a Volume: the SOP Instance/frame of the slice they lie on (None for
    points off an acquired slice, e.g. on an oblique MPR plane), their image coordinates, the calibration."""
    md = getattr(volume, "metadata", {}) or {}
    pts = _p3(points)
    idx = np.array([volume.patient_to_index(*p) for p in pts]) if pts else np.zeros((0, 3))
    out: dict = {"calibration": md.get("calibration", "patient"),
                 "series_instance_uid": md.get("series_uid") or None}
    if len(idx):
        k = idx[:, 0]
        k0 = round(float(k[0]))
        on_slice = bool(np.all(np.abs(k - k0) < 0.05)) and 0 <= k0 < volume.voxels.shape[0]
        refs = md.get("slice_refs") or []
        if on_slice and k0 < len(refs) and refs[k0] is not None:
            out["sop_instance_uid"], out["frame_number"] = refs[k0][0], refs[k0][1]
        if on_slice:
            out["image_points"] = [(float(i) + 0.5, float(j) + 0.5) for _, j, i in idx]
    return out


def image_to_patient(volume, k: int, image_point: Point2) -> Point3:
    """Patient coordinate of DICOM image coordinate (column, row) on slice k of ``volume``."""
    col, row = image_point
    return tuple(float(v) for v in volume.index_to_patient(k, row - 0.5, col - 0.5))


def _dist(a, b) -> float:
    return float(np.linalg.norm(np.subtract(a, b)))


def _angle_deg(u, v) -> float:
    u = np.asarray(u, float)
    v = np.asarray(v, float)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        raise MeasurementError("an angle needs two lines of non-zero length")
    c = float(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))
    return math.degrees(math.acos(c))


@dataclasses.dataclass(kw_only=True)
class Length(Annotation):
    n_points: ClassVar[tuple[int, ...]] = (2,)
    kind: ClassVar[str] = "length"

    @property
    def value(self) -> float:
        """Length in mm (pixels when uncalibrated: the volume's spacing is then 1 per pixel)."""
        return _dist(self.points[0], self.points[1])

    def label(self) -> str:
        return f"{self.value:.1f} {self.length_unit}{self.calibration_suffix}"


@dataclasses.dataclass(kw_only=True)
class Angle(Annotation):
    """points = [end A, vertex, end B]; value in degrees (0..180)."""
    n_points: ClassVar[tuple[int, ...]] = (3,)
    kind: ClassVar[str] = "angle"

    @property
    def value(self) -> float:
        a, v, b = (np.asarray(p) for p in self.points)
        return _angle_deg(a - v, b - v)

    def label(self) -> str:
        return f"{self.value:.1f}\N{DEGREE SIGN}"


@dataclasses.dataclass(kw_only=True)
class CobbAngle(Annotation):
    """points = [line 1 start, line 1 end, line 2 start, line 2 end]; the angle between the two lines
    (0..90 degrees: lines have no direction)."""
    n_points: ClassVar[tuple[int, ...]] = (4,)
    kind: ClassVar[str] = "cobb"

    @property
    def value(self) -> float:
        p = [np.asarray(q) for q in self.points]
        ang = _angle_deg(p[1] - p[0], p[3] - p[2])
        return 180.0 - ang if ang > 90.0 else ang

    def label(self) -> str:
        return f"Cobb {self.value:.1f}\N{DEGREE SIGN}"


@dataclasses.dataclass(kw_only=True)
class _Roi(Annotation):
    stats: RoiStats | None = None

    @property
    def area(self) -> float:
        raise NotImplementedError

    @property
    def area_unit(self) -> str:
        return "px2" if self.calibration == "uncalibrated" else "mm2"

    def label(self) -> str:
        parts = []
        if self.stats is not None:
            u = f" {self.stats.units}" if self.stats.units else ""
            parts.append(f"Mean {self.stats.mean:.1f}{u} SD {self.stats.sd:.1f}")
            parts.append(f"Min {self.stats.min:.0f} Max {self.stats.max:.0f}")
        parts.append(f"Area {self.area:.1f} {self.area_unit.replace('2', chr(178))}{self.calibration_suffix}")
        return "  ".join(parts)

    def _inside(self, plane_xy: np.ndarray, vert_xy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def from_volume(cls, volume, points, **fields):
        roi = super().from_volume(volume, cls._normalise_points(volume, points), **fields)
        roi.stats = roi_stats(volume, roi)
        return roi

    @classmethod
    def _normalise_points(cls, volume, points):
        return points


@dataclasses.dataclass(kw_only=True)
class EllipseROI(_Roi):
    """points = the ends of the major axis then the ends of the minor axis (the DICOM ELLIPSE form).
    ``EllipseROI.from_volume(volume, [corner1, corner2])`` also accepts two opposite corners of the bounding box
    in the slice plane."""
    n_points: ClassVar[tuple[int, ...]] = (4,)
    kind: ClassVar[str] = "ellipse"

    @classmethod
    def _normalise_points(cls, volume, points):
        pts = _p3(points)
        if len(pts) != 2:
            return pts
        a, b = (np.asarray(p) for p in pts)
        row = np.asarray(volume.row_direction, float)
        col = np.asarray(volume.column_direction, float)
        c = (a + b) / 2
        hx = abs(float(np.dot(b - a, row))) / 2
        hy = abs(float(np.dot(b - a, col))) / 2
        if hx >= hy:
            return [c - hx * row, c + hx * row, c - hy * col, c + hy * col]
        return [c - hy * col, c + hy * col, c - hx * row, c + hx * row]

    @property
    def semi_axes(self) -> tuple[float, float]:
        p = self.points
        return _dist(p[0], p[1]) / 2, _dist(p[2], p[3]) / 2

    @property
    def area(self) -> float:
        a, b = self.semi_axes
        return math.pi * a * b

    def _inside(self, xy: np.ndarray, vert: np.ndarray) -> np.ndarray:
        c = (vert[0] + vert[1]) / 2
        ua = (vert[1] - vert[0]) / 2
        ub = (vert[3] - vert[2]) / 2
        la, lb = np.linalg.norm(ua), np.linalg.norm(ub)
        if la == 0 or lb == 0:
            return np.zeros(len(xy), bool)
        d = xy - c
        return (d @ (ua / la) / la) ** 2 + (d @ (ub / lb) / lb) ** 2 <= 1.0


@dataclasses.dataclass(kw_only=True)
class FreehandROI(_Roi):
    """points = polygon vertices (closed implicitly)."""
    kind: ClassVar[str] = "freehand"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.points) < 3:
            raise MeasurementError("a freehand region needs at least 3 points")

    @property
    def area(self) -> float:
        p = np.asarray(self.points, float)
        cross = np.zeros(3)
        for a, b in zip(p, np.roll(p, -1, axis=0)):
            cross += np.cross(a, b)
        return float(np.linalg.norm(cross)) / 2.0

    def _inside(self, xy: np.ndarray, vert: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        inside = np.zeros(len(xy), bool)
        n = len(vert)
        for a in range(n):
            x1, y1 = vert[a]
            x2, y2 = vert[(a + 1) % n]
            crosses = (y1 > y) != (y2 > y)
            with np.errstate(divide="ignore", invalid="ignore"):
                xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (x < xint)
        return inside


def roi_stats(volume, roi: _Roi) -> RoiStats:
    """Statistics of the voxel values inside ``roi``.

    On an acquired slice: the voxels whose centres lie inside (exact values). On any other plane (MPR, oblique):
    the volume sampled by trilinear interpolation on a grid in the region's plane at the finest in-plane voxel
    spacing (``pixel_count`` then counts samples)."""
    vox = volume.voxels
    if vox.ndim != 3:
        raise MeasurementError("region statistics need a greyscale image")
    idx = np.array([volume.patient_to_index(*p) for p in roi.points])
    k0 = round(float(idx[0, 0]))
    if not np.all(np.abs(idx[:, 0] - k0) < 0.05) or not 0 <= k0 < vox.shape[0]:
        return _plane_stats(volume, roi)
    _, dj, di = volume.spacing
    vert = np.column_stack([idx[:, 2] * di, idx[:, 1] * dj])            # in-plane mm (x along rows)
    i_lo = max(math.floor(idx[:, 2].min()) - 1, 0)
    i_hi = min(math.ceil(idx[:, 2].max()) + 1, vox.shape[2] - 1)
    j_lo = max(math.floor(idx[:, 1].min()) - 1, 0)
    j_hi = min(math.ceil(idx[:, 1].max()) + 1, vox.shape[1] - 1)
    if i_lo > i_hi or j_lo > j_hi:
        raise MeasurementError("the region lies outside the image")
    jj, ii = np.mgrid[j_lo:j_hi + 1, i_lo:i_hi + 1]
    xy = np.column_stack([ii.ravel() * di, jj.ravel() * dj])
    mask = roi._inside(xy, vert).reshape(jj.shape)
    values = vox[k0, j_lo:j_hi + 1, i_lo:i_hi + 1][mask].astype(np.float64)
    if values.size == 0:
        raise MeasurementError("the region contains no pixel centre; draw it larger")
    units = (getattr(volume, "metadata", {}) or {}).get("units", "")
    return RoiStats(mean=float(values.mean()), sd=float(values.std()), min=float(values.min()),
                    max=float(values.max()), pixel_count=int(values.size), units=units)


def sample_trilinear(volume, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``volume`` at patient points (N, 3) by trilinear interpolation; returns (values, inside mask)."""
    inv = np.linalg.inv(volume.affine)
    ijk = (np.c_[points, np.ones(len(points))] @ inv.T)[:, :3]          # (i, j, k)
    shape = np.array(volume.voxels.shape[:3][::-1])                      # (ni, nj, nk)
    inside = np.all((ijk >= -1e-6) & (ijk <= shape - 1 + 1e-6), axis=1)
    ijk = np.clip(ijk[inside], 0, shape - 1)
    base = np.minimum(np.floor(ijk).astype(np.int64), np.maximum(shape - 2, 0))
    frac = ijk - base
    vox = volume.voxels
    out = np.zeros(len(ijk))
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                w = ((frac[:, 0] if di else 1 - frac[:, 0]) * (frac[:, 1] if dj else 1 - frac[:, 1])
                     * (frac[:, 2] if dk else 1 - frac[:, 2]))
                ii = np.minimum(base[:, 0] + di, shape[0] - 1)
                jj = np.minimum(base[:, 1] + dj, shape[1] - 1)
                kk = np.minimum(base[:, 2] + dk, shape[2] - 1)
                out += w * vox[kk, jj, ii]
    return out, inside


def _plane_stats(volume, roi: _Roi) -> RoiStats:
    pts = np.asarray(roi.points, dtype=np.float64)
    centre = pts.mean(axis=0)
    if isinstance(roi, EllipseROI):
        u = _unit3(pts[1] - pts[0])
        v = pts[3] - pts[2]
        v = _unit3(v - np.dot(v, u) * u)
        centre = (pts[0] + pts[1]) / 2
    else:
        _, sv, vt = np.linalg.svd(pts - centre)
        u, v = vt[0], vt[1]
        if sv[2] > 0.5 * math.sqrt(len(pts)):
            raise MeasurementError("the region's points do not lie in one plane")
    vert = np.column_stack([(pts - centre) @ u, (pts - centre) @ v])
    _, dj, di = volume.spacing
    step = min(dj, di)
    xs = np.arange(vert[:, 0].min(), vert[:, 0].max() + step / 2, step)
    ys = np.arange(vert[:, 1].min(), vert[:, 1].max() + step / 2, step)
    gx, gy = np.meshgrid(xs, ys)
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    mask = roi._inside(xy, vert)
    if not mask.any():
        raise MeasurementError("the region contains no sample point; draw it larger")
    world = centre + np.outer(xy[mask, 0], u) + np.outer(xy[mask, 1], v)
    values, _ = sample_trilinear(volume, world)
    if values.size == 0:
        raise MeasurementError("the region lies outside the volume")
    units = (getattr(volume, "metadata", {}) or {}).get("units", "")
    return RoiStats(mean=float(values.mean()), sd=float(values.std()), min=float(values.min()),
                    max=float(values.max()), pixel_count=int(values.size), units=units)


def _unit3(v) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n == 0:
        raise MeasurementError("the region has no extent")
    return np.asarray(v, float) / n


@dataclasses.dataclass(kw_only=True)
class PixelProbe(Annotation):
    """The value of the voxel under one point."""
    n_points: ClassVar[tuple[int, ...]] = (1,)
    kind: ClassVar[str] = "probe"
    value: float | None = None
    units: str = ""

    @classmethod
    def at(cls, volume, point, **fields) -> PixelProbe:
        k, j, i = (round(float(c)) for c in volume.patient_to_index(*point))
        vox = volume.voxels
        if not (0 <= k < vox.shape[0] and 0 <= j < vox.shape[1] and 0 <= i < vox.shape[2]):
            raise MeasurementError("the point lies outside the image")
        v = vox[k, j, i]
        value = float(v) if np.ndim(v) == 0 else float(np.mean(v))
        units = (getattr(volume, "metadata", {}) or {}).get("units", "")
        return cls.from_volume(volume, [point], value=value, units=units, **fields)

    def label(self) -> str:
        return "" if self.value is None else f"{self.value:.1f}{(' ' + self.units) if self.units else ''}"


@dataclasses.dataclass(kw_only=True)
class Arrow(Annotation):
    """points = [tip (what it points at), tail]; ``text`` is shown at the tail."""
    n_points: ClassVar[tuple[int, ...]] = (2,)
    kind: ClassVar[str] = "arrow"


@dataclasses.dataclass(kw_only=True)
class TextNote(Annotation):
    """A text note anchored at one point."""
    n_points: ClassVar[tuple[int, ...]] = (1,)
    kind: ClassVar[str] = "text"


@dataclasses.dataclass(kw_only=True)
class KeyImage:
    """A key-image mark on one image (frame) of a series."""
    sop_instance_uid: str
    frame_number: int | None = None
    series_instance_uid: str | None = None
    sop_class_uid: str | None = None
    note: str = ""
    kind: ClassVar[str] = "key_image"

    @classmethod
    def from_volume(cls, volume, k: int, note: str = "") -> KeyImage:
        md = volume.metadata
        refs = md.get("slice_refs") or []
        if not 0 <= k < len(refs) or refs[k] is None:
            raise MeasurementError("this slice was not acquired (interpolated or missing); mark an acquired slice")
        return cls(sop_instance_uid=refs[k][0], frame_number=refs[k][1], series_instance_uid=md.get("series_uid"),
                   sop_class_uid=md.get("sop_class_uid"), note=note)


MEASUREMENT_TYPES: dict[str, type[Annotation]] = {
    c.kind: c for c in (Length, Angle, CobbAngle, EllipseROI, FreehandROI, PixelProbe, Arrow, TextNote)
}


def same_geometry(a: Annotation, b: Annotation, tol: float = 1e-3) -> bool:
    """True when two annotations have the same kind, reference and points (within ``tol`` mm / px)."""
    if type(a) is not type(b) or a.sop_instance_uid != b.sop_instance_uid or a.frame_number != b.frame_number:
        return False
    if len(a.points) != len(b.points):
        return False
    return bool(np.allclose(np.asarray(a.points), np.asarray(b.points), atol=tol))


def values_in(seq: Sequence[Annotation], kind: str) -> list[Annotation]:
    return [m for m in seq if m.kind == kind]
