"""Saving measurements, annotations and key images as standard DICOM, and restoring them (highdicom).

Owns the mapping between :mod:`viewer.measurements` values and three standard objects:

* **Comprehensive 3D SR, TID 1500 Imaging Measurement Report** (``measurement_report``): one measurement group
  per measurement, Tracking Identifier = the user's text (or the kind), Tracking Unique Identifier = ``uid``.
  Length / Angle / Cobb angle -> TID 1501 group with one NUM (SCT 410668003 Length mm | SCT 1483009 Angle deg |
  SCT 285285000 Cobb angle deg) INFERRED FROM the points (SCOORD3D POLYLINE / MULTIPOINT in patient mm when the
  image has a Frame of Reference, else SCOORD in image pixels), with the source image (SOP Instance + frame).
  Ellipse / freehand ROI -> TID 1410 planar ROI group: image region ELLIPSE / POLYGON plus Mean, Standard
  Deviation, Minimum, Maximum (HU for CT) and Area (mm2). Uncalibrated lengths use the UCUM unit "{pixel}".
* **Grayscale Softcopy Presentation State** (``presentation_state``): the same measurements drawn as graphics with
  their labels (layer "MEASUREMENTS", for other viewers such as OHIF/Weasis), and arrows and text notes (layer
  "ANNOTATIONS"), each carrying its Tracking UID. Arrows and notes are restored from this layer.
* **Key Object Selection** (``key_object_selection``): key images (TID 2010, title "Of Interest"); one document
  per distinct note, the note as Key Object Description.

Measurements drawn on a reformatted (MPR/oblique) plane have no source image: the SR keeps them in patient
coordinates (SCOORD3D in the series' Frame of Reference) without an image reference, and the GSPS leaves them out.
Arrows and text notes need an acquired image.

``restore(datasets, volume)`` reads SR / GSPS / KOS back into the same dataclasses (coordinates are stored as
32-bit floats: expect agreement to about 1e-4 mm). Pixel probes are not saved (transient). No Qt, no VTK.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from viewer.measurements import (
    Angle,
    Annotation,
    Arrow,
    CobbAngle,
    EllipseROI,
    FreehandROI,
    KeyImage,
    Length,
    PixelProbe,
    RoiStats,
    TextNote,
    locate,
    roi_stats,
)
from viewer.presets import header_presets

MANUFACTURER = "ReadRoom"
PIXEL_UNIT = hd.sr.CodedConcept("{pixel}", "UCUM", "pixel")
PIXEL2_UNIT = hd.sr.CodedConcept("{pixel2}", "UCUM", "square pixel")
NO_UNIT = hd.sr.CodedConcept("1", "UCUM", "no units")
HU_UNIT = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")

_CONCEPTS = {"length": codes.SCT.Length, "angle": codes.SCT.Angle, "cobb": codes.SCT.CobbAngle}
_KIND_BY_CODE = {(c.value, c.scheme_designator): k for k, c in _CONCEPTS.items()}
_STAT_CODES = {"mean": codes.SCT.Mean, "sd": codes.SCT.StandardDeviation, "min": codes.SCT.Minimum,
               "max": codes.SCT.Maximum}
_AREA = codes.SCT.Area
LAYER_MEASUREMENTS = "MEASUREMENTS"
LAYER_ANNOTATIONS = "ANNOTATIONS"


class PersistenceError(ValueError):
    """Measurements/annotations that cannot be saved or read as asked (clear words, no patient data)."""


@dataclasses.dataclass
class Restored:
    measurements: list[Annotation]
    annotations: list[Annotation]        # arrows and text notes
    key_images: list[KeyImage]
    skipped: list[str] = dataclasses.field(default_factory=list)   # what could not be read, and why

    @property
    def all(self) -> list[Annotation]:
        return self.measurements + self.annotations


# --------------------------------------------------------------------------------------------------- helpers
def _index_sources(source_datasets: Sequence[Dataset]) -> dict[str, Dataset]:
    out = {}
    for ds in source_datasets:
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid:
            out[uid] = ds
    if not out:
        raise PersistenceError("no source images given: measurements must refer to the images they were made on")
    return out


def _source(m: Annotation, sources: dict[str, Dataset]) -> Dataset:
    if not m.sop_instance_uid:
        raise PersistenceError(f"the {m.kind} is not on an acquired image (e.g. drawn on a reformatted plane) and "
                               "cannot be saved as DICOM")
    ds = sources.get(m.sop_instance_uid)
    if ds is None:
        raise PersistenceError(f"the image the {m.kind} was made on is not among the given source images")
    return ds


def _series_frame(m: Annotation, sources: dict[str, Dataset]) -> Dataset:
    """For a measurement on a reformatted plane (no source image): an image of its series that carries the
    Frame of Reference its patient coordinates are in."""
    for ds in sources.values():
        same = m.series_instance_uid in (None, str(ds.get("SeriesInstanceUID", "")))
        if same and _for_uid(ds) and m.calibration == "patient":
            return ds
    raise PersistenceError(f"the {m.kind} is not on an acquired image and its series has no frame of reference; "
                           "it cannot be saved as DICOM")


def _frames(m) -> list[int] | None:
    return [int(m.frame_number)] if m.frame_number else None


def _for_uid(ds: Dataset) -> str | None:
    uid = ds.get("FrameOfReferenceUID")
    return str(uid) if uid and ("ImagePositionPatient" in ds or "SharedFunctionalGroupsSequence" in ds
                                or "PerFrameFunctionalGroupsSequence" in ds) else None


def _image_points(m: Annotation) -> np.ndarray:
    if not m.image_points:
        raise PersistenceError(f"the {m.kind} has no image coordinates; create it with from_volume()")
    return np.asarray(m.image_points, dtype=np.float64)


def _tracking(m: Annotation) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=m.uid, identifier=(m.text or m.kind)[:64])


def _length_unit(m: Annotation):
    return PIXEL_UNIT if m.calibration == "uncalibrated" else codes.UCUM.Millimeter


def _is_color(ds: Dataset) -> bool:
    return int(ds.get("SamplesPerPixel", 1) or 1) == 3 or str(ds.get("PhotometricInterpretation", "")) == \
        "PALETTE COLOR"


def _icc_profile(referenced: list[Dataset]) -> bytes:
    for ds in referenced:
        if "ICCProfile" in ds:
            return bytes(ds.ICCProfile)
    from importlib import resources

    return resources.files("highdicom").joinpath("_icc_profiles", "sRGB_v4_ICC_preference.icc").read_bytes()


def _modality_lut_for(referenced: list[Dataset], per_image: dict):
    """The Modality LUT the presentation state declares, where highdicom cannot take it from the images:
    classic multi-frame (cine) images have no functional groups; enhanced ones carry rescale per frame."""
    im = referenced[0]
    multi = int(im.get("NumberOfFrames", 1) or 1) > 1
    if multi and "SharedFunctionalGroupsSequence" not in im:
        return hd.ModalityLUTTransformation(rescale_intercept=float(im.get("RescaleIntercept", 0) or 0),
                                            rescale_slope=float(im.get("RescaleSlope", 1) or 1),
                                            rescale_type=str(im.get("RescaleType", "US") or "US"))
    return _per_frame_rescale(referenced, per_image)


def _voi_for(referenced: list[Dataset]):
    """Windows for classic multi-frame images (highdicom reads them only from functional groups): the header's
    first window, else one spanning the stored bit range."""
    im = referenced[0]
    if int(im.get("NumberOfFrames", 1) or 1) <= 1 or "SharedFunctionalGroupsSequence" in im:
        return None
    presets = header_presets(im)
    if presets:
        return [hd.pr.SoftcopyVOILUTTransformation(window_center=presets[0].center, window_width=presets[0].width)]
    bits = int(im.get("BitsStored", 8) or 8)
    return [hd.pr.SoftcopyVOILUTTransformation(window_center=float(1 << (bits - 1)), window_width=float(1 << bits))]


def _per_frame_rescale(referenced: list[Dataset], per_image: dict):
    """Enhanced multi-frame images carry rescale per frame, which a GSPS cannot; use the annotated frame's."""
    im = referenced[0]
    pf = im.get("PerFrameFunctionalGroupsSequence")
    if not pf or not any("PixelValueTransformationSequence" in f for f in pf):
        return None
    frame = next((k[1] for k in per_image if k[1]), 1)
    pvt = pf[frame - 1].PixelValueTransformationSequence[0]
    return hd.ModalityLUTTransformation(rescale_intercept=float(pvt.get("RescaleIntercept", 0)),
                                        rescale_slope=float(pvt.get("RescaleSlope", 1)),
                                        rescale_type=str(pvt.get("RescaleType", "US") or "US"))


