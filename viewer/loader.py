"""Series loader: DICOM instances (files or pydicom Datasets, any order) -> :class:`viewer.volume.Volume`.

Owns the rules that turn a series into voxels in modality units plus exact patient geometry, and the
progressive :class:`VolumeBuilder` that preallocates the volume from metadata and fills it as instances arrive.

What it handles
* Cross-sectional stacks (CT/MR/PT/NM with Image Position/Orientation (Patient)): files in any order, sorted
  along the slice normal; any orientation (axial, sagittal, coronal, oblique); head- or feet-first.
* Gantry tilt: the stack is kept *sheared* - ``slice_direction`` is the direction from one slice origin to the
  next and is not perpendicular to the image plane. Geometry stays exact; a warning says so.
* Irregular spacing / missing slices (decision, default ``irregular="resample"``): the stack is put on a regular
  grid along the slice direction. Grid slices that coincide with an acquired slice are copied unchanged; a gap
  that is a whole multiple of the usual step (missing slices) is filled with *blank* slices (the fill value, see
  ``metadata["fill_value"]``), never interpolated; other grid slices are linearly interpolated between the two
  acquired neighbours. Every case is named in ``Volume.warnings`` and ``metadata["acquired"]`` marks which
  slices are acquired. ``irregular="refuse"`` raises :class:`SeriesError` instead.
* Enhanced multi-frame CT/MR: geometry, pixel measures, rescale and windows from the per-frame / shared
  functional groups. Several frames at one position (temporal/echo dimension): one position -> shown as cine;
  several positions -> the first frame at each position is shown and a warning says how many phases exist.
* Cine (US/XA/RF multi-frame, frames without positions): k = frame number; Frame Time / Frame Time Vector /
  Cine Rate go to metadata (``frame_times_ms``, ``frame_time_ms``, ``cine_rate``).
* Colour: RGB, YBR_* (converted to RGB by pydicom) and PALETTE COLOR (LUT applied) -> ``voxels[k, j, i, 3]``
* Overlay planes (60xx,3000), with their origin and frame range -> ``Volume.overlays[k]`` (see overlay_planes)
  uint8.
* MONOCHROME1 and Presentation LUT Shape INVERSE: values are kept; ``metadata["invert"]`` tells the renderer.
* Modality LUT: Rescale Slope/Intercept (per instance/frame) or Modality LUT Sequence (pydicom).
* Pixel padding (0028,0120)/(0028,0121): padded pixels get ``metadata["fill_value"]``.
* Calibration of projection images: ``metadata["calibration"]`` is "patient" (Pixel Spacing, or calibrated),
  "detector" (Imager Pixel Spacing only, or equal to Pixel Spacing) or "uncalibrated" (no spacing; spacing 1 px);
  ``metadata["calibration_label"]`` is the text for the screen ("patient", "detector (imager)", "uncalibrated").
  Ultrasound regions with physical deltas in cm calibrate US in patient millimetres.
* Windows: header windows -> ``metadata["window_presets"]`` (list of :class:`viewer.presets.WindowPreset`),
  VOI LUT Sequence -> ``metadata["voi_luts"]``.
* Compressed transfer syntaxes through pydicom + pylibjpeg/gdcm. Syntaxes no installed decoder handles (e.g.
  the retired JPEG processes 6/8 and 10/12) are refused with a :class:`SeriesError` naming the file and
  (0002,0010). Files without a file meta header are read with the encoding pydicom detects (warning).

``Volume.metadata`` keys (plain values): kind ("stack" | "cine" | "projection"), modality, sop_class_uid,
study_uid, series_uid, frame_of_reference_uid, patient_name, patient_id, study_description,
series_description, study_date, body_part, patient_position, laterality, view_position, patient_orientation,
photometric, is_color, invert, units ("HU" for CT), fill_value, acquired (bool per slice), slice_refs
((SOP Instance UID, 1-based frame or None) per slice; None for interpolated/blank slices), phases, tilt_deg,
gantry_detector_tilt, calibration, calibration_label, slice_thickness, is_cine, window_presets, voi_luts and,
for cine, frame_time_ms / frame_times_ms / cine_rate / recommended_fps / fps.
Patient name/ID are there for the corner text only; warnings and errors never contain them.

Anything that cannot be shown correctly raises :class:`SeriesError` naming the file and the tag. Messages name
files and tags, never patient names or IDs.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from viewer.presets import header_presets, header_voi_luts
from viewer.volume import Volume

log = logging.getLogger(__name__)

PROJECTION_MODALITIES = {"CR", "DX", "MG", "IO", "RF", "XA", "RG", "PX", "DR"}


class SeriesError(ValueError):
    """A series that cannot be shown correctly. ``file`` and ``tag`` say where the problem is."""

    def __init__(self, message: str, *, file: str | None = None, tag: str | None = None):
        self.reason = message
        self.file = file
        self.tag = tag
        where = []
        if file:
            where.append(f"file {file}")
        if tag:
            where.append(f"tag {tag}")
        super().__init__(message + (f" ({', '.join(where)})" if where else ""))


@dataclasses.dataclass
class _Frame:
    """One 2D image of the series: a single-frame instance or one frame of a multi-frame instance."""
    src: int                      # index of its dataset
    frame: int | None             # 0-based frame index in a multi-frame instance, None for single frame
    sop_uid: str
    ipp: np.ndarray | None
    iop: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    order: tuple                  # tie-break order (instance number, temporal index, frame)


def _label(ds: Dataset, fallback: str) -> str:
    fn = getattr(ds, "filename", None)
    if isinstance(fn, (str, os.PathLike)) and str(fn):
        return Path(fn).name
    return fallback


def read_dataset(path: str | os.PathLike, *, stop_before_pixels: bool = False) -> tuple[Dataset, list[str]]:
    """Read one file; files without a file meta header are read with the encoding pydicom detects."""
    warnings: list[str] = []
    name = Path(path).name
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
        except Exception as exc:
            raise SeriesError(f"not a readable DICOM file: {exc.__class__.__name__}", file=name) from exc
        if "SOPClassUID" not in ds and "Rows" not in ds:
            raise SeriesError("not a DICOM file (no DICOM preamble and no image attributes)", file=name,
                              tag="(0002,0010)")
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
            implicit, little = ds.original_encoding
            tsuid = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little
                                                            else ExplicitVRBigEndian)
            ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = tsuid
            warnings.append(f"{name}: no DICOM file header; transfer syntax assumed {tsuid.name}")
    except Exception as exc:
        raise SeriesError(f"cannot read DICOM file: {exc.__class__.__name__}", file=name) from exc
    return ds, warnings


def _fg_item(ds: Dataset, frame: int | None, seq_name: str) -> Dataset | None:
    """The functional-group macro ``seq_name`` for a frame: per-frame overrides shared (PS3.3 C.7.6.16)."""
    if frame is not None:
        pf = ds.get("PerFrameFunctionalGroupsSequence")
        if pf is not None and frame < len(pf):
            item = pf[frame]
            if seq_name in item and len(item[seq_name].value):
                return item[seq_name].value[0]
    sh = ds.get("SharedFunctionalGroupsSequence")
    if sh and seq_name in sh[0] and len(sh[0][seq_name].value):
        return sh[0][seq_name].value[0]
    return None


def _floats(value, n: int, *, file: str, tag: str, what: str) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SeriesError(f"{what} is not numeric", file=file, tag=tag) from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise SeriesError(f"{what} must have {n} numeric values", file=file, tag=tag)
    return arr


def _frames_of(ds: Dataset, src: int, label: str) -> list[_Frame]:
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    sop = str(ds.get("SOPInstanceUID", f"#{src}"))
    inst = int(ds.get("InstanceNumber", 0) or 0)
    out = []
    for f in range(nframes):
        frame = f if (nframes > 1 or enhanced) else None
        ipp = iop = ps = None
        slope, intercept = 1.0, 0.0
        temporal = 0
        if enhanced:
            pos = _fg_item(ds, f, "PlanePositionSequence")
            ori = _fg_item(ds, f, "PlaneOrientationSequence")
            pm = _fg_item(ds, f, "PixelMeasuresSequence")
            pvt = _fg_item(ds, f, "PixelValueTransformationSequence")
            fc = _fg_item(ds, f, "FrameContentSequence")
            if pos is not None and "ImagePositionPatient" in pos:
                ipp = _floats(pos.ImagePositionPatient, 3, file=label, tag="(0020,0032)",
                              what=f"Image Position (Patient) of frame {f + 1}")
            if ori is not None and "ImageOrientationPatient" in ori:
                iop = _floats(ori.ImageOrientationPatient, 6, file=label, tag="(0020,0037)",
                              what=f"Image Orientation (Patient) of frame {f + 1}")
            if pm is not None and "PixelSpacing" in pm:
                ps = tuple(_floats(pm.PixelSpacing, 2, file=label, tag="(0028,0030)", what="Pixel Spacing"))
            if pvt is not None:
                slope = float(pvt.get("RescaleSlope", 1) or 1)
                intercept = float(pvt.get("RescaleIntercept", 0) or 0)
            if fc is not None:
                temporal = int(fc.get("TemporalPositionIndex", 0) or 0)
        if ipp is None and "ImagePositionPatient" in ds and nframes == 1:
            ipp = _floats(ds.ImagePositionPatient, 3, file=label, tag="(0020,0032)",
                          what="Image Position (Patient)")
        if iop is None and "ImageOrientationPatient" in ds:
            iop = _floats(ds.ImageOrientationPatient, 6, file=label, tag="(0020,0037)",
                          what="Image Orientation (Patient)")
        if ps is None and ds.get("PixelSpacing"):
            ps = tuple(_floats(ds.PixelSpacing, 2, file=label, tag="(0028,0030)", what="Pixel Spacing"))
        if ps is not None and min(ps) <= 0:
            ps = None                      # "0\\0" is written by some modalities for "unknown"
        if (not enhanced or "PixelValueTransformationSequence" not in _fg_keys(ds, f)) and (
                "RescaleSlope" in ds or "RescaleIntercept" in ds):
            slope = float(ds.get("RescaleSlope", 1) or 1)
            intercept = float(ds.get("RescaleIntercept", 0) or 0)
        out.append(_Frame(src=src, frame=frame, sop_uid=sop, ipp=ipp, iop=iop, pixel_spacing=ps,
                          slope=slope, intercept=intercept, order=(temporal, inst, f)))
    return out


def _fg_keys(ds: Dataset, f: int) -> list[str]:
    keys = []
    pf = ds.get("PerFrameFunctionalGroupsSequence")
    if pf is not None and f < len(pf):
        keys += [e.keyword for e in pf[f]]
    sh = ds.get("SharedFunctionalGroupsSequence")
    if sh:
        keys += [e.keyword for e in sh[0]]
    return keys


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class VolumeBuilder:
    """Plan a Volume from the series' metadata, preallocate its voxels, then fill them as instances arrive.

    ``VolumeBuilder(metadata)`` takes one Dataset per instance (WADO-RS metadata parsed with
    ``Dataset.from_json`` or full datasets; pixel data not needed). ``builder.volume`` exists at once (voxels
    preallocated with the fill value, geometry final). ``add_instance(ds)`` decodes one instance with pixel
    data and writes its frames straight into the volume; it returns the slice indices k that became complete.
    ``builder.complete`` is True when every slice is filled. One copy of the pixels.
    """

    def __init__(self, metadata: Sequence[Dataset], *, irregular: str = "resample",
                 labels: Sequence[str] | None = None):
        if irregular not in ("resample", "refuse"):
            raise ValueError("irregular must be 'resample' or 'refuse'")
        self._irregular = irregular
        self._tilt_deg = 0.0
        self._phases = 1
        self.warnings: list[str] = []
        metas = [ds for ds in metadata if ds is not None]
        labels = list(labels) if labels is not None else [_label(ds, f"instance {n + 1}")
                                                          for n, ds in enumerate(metas)]
        self._labels = dict(enumerate(labels))
        images = [(n, ds) for n, ds in enumerate(metas) if "Rows" in ds and "Columns" in ds]
        if not images:
            raise SeriesError("the series has no images (no Rows/Columns)", file=labels[0] if labels else None,
                              tag="(0028,0010)")
        self._metas = dict(images)
        self._check_consistent(images)
        _, first = images[0]
        self._first = first
        self._photometric = str(first.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        self._spp = int(first.get("SamplesPerPixel", 1) or 1)
        self._color = self._spp == 3 or self._photometric == "PALETTE COLOR"
        frames: list[_Frame] = []
        for n, ds in images:
            frames += _frames_of(ds, n, self._labels[n])
        self._frames = frames
        self._by_sop: dict[str, list[int]] = {}
        for idx, fr in enumerate(frames):
            self._by_sop.setdefault(fr.sop_uid, []).append(idx)

        geometric = [fr for fr in frames if fr.ipp is not None and fr.iop is not None]
        distinct = {tuple(np.round(fr.ipp, 3)) for fr in geometric}
        if len(geometric) == len(frames) and (len(distinct) > 1 or len(frames) == 1) and not self._color:
            plan, geom, acquired = self._plan_stack(frames)
            kind = "stack"
        else:
            plan, geom, acquired = self._plan_frames(frames, geometric, len(distinct))
            kind = "cine" if len(plan) > 1 else "projection"
            if geometric and len(distinct) > 1 and self._color:
                self.warnings.append("colour images with several slice positions are shown as frames, not as "
                                     "a volume")

        self._plan = plan                     # per output slice: list of (frame index, weight)
        self._sources_left = np.array([len(p) for p in plan], dtype=np.int64)
        self._uses: dict[int, list[tuple[int, float]]] = {}
        for k, srcs in enumerate(plan):
            for fidx, w in srcs:
                self._uses.setdefault(fidx, []).append((k, w))
        self._interpolated = any(len(p) > 1 or (len(p) == 1 and abs(p[0][1] - 1.0) > 1e-12) for p in plan)
        self._seen: set[str] = set()
        self._clip_warned = False

        rows, cols = int(first.Rows), int(first.Columns)
        dtype, fill = self._choose_dtype()
        self._fill = fill
        shape = (len(plan), rows, cols, 3) if self._color else (len(plan), rows, cols)
        voxels = np.empty(shape, dtype=dtype)
        voxels[...] = fill
        metadata_out = self._metadata(kind, acquired, fill, plan)
        origin, row_dir, col_dir, slice_dir, spacing = geom
        self.volume = Volume(voxels=voxels, origin=origin, row_direction=row_dir, column_direction=col_dir,
                             slice_direction=slice_dir, spacing=spacing, metadata=metadata_out,
                             warnings=self.warnings)
        self.ready = self._sources_left == 0        # blank slices (no sources) are complete at once

    # ----------------------------------------------------------------------------------------------- planning
    def _check_consistent(self, images) -> None:
        _, first = images[0]
        series = first.get("SeriesInstanceUID")
        for n, ds in images[1:]:
            if series and ds.get("SeriesInstanceUID") and ds.SeriesInstanceUID != series:
                raise SeriesError("instances belong to different series", file=self._labels[n], tag="(0020,000E)")
            for kw, tag in (("Rows", "(0028,0010)"), ("Columns", "(0028,0011)"),
                            ("SamplesPerPixel", "(0028,0002)")):
                if ds.get(kw, 1) != first.get(kw, 1):
                    raise SeriesError(f"{kw} differs from the rest of the series; cannot stack these images",
                                      file=self._labels[n], tag=tag)

    def _plan_stack(self, frames: list[_Frame]):
        iop0 = frames[0].iop
        row = _unit(iop0[:3])
        col = _unit(iop0[3:])
        if abs(float(np.dot(row, col))) > 1e-3 or np.linalg.norm(iop0[:3]) < 0.5 or np.linalg.norm(iop0[3:]) < 0.5:
            raise SeriesError("Image Orientation (Patient) row and column are not orthogonal unit vectors",
                              file=self._labels[frames[0].src], tag="(0020,0037)")
        normal = _unit(np.cross(row, col))
        for fr in frames[1:]:
            if np.max(np.abs(fr.iop - iop0)) > 1e-3:
                raise SeriesError("images in the series have different orientations; open them as separate "
                                  "series", file=self._labels[fr.src], tag="(0020,0037)")
        ps = frames[0].pixel_spacing
        for fr in frames[1:]:
            if (fr.pixel_spacing is None) != (ps is None) or (
                    ps is not None and np.max(np.abs(np.subtract(fr.pixel_spacing, ps))) > 1e-3):
                raise SeriesError("pixel spacing differs between images of the series",
                                  file=self._labels[fr.src], tag="(0028,0030)")
        if ps is None:
            self.warnings.append("no Pixel Spacing (0028,0030): distances shown in pixels (uncalibrated)")
            ps = (1.0, 1.0)
        self._pixel_spacing = ps
        self._calibration = "patient" if frames[0].pixel_spacing is not None else "uncalibrated"

        # several frames at one position (temporal / echo): keep the first at each position
        t_all = np.array([float(np.dot(fr.ipp, normal)) for fr in frames])
        keyed: dict[float, list[int]] = {}
        for idx, t in enumerate(t_all):
            keyed.setdefault(round(t, 2), []).append(idx)
        phases = max(len(v) for v in keyed.values())
        if phases > 1:
            self.warnings.append(f"{phases} images share each slice position (temporal or echo dimension); "
                                 f"showing the first of each position")
        chosen = [min(v, key=lambda i: frames[i].order) for v in keyed.values()]
        chosen.sort(key=lambda i: t_all[i])
        self._phases = phases
        t = t_all[chosen]
        pos = np.array([frames[i].ipp for i in chosen])
        n = len(chosen)
        first_file = self._labels[frames[chosen[0]].src]

        if n == 1:
            fr0 = self._metas[frames[chosen[0]].src]
            thick = float(fr0.get("SpacingBetweenSlices", 0) or fr0.get("SliceThickness", 0) or 1.0)
            geom = (pos[0].copy(), row, col, normal, (abs(thick), float(ps[0]), float(ps[1])))
            return [[(chosen[0], 1.0)]], geom, [True]

        span = pos[-1] - pos[0]
        slice_dir = _unit(span)
        # every slice origin must lie on the line from the first to the last (else: not one stack)
        offsets = pos - pos[0]
        along = offsets @ slice_dir
        perp = offsets - np.outer(along, slice_dir)
        dev = float(np.max(np.linalg.norm(perp, axis=1)))
        if dev > max(max(ps), 0.05):
            bad = int(np.argmax(np.linalg.norm(perp, axis=1)))
            raise SeriesError(f"slice positions do not lie on one line (off by {dev:.2f} mm); the series mixes "
                              f"stacks or has per-slice tilt", file=self._labels[frames[chosen[bad]].src],
                              tag="(0020,0032)")
        cos_tilt = float(np.dot(slice_dir, normal))
        tilt_deg = float(np.degrees(np.arccos(min(1.0, abs(cos_tilt)))))
        self._tilt_deg = tilt_deg
        if tilt_deg > 0.05:
            self.warnings.append(f"gantry tilt / sheared stack: slices are offset at {tilt_deg:.1f}\N{DEGREE SIGN} "
                                 f"from perpendicular; geometry kept exact (sheared), not resampled")

        gaps = np.diff(t) / max(abs(cos_tilt), 1e-6)      # distances along the slice direction
        t = (t - t[0]) / max(abs(cos_tilt), 1e-6)
        step = float(np.median(gaps))
        if step <= 1e-6:
            raise SeriesError("slice positions do not advance", file=first_file, tag="(0020,0032)")
        tol = max(0.02, 0.01 * step)
        kinds = []                       # per gap: regular | missing(m) | irregular
        for g in gaps:
            m = round(float(g / step))
            if abs(g - step) <= tol:
                kinds.append(("regular", 1))
            elif m >= 2 and abs(g - m * step) <= max(tol, 0.1 * step):
                kinds.append(("missing", m))
            else:
                kinds.append(("irregular", 0))
        missing = [(i, m) for i, (k, m) in enumerate(kinds) if k == "missing"]
        irregular = [i for i, (k, _) in enumerate(kinds) if k == "irregular"]
        if (missing or irregular) and self._irregular == "refuse":
            where = irregular[0] if irregular else missing[0][0]
            raise SeriesError(f"slice spacing is not regular (gap of {gaps[where]:.2f} mm where "
                              f"{step:.2f} mm is usual)", file=self._labels[frames[chosen[where + 1]].src],
                              tag="(0020,0032)")
        if missing:
            total = sum(m - 1 for _, m in missing)
            self.warnings.append(f"{total} slice(s) missing from the series (gaps at "
                                 + ", ".join(f"{t[i]:.1f}..{t[i + 1]:.1f} mm" for i, _ in missing[:5])
                                 + " from the first slice); shown as blank slices")
        if irregular:
            self.warnings.append(f"irregular slice spacing ({float(gaps.min()):.2f} to {float(gaps.max()):.2f} mm, "
                                 f"usually {step:.2f} mm): resampled to a regular grid by linear interpolation "
                                 f"between acquired slices")

        if not missing and not irregular:
            n_out = n
        else:
            n_out = round(float((t[-1] - t[0]) / step)) + 1
        grid_step = (t[-1] - t[0]) / (n_out - 1)
        plan: list[list[tuple[int, float]]] = []
        acquired: list[bool] = []
        j = 0
        snap = max(0.005, 0.002 * grid_step)       # only rounding noise counts as "the same position"
        for k in range(n_out):
            tk = t[0] + k * grid_step
            while j < n - 2 and t[j + 1] <= tk + 1e-9:
                j += 1
            if abs(tk - t[j]) <= snap:
                plan.append([(chosen[j], 1.0)])
                acquired.append(True)
            elif abs(tk - t[j + 1]) <= snap:
                plan.append([(chosen[j + 1], 1.0)])
                acquired.append(True)
            elif kinds[j][0] == "missing":
                plan.append([])
                acquired.append(False)
            else:
                w1 = float((t[j + 1] - tk) / (t[j + 1] - t[j]))
                plan.append([(chosen[j], w1), (chosen[j + 1], 1.0 - w1)])
                acquired.append(False)
        dk = float(np.linalg.norm(span)) / (n_out - 1)
        geom = (pos[0].copy(), row, col, slice_dir, (dk, float(ps[0]), float(ps[1])))
        return plan, geom, acquired

    def _plan_frames(self, frames: list[_Frame], geometric: list[_Frame], n_positions: int):
        """Cine, projection radiographs, frames without positions: k = frame / instance order."""
        multi_instance = len({fr.src for fr in frames}) > 1
        if multi_instance and not geometric:
            self.warnings.append("images have no patient position; ordered by Instance Number")
        order = sorted(range(len(frames)), key=lambda i: (frames[i].order[1], frames[i].src, frames[i].order[2])
                       if multi_instance else frames[i].order[2])
        ds = self._first
        ps, calib, label = self._projection_calibration(ds, frames[0])
        self._pixel_spacing = ps
        self._calibration = calib
        self._calibration_label = label
        fr0 = frames[order[0]]
        if fr0.iop is not None and fr0.ipp is not None:
            row = _unit(fr0.iop[:3])
            col = _unit(fr0.iop[3:])
            geom = (fr0.ipp.copy(), row, col, _unit(np.cross(row, col)), (1.0, float(ps[0]), float(ps[1])))
        else:
            geom = (np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0]),
                    (1.0, float(ps[0]), float(ps[1])))
        self._tilt_deg = 0.0
        self._phases = 1
        return [[(i, 1.0)] for i in order], geom, [True] * len(order)

    def _projection_calibration(self, ds: Dataset, fr: _Frame):
        modality = str(ds.get("Modality", "")).upper()
        label = self._labels[fr.src]
        pixel = fr.pixel_spacing
        imager = None
        if ds.get("ImagerPixelSpacing"):
            imager = tuple(_floats(ds.ImagerPixelSpacing, 2, file=label, tag="(0018,1164)",
                                   what="Imager Pixel Spacing"))
        if pixel is not None:
            if ds.get("PixelSpacingCalibrationType") or imager is None or (
                    np.max(np.abs(np.subtract(pixel, imager))) > 1e-6):
                if modality in PROJECTION_MODALITIES and imager is None and not ds.get("PixelSpacingCalibrationType"):
                    self.warnings.append("Pixel Spacing given without Imager Pixel Spacing: distances are taken as "
                                         "at the patient")
                return pixel, "patient", "patient"
            return pixel, "detector", "detector (imager)"
        if imager is not None:
            mag = ds.get("EstimatedRadiographicMagnificationFactor")
            self.warnings.append("mm at the detector (Imager Pixel Spacing): smaller in the patient by the "
                                 "magnification" + (f" (est. {float(mag):.3f})" if mag else ""))
            return imager, "detector", "detector (imager)"
        regions = ds.get("SequenceOfUltrasoundRegions")
        if regions:
            deltas = {(float(r.get("PhysicalDeltaX", 0)), float(r.get("PhysicalDeltaY", 0)),
                       int(r.get("PhysicalUnitsXDirection", 0)), int(r.get("PhysicalUnitsYDirection", 0)))
                      for r in regions}
            usable = {(abs(d[0]), abs(d[1]), d[2], d[3]) for d in deltas
                      if d[2] == 3 and d[3] == 3 and d[0] != 0 and d[1] != 0}
            usable = sorted(usable)
            if len(usable) == 1:
                dx, dy, _, _ = usable[0]
                if len(deltas) > 1:
                    self.warnings.append("several ultrasound regions; calibration from the spatial (cm) region")
                return (abs(dy) * 10.0, abs(dx) * 10.0), "patient", "patient (ultrasound region)"
            if len(usable) > 1:
                self.warnings.append("ultrasound regions with different calibrations: measurements are in pixels "
                                     "(uncalibrated)")
                return (1.0, 1.0), "uncalibrated", "uncalibrated"
        self.warnings.append("no pixel spacing: measurements are in pixels (uncalibrated)")
        return (1.0, 1.0), "uncalibrated", "uncalibrated"

    def _choose_dtype(self):
        if self._color:
            return np.uint8, 0
        ds = self._first
        modality = str(ds.get("Modality", "")).upper()
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if "ModalityLUTSequence" in ds:
            desc = ds.ModalityLUTSequence[0].LUTDescriptor
            out_bits = int(desc[2])
            if self._interpolated:
                return np.float32, 0.0
            return (np.uint8 if out_bits <= 8 else np.uint16), 0
        slopes = {fr.slope for fr in self._frames}
        intercepts = {fr.intercept for fr in self._frames}
        integer = all(float(s).is_integer() for s in slopes) and all(float(c).is_integer() for c in intercepts)
        if integer and not self._interpolated:
            vals = [s * v + c for s in slopes for c in intercepts for v in (lo, hi)]
            vmin, vmax = min(vals), max(vals)
            candidates = (np.uint8, np.int16, np.uint16, np.int32)
            if modality == "CT" and all(abs(s) == 1 for s in slopes):
                candidates = (np.int16,)
            for dt in candidates:
                info = np.iinfo(dt)
                if info.min <= vmin and vmax <= info.max:
                    return dt, self._fill_value(modality, vmin, dt)
            if modality == "CT" and all(abs(s) == 1 for s in slopes):
                # nominal range of 16-bit data + intercept overflows int16 by the intercept; real HU never do
                # (values outside are clipped with a warning when they occur).
                return np.int16, self._fill_value(modality, max(vmin, -32768), np.int16)
            return np.float32, self._fill_value(modality, vmin, np.float32)
        vals = [s * v + c for s in slopes for c in intercepts for v in (lo, hi)]
        return np.float32, self._fill_value(modality, min(vals), np.float32)

    @staticmethod
    def _fill_value(modality: str, vmin: float, dtype) -> float:
        if modality == "CT":
            fill = max(-1024.0, vmin)
        else:
            fill = max(0.0, vmin) if vmin <= 0 else vmin
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            fill = int(min(max(fill, info.min), info.max))
        return fill

    def _metadata(self, kind: str, acquired: list[bool], fill, plan) -> dict:
        ds = self._first
        md: dict = {
            "kind": kind,
            "modality": str(ds.get("Modality", "")),
            "sop_class_uid": str(ds.get("SOPClassUID", "")),
            "study_uid": str(ds.get("StudyInstanceUID", "")),
            "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")) or None,
            "patient_name": str(ds.get("PatientName", "")),
            "patient_id": str(ds.get("PatientID", "")),
            "study_description": str(ds.get("StudyDescription", "")),
            "series_description": str(ds.get("SeriesDescription", "")),
            "study_date": str(ds.get("StudyDate", "")),
            "body_part": str(ds.get("BodyPartExamined", "")),
            "patient_position": str(ds.get("PatientPosition", "")),
            "laterality": str(ds.get("ImageLaterality", ds.get("Laterality", ""))),
            "view_position": str(ds.get("ViewPosition", "")),
            "patient_orientation": [str(v) for v in (ds.get("PatientOrientation") or [])],
            "photometric": self._photometric,
            "is_color": self._color,
            "units": "HU" if str(ds.get("Modality", "")).upper() == "CT" and "ModalityLUTSequence" not in ds else "",
            "fill_value": fill,
            "acquired": list(acquired),
            "phases": self._phases,
            "tilt_deg": self._tilt_deg,
            "gantry_detector_tilt": float(ds.get("GantryDetectorTilt", 0) or 0),
            "calibration": self._calibration,
            "calibration_label": getattr(self, "_calibration_label", self._calibration),
            "slice_thickness": float(ds.get("SliceThickness", 0) or 0) or None,
            "is_cine": kind == "cine",
        }
        shown = self._first
        pres = str(shown.get("PresentationLUTShape", "IDENTITY") or "IDENTITY").upper()
        md["invert"] = (self._photometric == "MONOCHROME1") != (pres == "INVERSE" and
                                                              self._photometric != "MONOCHROME1")
        voi_item = _fg_item(ds, 0, "FrameVOILUTSequence") if "SharedFunctionalGroupsSequence" in ds or \
            "PerFrameFunctionalGroupsSequence" in ds else None
        md["window_presets"] = header_presets(voi_item if voi_item is not None and "WindowCenter" in voi_item
                                              else ds)
        md["voi_luts"] = header_voi_luts(ds)
        refs = []
        for srcs in plan:
            if len(srcs) == 1 and abs(srcs[0][1] - 1.0) < 1e-12:
                fr = self._frames[srcs[0][0]]
                refs.append((fr.sop_uid, None if fr.frame is None else fr.frame + 1))
            else:
                refs.append(None)
        md["slice_refs"] = refs                  # (SOP Instance UID, 1-based frame number or None) per k
        # cine timing
        if "FrameTimeVector" in ds:
            vec = [float(v) for v in ds.FrameTimeVector]
            md["frame_times_ms"] = vec
            md["frame_time_ms"] = float(np.mean(vec[1:])) if len(vec) > 1 else None
        if "FrameTime" in ds:
            md["frame_time_ms"] = float(ds.FrameTime)
        for kw, key in (("CineRate", "cine_rate"), ("RecommendedDisplayFrameRate", "recommended_fps")):
            if kw in ds:
                md[key] = float(ds.get(kw))
        if md.get("frame_time_ms"):
            md.setdefault("fps", 1000.0 / md["frame_time_ms"])
        return md

    # ----------------------------------------------------------------------------------------------- filling
    @property
    def complete(self) -> bool:
        return bool(np.all(self.ready))

    def missing_instances(self) -> list[str]:
        """SOP Instance UIDs whose pixels are still needed."""
        need = {self._frames[f].sop_uid for srcs in self._plan for f, _ in srcs}
        return sorted(need - self._seen)

    def add_instance(self, ds: Dataset) -> list[int]:
        """Decode one instance and write its frames into the volume; returns slice indices now complete."""
        sop = str(ds.get("SOPInstanceUID", ""))
        idxs = self._by_sop.get(sop)
        if idxs is None:
            if len(self._by_sop) == 1 and not sop:
                idxs = next(iter(self._by_sop.values()))
            else:
                return []
        if sop in self._seen:
            return []
        label = self._labels.get(self._frames[idxs[0]].src) or _label(ds, "instance")
        if (self.volume.metadata["kind"] != "stack" and not self._color and len(self._metas) > 1
                and self._frames[idxs[0]].ipp is None
                and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds):
            # planned from metadata without positions, but the images have them: the plan would be wrong
            raise SeriesError("the series metadata lacked slice positions that the images have; open the series "
                              "from complete headers", file=label, tag="(0020,0032)")
        needed = [i for i in idxs if i in self._uses]
        if not needed:
            self._seen.add(sop)
            return []
        pixels = self._decode(ds, label)
        decoded = None  # the instance's overlay planes, decoded once for all its frames
        done: list[int] = []
        vox = self.volume.voxels
        for fidx in needed:
            fr = self._frames[fidx]
            img = pixels if fr.frame is None or pixels.ndim == (3 if self._color else 2) else pixels[fr.frame]
            if not self._color:
                img = self._to_modality(img, ds, fr, label)
            if decoded is None:
                decoded = decode_overlays(ds, label)
            planes = overlay_planes(ds, fr.frame, vox.shape[1], vox.shape[2], label, decoded) if decoded else []
            for k, w in self._uses[fidx]:
                if len(self._plan[k]) == 1 and abs(w - 1.0) < 1e-12:
                    vox[k] = img
                    if planes:  # only on an acquired slice (a resampled one has no overlay of its own)
                        self.volume.overlays[k] = planes
                else:
                    if self._sources_left[k] == len(self._plan[k]):
                        vox[k] = 0
                    vox[k] += (w * img).astype(vox.dtype, copy=False)
                self._sources_left[k] -= 1
                if self._sources_left[k] == 0:
                    self.ready[k] = True
                    done.append(k)
        self._seen.add(sop)
        return sorted(done)

    def _decode(self, ds: Dataset, label: str) -> np.ndarray:
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise SeriesError("instance has no pixel data", file=label, tag="(7FE0,0010)")
        tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        try:
            if getattr(ds, "_pixel_array", None) is not None:
                arr = ds.pixel_array          # already decoded (e.g. by the retriever): pydicom checks it is current
            else:
                arr = pixel_array(ds)         # the function form does not keep a second copy in the dataset
        except NotImplementedError as exc:
            name = getattr(tsuid, "name", str(tsuid))
            raise SeriesError(f"compressed with a transfer syntax no installed decoder supports ({name})",
                              file=label, tag="(0002,0010)") from exc
        except Exception as exc:
            raise SeriesError(f"pixel data cannot be decoded ({exc.__class__.__name__}: {exc})"[:300],
                              file=label, tag="(7FE0,0010)") from exc
        if self._color:
            if self._photometric == "PALETTE COLOR":
                from pydicom.pixels import apply_color_lut
                try:
                    arr = apply_color_lut(arr, ds)
                except Exception as exc:
                    raise SeriesError("palette colour lookup table cannot be applied", file=label,
                                      tag="(0028,1201)") from exc
            if arr.dtype != np.uint8:
                top = float(arr.max()) if arr.size else 0.0
                shift = 8 if top > 255 else 0
                arr = (arr >> shift).astype(np.uint8) if shift else arr.astype(np.uint8)
        return arr

    def _to_modality(self, img: np.ndarray, ds: Dataset, fr: _Frame, label: str) -> np.ndarray:
        pad_mask = None
        if "PixelPaddingValue" in ds:
            pad = int(ds.PixelPaddingValue)
            limit = ds.get("PixelPaddingRangeLimit")
            if limit is not None:
                lo, hi = sorted((pad, int(limit)))
                pad_mask = (img >= lo) & (img <= hi)
            else:
                pad_mask = img == pad
            if not pad_mask.any():
                pad_mask = None
        dtype = self.volume.voxels.dtype
        if "ModalityLUTSequence" in ds:
            from pydicom.pixels import apply_modality_lut
            try:
                out = apply_modality_lut(img, ds)
            except Exception as exc:
                raise SeriesError("Modality LUT cannot be applied", file=label, tag="(0028,3000)") from exc
            out = out.astype(dtype, copy=False)
        elif np.issubdtype(dtype, np.integer):
            out = img.astype(np.int64) * int(fr.slope) + int(fr.intercept) if (fr.slope != 1 or fr.intercept) \
                else img
            info = np.iinfo(dtype)
            omin, omax = (int(out.min()), int(out.max())) if out.size else (0, 0)
            if omin < info.min or omax > info.max:
                if not self._clip_warned:
                    self.warnings.append(f"values outside {info.min}..{info.max} were clipped")
                    self._clip_warned = True
                out = np.clip(out, info.min, info.max)
            out = out.astype(dtype, copy=False)
        else:
            out = img.astype(np.float32) * np.float32(fr.slope) + np.float32(fr.intercept)
        if pad_mask is not None:
            out = out.copy() if out is img else out
            out[pad_mask] = self._fill
        return out


def overlay_planes(ds: Dataset, frame: int | None, rows: int, cols: int, label: str = "",
                   decoded: list | None = None) -> list:
    """The overlay planes (60xx,3000 Overlay Data) that apply to one frame of ``ds``, clipped to the image.

    Overlay Origin (60xx,0050) is 1-based and may lie outside the image; multi-frame overlays apply from Image
    Frame Origin (60xx,0051) for Number of Frames in Overlay (60xx,0015) frames. Overlays kept in the high bits
    of Pixel Data (retired) are not read. A plane that cannot be decoded is skipped with a warning in the log.
    ``decoded``: :func:`decode_overlays` of ``ds`` when the caller places several frames (decoded once)."""
    from viewer.volume import Overlay

    out = []
    for g, arr, r0, c0, n, first, kind, text in (decode_overlays(ds, label) if decoded is None else decoded):
        if arr.ndim == 3 or n > 1:
            f = (frame or 0) - first
            if arr.ndim != 3 or not 0 <= f < arr.shape[0]:
                continue
            arr = arr[f]
        elif frame not in (None, first):
            continue  # a single-frame overlay of a multi-frame image belongs to its Image Frame Origin only
        h, w = arr.shape
        rs, cs = max(0, r0), max(0, c0)
        re, ce = min(rows, r0 + h), min(cols, c0 + w)
        if rs >= re or cs >= ce:
            continue
        mask = arr[rs - r0:re - r0, cs - c0:ce - c0] != 0
        if mask.any():
            out.append(Overlay.from_mask(g, mask, rs, cs, kind, text))
    return out


def decode_overlays(ds: Dataset, label: str = "") -> list[tuple]:
    """Each overlay plane of ``ds`` decoded once: (group, array, row0, col0, frames, first frame, kind, label),
    origin 0-based."""
    # tags only (no element is converted: a stray delimiter elsewhere in the file must not matter here)
    groups = sorted({t.group for t in ds.keys() if 0x6000 <= t.group <= 0x601E and t.group % 2 == 0  # noqa: SIM118 - tags, not elements
                     and t.element == 0x3000})
    out = []
    for g in groups:
        try:
            arr = np.asarray(ds.overlay_array(g))
            origin = ds.get((g, 0x0050))
            r0, c0 = (int(origin.value[0]) - 1, int(origin.value[1]) - 1) if origin is not None else (0, 0)
            n = int(ds.get((g, 0x0015)).value) if ds.get((g, 0x0015)) is not None else 1
            first = int(ds.get((g, 0x0051)).value) - 1 if ds.get((g, 0x0051)) is not None else 0
            kind = str(ds.get((g, 0x0040)).value if ds.get((g, 0x0040)) is not None else "G").strip().upper()
            text = ds.get((g, 0x1500)) or ds.get((g, 0x0022))      # Overlay Label, else Overlay Description
            text = str(text.value).strip() if text is not None else ""
        except Exception as exc:  # noqa: BLE001 - a damaged overlay must not cost the image
            log.warning("overlay plane %04X of %s skipped (%s)", g, label or "an instance", type(exc).__name__)
            continue
        out.append((g, arr, r0, c0, n, first, kind or "G", text))
    return out


def _inputs(paths_or_datasets) -> list[tuple[object, str]]:
    if isinstance(paths_or_datasets, (str, os.PathLike, Dataset)):
        paths_or_datasets = [paths_or_datasets]
    items: list = []
    for item in paths_or_datasets:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            items += sorted(p for p in Path(item).iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            items.append(item)
    if not items:
        raise SeriesError("no DICOM files given")
    return [(item, _label(item, f"instance {n + 1}") if isinstance(item, Dataset) else Path(item).name)
            for n, item in enumerate(items)]


def load_series(paths_or_datasets: Iterable | str | os.PathLike | Dataset, *, irregular: str = "resample") -> Volume:
    """Load one series (files, a folder, or pydicom Datasets, in any order) into a :class:`Volume`.

    See the module docstring for what is handled, how irregular spacing is treated (``irregular``) and what is
    refused with :class:`SeriesError`.
    """
    items = _inputs(paths_or_datasets)
    warnings: list[str] = []
    metas = []
    for item, _ in items:                  # files: headers first, pixels one file at a time (one copy in memory)
        if isinstance(item, Dataset):
            metas.append(item)
        else:
            ds, w = read_dataset(item, stop_before_pixels=True)
            metas.append(ds)
            warnings += w
    builder = VolumeBuilder(metas, irregular=irregular, labels=[label for _, label in items])
    builder.warnings[:0] = warnings
    for (item, _), meta in zip(items, metas):
        if "Rows" not in meta:
            continue
        builder.add_instance(item if isinstance(item, Dataset) else read_dataset(item)[0])
    if not builder.complete:
        missing = builder.missing_instances()
        raise SeriesError(f"{len(missing)} instance(s) could not be placed in the volume", tag="(0008,0018)")
    return builder.volume