def _utf8(ds: Dataset) -> Dataset:
    """Declare UTF-8 (ISO_IR 192) so labels such as "°", "mm²" or Korean notes are valid text values."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


# --------------------------------------------------------------------------------------------------- SR
def _coords(m: Annotation, src: Dataset, graphic_type: str, *, closed: bool = False):
    for_uid = _for_uid(src)
    if for_uid and m.calibration == "patient":
        pts = np.asarray(m.points, dtype=np.float64)
        if closed:
            pts = np.vstack([pts, pts[:1]])
        return hd.sr.CoordinatesForMeasurement3D(graphic_type=graphic_type, graphic_data=pts,
                                                 frame_of_reference_uid=for_uid)
    pts = _image_points(m)
    gt2 = {"MULTIPOINT": "MULTIPOINT", "POLYLINE": "POLYLINE"}.get(graphic_type, graphic_type)
    return hd.sr.CoordinatesForMeasurement(
        graphic_type=gt2, graphic_data=pts,
        source_image=hd.sr.SourceImageForRegion(str(src.SOPClassUID), str(src.SOPInstanceUID), _frames(m)))


def _source_images(m: Annotation, src: Dataset):
    if not m.sop_instance_uid:            # drawn on a reformatted plane: patient coordinates only
        return None
    return [hd.sr.SourceImageForMeasurement(str(src.SOPClassUID), str(src.SOPInstanceUID), _frames(m))]


def _line_group(m: Annotation, src: Dataset):
    gt = "MULTIPOINT" if isinstance(m, CobbAngle) else "POLYLINE"
    unit = codes.UCUM.Degree if m.kind in ("angle", "cobb") else _length_unit(m)
    measurement = hd.sr.Measurement(
        name=_CONCEPTS[m.kind], value=float(m.value), unit=unit,
        referenced_images=_source_images(m, src),
        referenced_coordinates=[_coords(m, src, gt)])
    return hd.sr.MeasurementsAndQualitativeEvaluations(tracking_identifier=_tracking(m), measurements=[measurement])


def _roi_group(m, src: Dataset):
    ellipse = isinstance(m, EllipseROI)
    for_uid = _for_uid(src)
    if for_uid and m.calibration == "patient":
        pts = np.asarray(m.points, dtype=np.float64)
        if not ellipse:
            pts = np.vstack([pts, pts[:1]])
        region = hd.sr.ImageRegion3D(graphic_type="ELLIPSE" if ellipse else "POLYGON", graphic_data=pts,
                                     frame_of_reference_uid=for_uid)
    else:
        pts = _image_points(m)
        if not ellipse:
            pts = np.vstack([pts, pts[:1]])
        region = hd.sr.ImageRegion(graphic_type="ELLIPSE" if ellipse else "POLYLINE", graphic_data=pts,
                                   source_image=hd.sr.SourceImageForRegion(str(src.SOPClassUID),
                                                                           str(src.SOPInstanceUID), _frames(m)))
    source = _source_images(m, src)
    measurements = []
    if m.stats is not None:
        unit = HU_UNIT if m.stats.units == "HU" else NO_UNIT
        for key, code in _STAT_CODES.items():
            measurements.append(hd.sr.Measurement(name=code, value=float(getattr(m.stats, key)), unit=unit,
                                                  referenced_images=source))
    area_unit = PIXEL2_UNIT if m.calibration == "uncalibrated" else codes.UCUM.SquareMillimeter
    measurements.append(hd.sr.Measurement(name=_AREA, value=float(m.area), unit=area_unit,
                                          referenced_images=source))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(m), referenced_region=region, measurements=measurements)


def measurement_report(measurements: Sequence[Annotation], source_datasets: Sequence[Dataset], *,
                       series_instance_uid: str | None = None, series_number: int = 901, instance_number: int = 1,
                       observer_name: str | None = None, institution_name: str | None = None) -> Dataset:
    """A Comprehensive 3D SR (TID 1500) holding ``measurements`` (length, angle, Cobb, ellipse/freehand ROI)."""
    sources = _index_sources(source_datasets)
    groups = []
    used: dict[str, Dataset] = {}
    for m in measurements:
        if isinstance(m, (Arrow, TextNote, PixelProbe)):
            continue
        src = _source(m, sources) if m.sop_instance_uid else _series_frame(m, sources)
        used[str(src.SOPInstanceUID)] = src
        if isinstance(m, (Length, Angle, CobbAngle)):
            groups.append(_line_group(m, src))
        elif isinstance(m, (EllipseROI, FreehandROI)):
            groups.append(_roi_group(m, src))
        else:
            raise PersistenceError(f"cannot save a {type(m).__name__}")
    if not groups:
        raise PersistenceError("nothing to save: no measurements")
    person = hd.sr.ObserverContext(
        observer_type=codes.cid270.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer_name or "Reader^"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=person),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion if _modality(used) == "CT"
        else hd.sr.CodedConcept("P5-09051", "SRT", "Imaging procedure"),
        imaging_measurements=groups)
    evidence = list(used.values())
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=instance_number,
        manufacturer=MANUFACTURER, institution_name=institution_name, is_complete=True)
    sr.SeriesDescription = "ReadRoom measurements"
    return _utf8(sr)


def _modality(used: dict[str, Dataset]) -> str:
    for ds in used.values():
        return str(ds.get("Modality", ""))
    return ""


# --------------------------------------------------------------------------------------------------- GSPS
def presentation_state(items: Sequence[Annotation], source_datasets: Sequence[Dataset], *,
                       series_instance_uid: str | None = None, series_number: int = 902, instance_number: int = 1,
                       content_label: str = "READROOM", creator_name: str | None = None) -> Dataset:
    """A GSPS drawing ``items`` on their images: measurements (layer MEASUREMENTS, display copy) and arrows and
    text notes (layer ANNOTATIONS, restored from here). All referenced images must be from one series."""
    sources = _index_sources(source_datasets)
    layers = [hd.pr.GraphicLayer(layer_name=LAYER_MEASUREMENTS, order=1, description="Measurements"),
              hd.pr.GraphicLayer(layer_name=LAYER_ANNOTATIONS, order=2, description="Arrows and notes")]
    per_image: dict[tuple[str, int | None, str], tuple[list, list]] = {}
    for m in items:
        if isinstance(m, PixelProbe):
            continue
        if not m.sop_instance_uid and not isinstance(m, (Arrow, TextNote)):
            continue                       # reformatted-plane measurements live in the SR only
        src = _source(m, sources)
        pts = _image_points(m)
        layer = LAYER_ANNOTATIONS if isinstance(m, (Arrow, TextNote)) else LAYER_MEASUREMENTS
        graphics, texts = per_image.setdefault((str(src.SOPInstanceUID), m.frame_number, layer), ([], []))
        tid = (m.text or m.kind)[:64]
        if isinstance(m, TextNote):
            texts.append(hd.pr.TextObject(text_value=m.text or " ", units="PIXEL", anchor_point=tuple(pts[0]),
                                          anchor_point_visible=True, tracking_id=tid, tracking_uid=m.uid))
            continue
        if isinstance(m, EllipseROI):
            graphics.append(hd.pr.GraphicObject("ELLIPSE", pts, "PIXEL", tracking_id=tid, tracking_uid=m.uid))
        elif isinstance(m, FreehandROI):
            graphics.append(hd.pr.GraphicObject("POLYLINE", np.vstack([pts, pts[:1]]), "PIXEL", tracking_id=tid,
                                                tracking_uid=m.uid))
        elif isinstance(m, CobbAngle):
            for a in (0, 2):
                graphics.append(hd.pr.GraphicObject("POLYLINE", pts[a:a + 2], "PIXEL", tracking_id=tid,
                                                    tracking_uid=m.uid if a == 0 else generate_uid()))
        else:   # Length, Angle, Arrow: open polyline through the points (an arrow's first point is its tip)
            graphics.append(hd.pr.GraphicObject("POLYLINE", pts, "PIXEL", tracking_id=tid, tracking_uid=m.uid))
        label = m.label() if not isinstance(m, Arrow) else m.text
        if label:
            anchor = pts[-1] if isinstance(m, Arrow) else pts[0]
            texts.append(hd.pr.TextObject(text_value=label[:1024], units="PIXEL", anchor_point=tuple(anchor),
                                          anchor_point_visible=False))
    if not per_image:
        raise PersistenceError("nothing to draw: no annotations")
    by_layer = {layer.GraphicLayer: layer for layer in layers}
    annotations = []
    for (sop, frame, layer), (graphics, texts) in per_image.items():
        annotations.append(hd.pr.GraphicAnnotation(
            referenced_images=[sources[sop]], graphic_layer=by_layer[layer],
            referenced_frame_number=frame, graphic_objects=graphics or None, text_objects=texts or None))
    referenced = [sources[s] for s in dict.fromkeys(k[0] for k in per_image)]
    common = {
        "referenced_images": referenced, "series_instance_uid": series_instance_uid or generate_uid(),
        "series_number": series_number, "sop_instance_uid": generate_uid(), "instance_number": instance_number,
        "manufacturer": MANUFACTURER, "manufacturer_model_name": "ReadRoom", "software_versions": "0.1",
        "device_serial_number": "0", "content_label": content_label, "content_description": "ReadRoom annotations",
        "graphic_annotations": annotations, "graphic_layers": layers, "content_creator_name": creator_name}
    if any(_is_color(ds) for ds in referenced):
        # colour images (US, photos) take a Color Softcopy Presentation State, with the image's ICC profile or sRGB
        gsps = hd.pr.ColorSoftcopyPresentationState(**common, icc_profile=_icc_profile(referenced))
    else:
        gsps = hd.pr.GrayscaleSoftcopyPresentationState(
            **common, modality_lut_transformation=_modality_lut_for(referenced, per_image),
            voi_lut_transformations=_voi_for(referenced))
    first = referenced[0]
    if "Laterality" not in gsps:
        gsps.Laterality = first.get("Laterality", "")      # General Series, type 2C
    return _utf8(gsps)


# --------------------------------------------------------------------------------------------------- KOS
def key_object_selection(key_images: Sequence[KeyImage], source_datasets: Sequence[Dataset], *,
                         series_instance_uid: str | None = None, series_number: int = 903,
                         observer_name: str | None = None) -> list[Dataset]:
    """Key Object Selection documents for ``key_images`` (one per distinct note)."""
    sources = _index_sources(source_datasets)
    by_note: dict[str, list[Dataset]] = {}
    frames: dict[tuple[str, str], list[int]] = {}
    for key in key_images:
        ds = sources.get(key.sop_instance_uid)
        if ds is None:
            raise PersistenceError("a key image is not among the given source images")
        by_note.setdefault(key.note, [])
        if ds not in by_note[key.note]:
            by_note[key.note].append(ds)
        if key.frame_number:
            frames.setdefault((key.note, key.sop_instance_uid), []).append(int(key.frame_number))
    if not by_note:
        raise PersistenceError("nothing to save: no key images")
    series_uid = series_instance_uid or generate_uid()
    out = []
    person = hd.sr.ObserverContext(
        observer_type=codes.cid270.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer_name or "Reader^"))
    for n, (note, refs) in enumerate(by_note.items(), start=1):
        content = hd.ko.KeyObjectSelection(document_title=codes.DCM.OfInterest, referenced_objects=refs,
                                           observer_person_context=person, description=note or None)
        kos = hd.ko.KeyObjectSelectionDocument(
            evidence=refs, content=content, series_instance_uid=series_uid, series_number=series_number,
            sop_instance_uid=generate_uid(), instance_number=n, manufacturer=MANUFACTURER)
        for item in kos.ContentSequence:          # key frames of multi-frame images (PS3.3 C.18.4 IMAGE)
            if item.ValueType == "IMAGE":
                ref = item.ReferencedSOPSequence[0]
                fr = frames.get((note, str(ref.ReferencedSOPInstanceUID)))
                if fr:
                    ref.ReferencedFrameNumber = sorted(set(fr)) if len(set(fr)) > 1 else fr[0]
        kos.SeriesDescription = "ReadRoom key images"
        out.append(_utf8(kos))
    return out


@dataclasses.dataclass
class SavedObjects:
    sr: Dataset | None
    gsps: Dataset | None
    kos: list[Dataset]

    @property
    def datasets(self) -> list[Dataset]:
        return [d for d in (self.sr, self.gsps) if d is not None] + list(self.kos)


def save_all(items: Sequence[Annotation], key_images: Sequence[KeyImage], source_datasets: Sequence[Dataset],
             *, observer_name: str | None = None) -> SavedObjects:
    """Everything the reader made on a study, as SR (measurements) + GSPS (all graphics) + KOS (key images)."""
    measurable = [m for m in items if isinstance(m, (Length, Angle, CobbAngle, EllipseROI, FreehandROI))]
    drawable = [m for m in items if not isinstance(m, PixelProbe)
                and (m.sop_instance_uid or isinstance(m, (Arrow, TextNote)))]
    sr = measurement_report(measurable, source_datasets, observer_name=observer_name) if measurable else None
    gsps = presentation_state(drawable, source_datasets, creator_name=observer_name) if drawable else None
    kos = key_object_selection(key_images, source_datasets, observer_name=observer_name) if key_images else []
    return SavedObjects(sr=sr, gsps=gsps, kos=kos)


# --------------------------------------------------------------------------------------------------- restore
def _code(item: Dataset) -> tuple[str, str]:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return "", ""               # e.g. by-reference items have no concept name
    c = seq[0]
    return str(c.get("CodeValue", "")), str(c.get("CodingSchemeDesignator", ""))


def _first_int(value) -> int | None:
    """First value of an IS/US element that may be single- or multi-valued; None when absent/empty."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return int(value[0]) if len(value) else None
    return int(value)


def _image_ref(item: Dataset) -> tuple[str | None, int | None]:
    """The (SOP Instance UID, frame) of an IMAGE content item, or one nested below a SCOORD."""
    if item.get("ValueType") == "IMAGE":
        ref = item.ReferencedSOPSequence[0]
        return str(ref.ReferencedSOPInstanceUID), _first_int(ref.get("ReferencedFrameNumber"))
    for child in item.get("ContentSequence", []) or []:
        sop, frame = _image_ref(child)
        if sop:
            return sop, frame
    return None, None


def _graphic(item: Dataset) -> np.ndarray:
    data = np.asarray([float(v) for v in item.GraphicData], dtype=np.float64)
    return data.reshape(-1, 3 if item.ValueType == "SCOORD3D" else 2)


def _calibration_from(unit: str, volume, default: str = "patient") -> str:
    if volume is not None:
        return (volume.metadata or {}).get("calibration", default)
    return "uncalibrated" if unit.startswith("{pixel") else default


def _finish(cls, *, points3, image_pts, sop, frame, volume, text, uid, calibration, **extra):
    """Build the annotation; with a volume, image/patient points and references are recomputed from it."""
    if points3 is None:
        if volume is None:
            raise PersistenceError("2D coordinates need the image's volume to be restored")
        k = _slice_of(volume, sop, frame)
        points3 = [tuple(volume.index_to_patient(k, r - 0.5, c - 0.5)) for c, r in image_pts]
    fields = {"sop_instance_uid": sop, "frame_number": frame, "text": text, "uid": uid, "calibration": calibration}
    if volume is not None:
        ref = locate(volume, points3)
        fields["image_points"] = ref.get("image_points")
        fields["series_instance_uid"] = ref.get("series_instance_uid")
    elif image_pts is not None:
        fields["image_points"] = [tuple(p) for p in image_pts]
    obj = cls(points=[tuple(p) for p in points3], **fields, **extra)
    return obj


def _slice_of(volume, sop, frame) -> int:
    for k, ref in enumerate((volume.metadata or {}).get("slice_refs") or []):
        if ref is not None and ref[0] == sop and (ref[1] or None) == (frame or None):
            return k
    raise PersistenceError("a saved measurement refers to an image that is not in this series")


def _walk_groups(sr: Dataset):
    for item in sr.get("ContentSequence", []) or []:
        if item.get("ValueType") == "CONTAINER" and _code(item) == ("126010", "DCM"):
            for group in item.get("ContentSequence", []) or []:
                if group.get("ValueType") == "CONTAINER" and _code(group) == ("125007", "DCM"):
                    yield group


def _measurements_from_sr(sr: Dataset, volume, skipped: list[str] | None = None) -> list[Annotation]:
    out: list[Annotation] = []
    for n, group in enumerate(_walk_groups(sr), start=1):
        try:
            m = _group_measurement(group, volume)
        except (AttributeError, KeyError, IndexError, ValueError, TypeError) as exc:
            if skipped is None:
                raise
            reason = str(exc) if isinstance(exc, PersistenceError) else exc.__class__.__name__
            skipped.append(f"measurement group {n} not restored: {reason}")
            continue
        if m is not None:
            out.append(m)
    return out


def _group_measurement(group: Dataset, volume) -> Annotation | None:
    text, uid, region, nums = "", None, None, []
    for item in group.get("ContentSequence", []) or []:
        code, vt = _code(item), item.get("ValueType")
        if code == ("112039", "DCM"):
            text = str(item.TextValue)
        elif code == ("112040", "DCM"):
            uid = str(item.UID)
        elif code == ("111030", "DCM") and vt in ("SCOORD", "SCOORD3D"):
            region = item
        elif vt == "NUM":
            nums.append(item)
    if not nums and region is None:
        return None
    if region is not None:        # planar ROI
        values = {}
        unit = ""
        area_unit = "mm2"
        sop = frame = None
        for num in nums:
            mv = num.MeasuredValueSequence[0]
            key = {(c.value, c.scheme_designator): k for k, c in _STAT_CODES.items()}.get(_code(num))
            if key:
                values[key] = float(mv.NumericValue)
                unit = "HU" if mv.MeasurementUnitsCodeSequence[0].CodeValue == "[hnsf'U]" else ""
            elif _code(num) == (_AREA.value, _AREA.scheme_designator):
                area_unit = str(mv.MeasurementUnitsCodeSequence[0].CodeValue)
            s, f = _image_ref(num)
            sop, frame = sop or s, frame or f
        if region.ValueType == "SCOORD":
            sop, frame = _image_ref(region)
        data = _graphic(region)
        ellipse = str(region.GraphicType) == "ELLIPSE"
        if not ellipse:
            data = data[:-1]
        cls = EllipseROI if ellipse else FreehandROI
        stats = None
        if values:
            stats = RoiStats(mean=values.get("mean", np.nan), sd=values.get("sd", np.nan),
                             min=values.get("min", np.nan), max=values.get("max", np.nan), pixel_count=-1,
                             units=unit)
        three = region.ValueType == "SCOORD3D"
        roi = _finish(cls, points3=data if three else None, image_pts=None if three else data, sop=sop,
                      frame=frame, volume=volume, text="" if text == cls.kind else text, uid=uid,
                      calibration=_calibration_from(area_unit, volume), stats=stats)
        if volume is not None and stats is not None:
            roi.stats = dataclasses.replace(stats, pixel_count=roi_stats(volume, roi).pixel_count)
        return roi
    num = nums[0]
    kind = _KIND_BY_CODE.get(_code(num))
    if kind is None:
        return None
    mv = num.MeasuredValueSequence[0]
    unit = str(mv.MeasurementUnitsCodeSequence[0].CodeValue)
    coords = next((c for c in num.get("ContentSequence", []) or [] if c.ValueType in ("SCOORD", "SCOORD3D")),
                  None)
    if coords is None:
        return None
    sop, frame = _image_ref(num)
    if coords.ValueType == "SCOORD":
        sop, frame = _image_ref(coords)
    cls = {"length": Length, "angle": Angle, "cobb": CobbAngle}[kind]
    data = _graphic(coords)
    three = coords.ValueType == "SCOORD3D"
    return _finish(cls, points3=data if three else None, image_pts=None if three else data, sop=sop,
                   frame=frame, volume=volume, text="" if text == kind else text, uid=uid,
                   calibration=_calibration_from(unit, volume))


def _annotations_from_gsps(pr: Dataset, volume) -> list[Annotation]:
    out: list[Annotation] = []
    for ann in pr.get("GraphicAnnotationSequence", []) or []:
        if str(ann.get("GraphicLayer", "")) != LAYER_ANNOTATIONS:
            continue
        ref = ann.ReferencedImageSequence[0]
        sop = str(ref.ReferencedSOPInstanceUID)
        frame = _first_int(ref.get("ReferencedFrameNumber"))
        calibration = _calibration_from("", volume)
        for g in ann.get("GraphicObjectSequence", []) or []:
            pts = np.asarray([float(v) for v in g.GraphicData]).reshape(-1, 2)
            out.append(_finish(Arrow, points3=None, image_pts=pts, sop=sop, frame=frame, volume=volume,
                               text="" if str(g.get("TrackingID", "")) == "arrow" else str(g.get("TrackingID", "")),
                               uid=str(g.get("TrackingUID", "")) or generate_uid(), calibration=calibration))
        for t in ann.get("TextObjectSequence", []) or []:
            if "TrackingUID" not in t or "AnchorPoint" not in t:
                continue
            pts = np.asarray([[float(v) for v in t.AnchorPoint]])
            out.append(_finish(TextNote, points3=None, image_pts=pts, sop=sop, frame=frame, volume=volume,
                               text=str(t.UnformattedTextValue).strip(), uid=str(t.TrackingUID),
                               calibration=calibration))
    return out


def _key_images_from_kos(kos: Dataset) -> list[KeyImage]:
    note = ""
    refs = []
    for item in kos.get("ContentSequence", []) or []:
        if item.get("ValueType") == "TEXT" and _code(item) == ("113012", "DCM"):
            note = str(item.TextValue)
        elif item.get("ValueType") == "IMAGE":
            r = item.ReferencedSOPSequence[0]
            fr = r.get("ReferencedFrameNumber")
            many = [int(v) for v in fr] if fr is not None and type(fr).__name__ == "MultiValue" else [
                _first_int(fr)]
            for f in many:
                refs.append((str(r.ReferencedSOPInstanceUID), str(r.ReferencedSOPClassUID), f))
    series = {}
    for study in kos.get("CurrentRequestedProcedureEvidenceSequence", []) or []:
        for s in study.get("ReferencedSeriesSequence", []) or []:
            for i in s.get("ReferencedSOPSequence", []) or []:
                series[str(i.ReferencedSOPInstanceUID)] = str(s.SeriesInstanceUID)
    return [KeyImage(sop_instance_uid=sop, frame_number=frame, sop_class_uid=cls,
                     series_instance_uid=series.get(sop), note=note) for sop, cls, frame in refs]


SR_CLASSES = {"1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.22"}
GSPS_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
CSPS_CLASS = "1.2.840.10008.5.1.4.1.1.11.2"
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


def restore(datasets: Sequence[Dataset], volume=None) -> Restored:
    """Read saved SR / GSPS / KOS objects back into measurement, annotation and key-image dataclasses.
    With ``volume`` (the series they were made on) image points and calibration are recomputed from it; objects
    that refer to other series are left out. What cannot be read (foreign templates, 2D coordinates without the
    volume) is listed in ``Restored.skipped`` instead of failing the whole study."""
    sops = {r[0] for r in (volume.metadata or {}).get("slice_refs", []) if r} if volume is not None else None
    measurements: list[Annotation] = []
    annotations: list[Annotation] = []
    keys: list[KeyImage] = []
    skipped: list[str] = []
    for ds in datasets:
        cls = str(ds.get("SOPClassUID", ""))
        try:
            if cls in SR_CLASSES:
                for_uid = (volume.metadata or {}).get("frame_of_reference_uid") if volume is not None else None
                measurements += _measurements_from_sr(
                    ds if sops is None else _sr_only_groups_for(ds, sops, for_uid), volume, skipped)
            elif cls in (GSPS_CLASS, CSPS_CLASS):
                annotations += _annotations_from_gsps(_filter_gsps(ds, sops), volume)
            elif cls == KOS_CLASS:
                keys += [k for k in _key_images_from_kos(ds) if sops is None or k.sop_instance_uid in sops]
        except (AttributeError, KeyError, IndexError, ValueError, TypeError) as exc:
            reason = str(exc) if isinstance(exc, PersistenceError) else exc.__class__.__name__
            skipped.append(f"a saved {'SR' if cls in SR_CLASSES else 'object'} could not be read ({reason})")
    return Restored(measurements=measurements, annotations=annotations, key_images=keys, skipped=skipped)


def _sr_only_groups_for(sr: Dataset, sops: set[str], for_uid: str | None = None) -> Dataset:
    import copy

    out = copy.deepcopy(sr)
    for item in out.get("ContentSequence", []) or []:
        if item.get("ValueType") == "CONTAINER" and _code(item) == ("126010", "DCM"):
            kept = []
            for group in item.get("ContentSequence", []) or []:
                sop = _group_sop(group)
                if sop in sops or (sop is None and for_uid and _group_for(group) == for_uid):
                    kept.append(group)
            item.ContentSequence = kept
    return out


def _group_for(item: Dataset) -> str | None:
    """The Frame of Reference of the first SCOORD3D below ``item``."""
    if item.get("ValueType") == "SCOORD3D":
        return str(item.get("ReferencedFrameOfReferenceUID", "")) or None
    for child in item.get("ContentSequence", []) or []:
        found = _group_for(child)
        if found:
            return found
    return None


def _group_sop(group: Dataset) -> str | None:
    for item in group.get("ContentSequence", []) or []:
        sop, _ = _image_ref(item)
        if sop:
            return sop
    return None


def _filter_gsps(pr: Dataset, sops: set[str] | None) -> Dataset:
    if sops is None:
        return pr
    import copy

    out = copy.deepcopy(pr)
    out.GraphicAnnotationSequence = [a for a in pr.get("GraphicAnnotationSequence", []) or []
                                     if str(a.ReferencedImageSequence[0].ReferencedSOPInstanceUID) in sops]
    return out
