"""Synthetic demo studies for the reference cloud: an urgent-care night shift as real DICOM files.

This module owns the demo data set that ``readroom-cloud demo-data --out DIR`` writes and ``--seed-demo``
stores through STOW-RS (:func:`write_demo_studies`), plus :func:`write_ct_series`, a plain CT series
writer for benches and tests.

Everything here is synthetic: analytic phantoms (no real patient data), names like ``SYNTHETIC^HEADCT``,
issuer ``READROOM-DEMO``, institutions marked "(demo)". The objects are nevertheless standard, valid DICOM
(every file passes ``dciodvfy`` in tests/unit/test_demo_data.py) with exact geometry, because the
viewer's geometry and measurement tests use them. The night shift that ends on the morning of ``night``:

* 02:14 CT head without contrast, **STAT**: 512x512, 160 axial slices of 1.0 mm (0.45 mm pixels), HU via
  rescale; a 3D Shepp-Logan-like head (scalp, three-layer skull, grey/white matter, sulci, ventricles, falx,
  brainstem, skull base, orbits) with a hyperdense intraparenchymal bleed that is an exact sphere
  (:data:`HEAD_BLEED_DIAMETER_MM`, centre :data:`HEAD_BLEED_CENTER_LPS`). Explicit VR Little Endian.
* 01:38 CT abdomen/pelvis with IV contrast: 512x512, 200 slices of 2.0 mm, **RLE Lossless**; liver,
  gallbladder, spleen, pancreas, kidneys, bowel, spine, pelvis, aorta (an exact cylinder,
  :data:`ABDOMEN_AORTA_DIAMETER_MM`) and an inflamed appendix with an appendicolith.
* 23:31 chest X-ray, DX For Presentation, 2500x2000 at 0.175 mm (ImagerPixelSpacing): PA in
  **MONOCHROME1** with a right lower lobe opacity, left lateral in MONOCHROME2; window centre/width set.
* 22:47 right wrist PA + lateral, **JPEG 2000 Lossless**: a distal radius fracture line
  (:data:`WRIST_FRACTURE_LINE_PX`), dorsal tilt on the lateral, a 25 mm steel calibration ball
  (:data:`WRIST_BALL_DIAMETER_MM`); and its prior, same patient, exactly two years earlier, normal.
* 00:52 abdominal ultrasound: a 32-frame cine (US Multi-frame, frame time 33.3 ms, region calibration)
  of the gallbladder with a shadowing stone (:data:`US_STONE_DIAMETER_MM`) and breathing motion.

Each study has an accession number, referring physician, clinical history, patient age/sex/birth date
and RequestedProcedurePriority (0040,1003) at top level (STAT or ROUTINE), as the team contract says.

The geometry is built from the DICOM header outwards: phantoms are defined in patient millimetres (LPS)
or detector millimetres, and evaluated at each pixel centre computed from the same Image Position /
Orientation (Patient) and spacing that go into the header, so header and pixels cannot disagree. UIDs
are deterministic (UUID-5 of fixed names, in the 2.25 root), so writing the demo again gives the same
studies and the cloud recognises a re-sent study.

The cloud is a separate deployable: this module imports nothing from the client packages.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)
from pydicom.valuerep import DSfloat

__all__ = [
    "ABDOMEN_AORTA_DIAMETER_MM",
    "ABDOMEN_APPENDIX_CENTER_LPS",
    "ABDOMEN_APPENDIX_DIAMETER_MM",
    "DEMO_KEYS",
    "HEAD_BLEED_CENTER_LPS",
    "HEAD_BLEED_DIAMETER_MM",
    "ISSUER",
    "US_STONE_DIAMETER_MM",
    "WRIST_BALL_DIAMETER_MM",
    "DemoStudy",
    "KnownObject",
    "write_ct_series",
    "write_demo_studies",
]

ISSUER = "READROOM-DEMO"
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://readroom.invalid/demo-data")
INSTITUTION = "Synthetic Urgent Care Northside (demo)"
REFERRER = "SYNTHETIC^ER^DOCTOR^^MD"

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
DX_PRESENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")
US_MULTIFRAME_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")

# --- Known-size objects (exact by construction; the viewer's measurement tests use them) -------------------
#: The head CT's bleed is a sphere of this diameter (mm) ...
HEAD_BLEED_DIAMETER_MM = 14.0
#: ... centred at this patient position (LPS, mm). Its z is exactly on a slice centre (slice index
#: HEAD_BLEED_SLICE_INDEX, 0-based in acquisition order), so that slice shows the full diameter.
HEAD_SLICE_Z0 = -142.0  # z of the first (most inferior) head slice
HEAD_SLICE_SPACING = 1.0
HEAD_N_SLICES = 160
HEAD_BLEED_SLICE_INDEX = 102
HEAD_BLEED_CENTER_LPS = (-31.5, -24.0, HEAD_SLICE_Z0 + HEAD_BLEED_SLICE_INDEX * HEAD_SLICE_SPACING)
#: The abdomen CT's aorta is a straight vertical cylinder of this diameter (mm) over the upper abdomen.
ABDOMEN_AORTA_DIAMETER_MM = 22.0
ABDOMEN_AORTA_CENTER_XY = (14.0, 22.0)
ABDOMEN_TOP_Z = -95.0  # z of the first (most superior) abdomen slice; slices every 2.0 mm downwards
#: The inflamed appendix (outer wall) is a vertical ellipsoid whose section through its centre is a
#: circle of this diameter (mm; > 6 mm is the CT sign of appendicitis), centred at this LPS position
#: (on a slice centre).
ABDOMEN_APPENDIX_DIAMETER_MM = 11.0
ABDOMEN_APPENDIX_CENTER_LPS = (-68.0, -18.0, ABDOMEN_TOP_Z - 330.0)
#: The current wrist radiograph carries a steel calibration ball of this diameter (mm) at the detector
#: plane (magnification 1.0): measure it with ImagerPixelSpacing.
WRIST_BALL_DIAMETER_MM = 25.0
WRIST_ROWS, WRIST_COLS, WRIST_SPACING = 1800, 1500, 0.15
WRIST_BALL_CENTER = (1350.0, 1220.0)  # (row, col) pixel centre of the calibration ball (current study)
# The fracture line of the current wrist, end points in detector mm (u across, v down, from the centre) ...
_WRIST_FRACTURE_UV = ((-37.0, 8.0), (3.0, 18.0))
#: ... and in (row, col) pixels of the current wrist image; the line is 1.2 mm wide.
WRIST_FRACTURE_LINE_PX = tuple(
    (
        (v + (WRIST_ROWS - 1) / 2 * WRIST_SPACING) / WRIST_SPACING,
        (u + (WRIST_COLS - 1) / 2 * WRIST_SPACING) / WRIST_SPACING,
    )
    for u, v in _WRIST_FRACTURE_UV
)
#: The gallstone in the ultrasound cine is a disc of this diameter (mm) in the US region's physical units.
US_STONE_DIAMETER_MM = 9.0


@dataclass(frozen=True)
class KnownObject:
    """An object of exactly known size in one demo series, for measurement tests.

    For cross-sectional images ``center`` is a patient position (LPS, mm) and ``sop_instance_uid`` the
    slice through its centre; for projection and ultrasound images ``center`` is (row, column) in pixels
    (0-based, pixel centres) of that instance (frame 1 for a cine).
    """

    name: str
    kind: str  # "sphere" | "cylinder" | "disc" | "sphere-section" (an ellipsoid's central section)
    diameter_mm: float
    series_uid: str
    sop_instance_uid: str
    center: tuple[float, ...]
    note: str = ""

    def __post_init__(self) -> None:  # also accept the JSON form (lists) the cloud writes to seeded.json
        object.__setattr__(self, "center", tuple(float(c) for c in self.center))


@dataclass
class DemoStudy:
    """One written demo study: what the cloud and the tests need to know without reading the files."""

    study_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_sex: str
    modality: str
    body_part: str
    description: str
    priority: str  # "STAT" | "ROUTINE"
    study_date: str  # DICOM DA, YYYYMMDD
    institution: str
    files: list[Path]
    transfer_syntax: str
    series_uids: list[str]
    study_time: str = ""
    accession_number: str = ""
    patient_birth_date: str = ""
    patient_age: str = ""
    referring_physician: str = ""
    clinical_history: str = ""
    known_objects: list[KnownObject] = field(default_factory=list)

    def __post_init__(self) -> None:  # also accept the JSON form (str paths, dicts) of dataclasses.asdict
        self.files = [Path(f) for f in self.files]
        self.known_objects = [
            k if isinstance(k, KnownObject) else KnownObject(**k) for k in self.known_objects
        ]


# ----------------------------------------------------------------------------------------------------------
# Identity, dates and the shared DICOM modules
# ----------------------------------------------------------------------------------------------------------


def _uid(*parts: object) -> str:
    """A deterministic UID (2.25 form) from names, so re-writing the demo gives the same UIDs."""
    name = "/".join(map(str, parts))
    return "2.25." + str(uuid.uuid5(_UID_NAMESPACE, name).int)


@dataclass
class _Patient:
    name: str
    patient_id: str
    sex: str
    birth: dt.date


@dataclass
class _StudySpec:
    key: str
    patient: _Patient
    when: dt.datetime
    accession: str
    description: str
    priority: str
    modality: str
    body_part: str
    study_id: str
    institution: str = INSTITUTION
    referrer: str = REFERRER
    history: str = ""

    @property
    def study_uid(self) -> str:
        return _uid(self.key, "study")

    @property
    def date(self) -> str:
        return self.when.strftime("%Y%m%d")

    @property
    def time(self) -> str:
        return self.when.strftime("%H%M%S")

    def birth_date(self) -> str:
        return self.patient.birth.strftime("%Y%m%d")

    def age(self) -> str:
        born = self.patient.birth
        d = self.when.date()
        years = d.year - born.year - ((d.month, d.day) < (born.month, born.day))
        return f"{years:03d}Y"


def _base_dataset(
    spec: _StudySpec,
    *,
    sop_class: str,
    sop_uid: str,
    series_uid: str,
    series_number: int,
    series_description: str,
    instance_number: int,
    modality: str,
    manufacturer_model: str,
    acquired: dt.datetime,
) -> Dataset:
    """Patient, General Study, General Series, General Equipment and SOP Common modules."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = spec.date
    ds.SeriesDate = acquired.strftime("%Y%m%d")
    ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S.%f")
    ds.ContentDate = acquired.strftime("%Y%m%d")
    ds.StudyTime = spec.time
    ds.SeriesTime = acquired.strftime("%H%M%S")
    ds.ContentTime = acquired.strftime("%H%M%S.%f")
    ds.AccessionNumber = spec.accession
    ds.Modality = modality
    ds.Manufacturer = "ReadRoom Synthetic"
    ds.InstitutionName = spec.institution
    ds.ReferringPhysicianName = spec.referrer
    ds.StationName = "SYNTH-" + modality
    ds.StudyDescription = spec.description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = manufacturer_model
    ds.PatientName = spec.patient.name
    ds.PatientID = spec.patient.patient_id
    ds.IssuerOfPatientID = ISSUER
    ds.PatientBirthDate = spec.birth_date()
    ds.PatientSex = spec.patient.sex
    ds.PatientAge = spec.age()
    ds.DeviceSerialNumber = "SYN-0001"
    ds.SoftwareVersions = "readroom-demo 1"
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = spec.study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    # Order-level priority, top level, as the team contract says (the cloud's routing reads it).
    ds.RequestedProcedurePriority = spec.priority
    if spec.history:
        ds.AdditionalPatientHistory = spec.history
    request = Dataset()  # the order this study fulfils (General Series module, Request Attributes)
    request.AccessionNumber = spec.accession
    request.RequestedProcedureID = spec.accession
    request.ScheduledProcedureStepID = spec.accession + "-1"
    request.RequestedProcedureDescription = spec.description
    if spec.history:
        request.ReasonForTheRequestedProcedure = spec.history[:64]  # LO
    ds.RequestAttributesSequence = DicomSequence([request])
    return ds


def _ds(value: float) -> DSfloat:
    """A Decimal String for ``value``: exact when it fits in 16 characters, else the closest that does."""
    ds = DSfloat(value, auto_format=True)
    if abs(float(str(ds)) - value) > 1e-6 * max(1.0, abs(value)):
        raise ValueError(f"{value!r} cannot be written as a DICOM decimal string closely enough")
    return ds


def _write(ds: Dataset, path: Path, pixels: np.ndarray, transfer_syntax: str) -> Path:
    """Attach pixels (uncompressed or compressed losslessly) and write a Part 10 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if transfer_syntax == ExplicitVRLittleEndian:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        ds.compress(
            transfer_syntax,
            np.ascontiguousarray(pixels),
            encoding_plugin="pylibjpeg",
            generate_instance_uid=False,
        )
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------------------------------------
# Analytic phantoms
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """An ellipsoid (kind "ellipsoid") or a z-bounded elliptic cylinder (kind "cylinder") in patient mm.

    ``axes`` are semi-axes (x, y, z); ``angle`` rotates the x/y axes about z (degrees). Painted in order,
    each shape replaces what is under it with ``value`` (partial-volume blending at its edge).
    """

    center: tuple[float, float, float]
    axes: tuple[float, float, float]
    value: float
    angle: float = 0.0
    kind: str = "ellipsoid"

    def section(self, z: float) -> tuple[float, float] | None:
        """Semi-axes of the cross-section at height z, or None if the plane misses the shape."""
        dz = z - self.center[2]
        if self.kind == "cylinder":
            return (self.axes[0], self.axes[1]) if abs(dz) <= self.axes[2] else None
        t = 1.0 - (dz / self.axes[2]) ** 2
        if t <= 0.0:
            return None
        s = math.sqrt(t)
        return self.axes[0] * s, self.axes[1] * s


@dataclass(frozen=True)
class _SliceGrid:
    """Pixel centres of an axial slice: x along columns, y along rows (IOP 1,0,0,0,1,0)."""

    rows: int
    cols: int
    x0: float
    y0: float
    spacing: float

    @property
    def xs(self) -> np.ndarray:
        return (self.x0 + self.spacing * np.arange(self.cols)).astype(np.float32)

    @property
    def ys(self) -> np.ndarray:
        return (self.y0 + self.spacing * np.arange(self.rows)).astype(np.float32)


def _paint_ellipse(
    img: np.ndarray,
    grid: _SliceGrid,
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle_deg: float,
    value: float,
) -> None:
    """Paint a filled, anti-aliased ellipse (patient mm) into img in place."""
    ps = grid.spacing
    reach = max(a, b) + 2 * ps
    c0 = max(math.floor((cx - reach - grid.x0) / ps), 0)
    c1 = min(math.ceil((cx + reach - grid.x0) / ps) + 1, grid.cols)
    r0 = max(math.floor((cy - reach - grid.y0) / ps), 0)
    r1 = min(math.ceil((cy + reach - grid.y0) / ps) + 1, grid.rows)
    if c0 >= c1 or r0 >= r1:
        return
    x = (grid.x0 + ps * np.arange(c0, c1, dtype=np.float32))[None, :] - np.float32(cx)
    y = (grid.y0 + ps * np.arange(r0, r1, dtype=np.float32))[:, None] - np.float32(cy)
    if angle_deg:
        th = math.radians(angle_deg)
        c, s = np.float32(math.cos(th)), np.float32(math.sin(th))
        u = c * x + s * y
        v = -s * x + c * y
    else:
        u = np.broadcast_to(x, (r1 - r0, c1 - c0))
        v = np.broadcast_to(y, (r1 - r0, c1 - c0))
    ua = u / np.float32(a * a)
    vb = v / np.float32(b * b)
    q2 = u * ua + v * vb
    q = np.sqrt(q2)
    grad = np.sqrt(ua * ua + vb * vb)
    # signed distance to the boundary, first-order: (q - 1) / |grad q| with |grad q| = grad / q
    dist = (q - 1.0) * q / np.maximum(grad, np.float32(1e-12))
    w = np.clip(0.5 - dist / np.float32(ps), 0.0, 1.0)
    region = img[r0:r1, c0:c1]
    region += (np.float32(value) - region) * w


def _render_axial(
    shapes: Sequence[_Shape], grid: _SliceGrid, z: float, background: float, cache: dict | None = None
) -> np.ndarray:
    """Paint the shapes' cross-sections at height z.

    The leading run of cylinders (body wall, spine...) looks the same on every slice where the same ones
    are present, so with a ``cache`` dict that part is painted once per distinct combination.
    """
    n_lead = next((i for i, sh in enumerate(shapes) if sh.kind != "cylinder"), len(shapes))
    key = tuple(sh.section(z) is not None for sh in shapes[:n_lead])
    if cache is not None and key in cache:
        img = cache[key].copy()
    else:
        img = np.full((grid.rows, grid.cols), background, dtype=np.float32)
        for sh, present in zip(shapes[:n_lead], key, strict=True):
            if present:
                _paint_ellipse(
                    img, grid, sh.center[0], sh.center[1], sh.axes[0], sh.axes[1], sh.angle, sh.value
                )
        if cache is not None:
            cache[key] = img.copy()
    for sh in shapes[n_lead:]:
        sec = sh.section(z)
        if sec is not None:
            _paint_ellipse(img, grid, sh.center[0], sh.center[1], sec[0], sec[1], sh.angle, sh.value)
    return img


def _head_shapes(center: tuple[float, float, float], bleed: bool = True) -> list[_Shape]:
    """A Shepp-Logan-like head (HU): scalp, three-layer skull, grey and white matter, ventricles, bleed."""
    cx, cy, cz = center

    def at(dx: float, dy: float, dz: float) -> tuple[float, float, float]:
        return (cx + dx, cy + dy, cz + dz)

    shapes = [
        _Shape(at(0, 0, 0), (77.0, 97.0, 100.0), 35.0),  # scalp / soft tissue
        _Shape(at(0, 0, 0), (72.0, 92.0, 95.0), 1600.0),  # outer table
        _Shape(at(0, 0, 0), (70.2, 90.2, 93.2), 750.0),  # diploe
        _Shape(at(0, 0, 0), (67.6, 87.6, 90.6), 1500.0),  # inner table
        _Shape(at(0, 0, 0), (66.0, 86.0, 89.0), 8.0),  # CSF over the convexity
        _Shape(at(0, 1.0, -1.0), (64.0, 84.0, 87.0), 38.0),  # grey matter
        _Shape(at(0, 2.0, 4.0), (52.0, 70.0, 66.0), 28.0),  # white matter
        _Shape(at(-9.0, -4.0, 14.0), (6.0, 26.0, 13.0), 5.0, angle=-14.0),  # right lateral ventricle
        _Shape(at(9.0, -4.0, 14.0), (6.0, 26.0, 13.0), 5.0, angle=14.0),  # left lateral ventricle
        _Shape(at(0, 8.0, 2.0), (2.0, 10.0, 8.0), 5.0),  # third ventricle
        _Shape(at(0, 0, 0), (0.9, 80.0, 70.0), 60.0),  # falx (calcified-ish, midline)
        _Shape(at(0, 20.0, 8.0), (2.5, 2.5, 2.5), 280.0),  # calcified pineal gland
        _Shape(at(0, 14.0, -46.0), (12.0, 11.0, 26.0), 33.0),  # brainstem
        _Shape(at(0, 34.0, -46.0), (4.0, 3.0, 6.0), 6.0),  # fourth ventricle
        # skull base (inferior slices): petrous ridges, mastoid air cells, sinuses, orbits and globes
        _Shape(at(-34.0, 8.0, -50.0), (26.0, 7.0, 9.0), 1400.0, angle=-40.0),
        _Shape(at(34.0, 8.0, -50.0), (26.0, 7.0, 9.0), 1400.0, angle=40.0),
        _Shape(at(-48.0, 24.0, -58.0), (6.0, 8.0, 9.0), -600.0),
        _Shape(at(48.0, 24.0, -58.0), (6.0, 8.0, 9.0), -600.0),
        _Shape(at(0, -34.0, -47.0), (13.0, 11.0, 10.0), 1200.0),  # sphenoid body ...
        _Shape(at(0, -34.0, -47.0), (10.0, 8.0, 8.0), -950.0),  # ... and its sinus
        _Shape(at(0, -84.0, -22.0), (11.0, 6.0, 9.0), -950.0),  # frontal sinus
        _Shape(at(-30.0, -62.0, -40.0), (16.0, 20.0, 13.0), -85.0),  # right orbital fat
        _Shape(at(30.0, -62.0, -40.0), (16.0, 20.0, 13.0), -85.0),  # left orbital fat
        _Shape(at(-30.0, -67.0, -40.0), (11.5, 11.5, 11.5), 12.0),  # right globe
        _Shape(at(30.0, -67.0, -40.0), (11.5, 11.5, 11.5), 12.0),  # left globe
        _Shape(at(-30.0, -77.5, -40.0), (4.5, 1.8, 4.5), 110.0),  # right lens
        _Shape(at(30.0, -77.5, -40.0), (4.5, 1.8, 4.5), 110.0),  # left lens
    ]
    if bleed:
        r = HEAD_BLEED_DIAMETER_MM / 2
        bc = HEAD_BLEED_CENTER_LPS
        shapes.append(_Shape(bc, (r + 4.0, r + 4.0, r + 4.0), 20.0))  # perihaematomal oedema
        shapes.append(_Shape(bc, (r, r, r), 72.0))  # acute haematoma, hyperdense
    return shapes


def _abdomen_shapes(top_z: float) -> list[_Shape]:
    """Abdomen/pelvis with IV contrast (portal venous phase), HU. ``top_z`` is the dome of the liver."""

    def at(x: float, y: float, dz: float) -> tuple[float, float, float]:
        return (x, y, top_z + dz)

    def cyl(
        x: float, y: float, z_from: float, z_to: float, a: float, b: float, value: float, angle: float = 0.0
    ) -> _Shape:
        zc = (z_from + z_to) / 2
        return _Shape(at(x, y, zc), (a, b, abs(z_to - z_from) / 2), value, angle=angle, kind="cylinder")

    ax, ay = ABDOMEN_AORTA_CENTER_XY
    ra = ABDOMEN_AORTA_DIAMETER_MM / 2
    app, app_r = ABDOMEN_APPENDIX_CENTER_LPS, ABDOMEN_APPENDIX_DIAMETER_MM / 2
    # painted in order: body wall, then organs, then bones and muscles behind them, vessels last
    s: list[_Shape] = [
        cyl(0, 5, 30, -430, 165, 118, -105),  # subcutaneous fat
        cyl(0, 5, 30, -430, 152, 106, 48),  # abdominal wall muscles
        cyl(0, 3, 30, -430, 143, 97, -75),  # intra-abdominal fat
        _Shape(at(-68, -12, -75), (82, 86, 85), 108, angle=12),  # liver
        _Shape(at(-45, -55, -125), (14, 24, 30), 12, angle=25),  # gallbladder
        _Shape(at(88, 48, -75), (34, 55, 52), 118, angle=-32),  # spleen
        _Shape(at(52, -42, -60), (46, 34, 48), 22),  # stomach
        _Shape(at(52, -62, -45), (30, 12, 24), -950),  # air in the stomach fundus
        _Shape(at(12, 0, -118), (62, 11, 13), 95, angle=-12),  # pancreas
        _Shape(at(-70, 45, -150), (28, 24, 56), 175, angle=25),  # right kidney cortex
        _Shape(at(-70, 45, -150), (15, 12, 38), 35, angle=25),  # right renal sinus
        _Shape(at(72, 45, -140), (28, 24, 56), 175, angle=-25),  # left kidney cortex
        _Shape(at(72, 45, -140), (15, 12, 38), 35, angle=-25),  # left renal sinus
        _Shape(at(0, -62, -165), (105, 20, 20), 35),  # transverse colon wall
        _Shape(at(0, -62, -165), (100, 16, 16), -900),  # transverse colon air
        cyl(-98, 8, -160, -290, 21, 21, 35),  # ascending colon wall
        cyl(-98, 8, -160, -290, 17, 17, -880),  # ascending colon air
        cyl(98, 18, -160, -330, 19, 19, 35),  # descending colon wall
        cyl(98, 18, -160, -330, 15, 15, -880),  # descending colon air
        _Shape(at(-92, 5, -300), (27, 25, 22), 30),  # caecum with stool
        _Shape(at(10, -30, -230), (55, 40, 50), 28),  # small bowel loops (fluid-filled)
        _Shape(at(25, -45, -265), (18, 14, 20), -900),  # gas in a small bowel loop
        # the appendix: inflamed (11 mm), enhancing wall, fluid lumen, fat stranding, appendicolith
        _Shape(app, (13, 13, 34), -25),  # fat stranding
        _Shape(app, (app_r, app_r, 24), 120),  # wall
        _Shape(app, (3.2, 3.2, 21), 18),  # lumen
        _Shape((app[0], app[1], app[2] - 8), (2.8, 2.8, 2.8), 650),  # appendicolith
        _Shape(at(0, -35, -385), (48, 36, 38), 8),  # urinary bladder
        # muscles and bones
        cyl(42, 42, -130, -340, 17, 16, 52),  # left psoas
        cyl(-42, 42, -130, -340, 17, 16, 52),  # right psoas
        cyl(36, 84, 30, -430, 27, 18, 55),  # left paraspinal muscles
        cyl(-36, 84, 30, -430, 27, 18, 55),  # right paraspinal muscles
        cyl(0, 88, 30, -340, 17, 10, 480),  # posterior elements
    ]
    # vertebral bodies (cortex + cancellous) with discs
    z = 0.0
    while z > -340:
        s.append(cyl(0, 52, z, z - 27, 21, 19, 85))  # disc level (drawn first, body covers most)
        s.append(cyl(0, 52, z - 3, z - 27, 21, 19, 620))
        s.append(cyl(0, 52, z - 4.5, z - 25.5, 18, 16, 210))
        z -= 30.0
    s += [
        cyl(0, 78, 30, -340, 8, 8, 12),  # spinal canal
        cyl(0, 68, -340, -430, 55, 24, 420),  # sacrum
        cyl(0, 68, -345, -425, 45, 16, 190),
        cyl(0, 78, -340, -430, 9, 4, 12),  # sacral canal
        cyl(-92, 38, -290, -430, 12, 50, 650, angle=-37),  # right iliac wing: cortex ...
        cyl(-92, 38, -292, -428, 6, 44, 250, angle=-37),  # ... and marrow
        cyl(92, 38, -290, -430, 12, 50, 650, angle=37),  # left iliac wing
        cyl(92, 38, -292, -428, 6, 44, 250, angle=37),
        _Shape(at(-92, 20, -402), (24, 24, 24), 650),  # right femoral head
        _Shape(at(-92, 20, -402), (21, 21, 21), 330),
        _Shape(at(92, 20, -402), (24, 24, 24), 650),  # left femoral head
        _Shape(at(92, 20, -402), (21, 21, 21), 330),
        # retroperitoneal vessels last: nothing in front of them may cover them
        cyl(ax, ay, 30, -250, ra + 4.5, ra + 4.5, -95),  # periaortic retroperitoneal fat
        cyl(ax, ay, 30, -250, ra, ra, 185),  # aorta (exact cylinder)
        cyl(30, 18, -250, -430, 6.5, 6.5, 175),  # left common iliac
        cyl(-30, 18, -250, -430, 6.5, 6.5, 175),  # right common iliac
        cyl(-22, 24, 30, -250, 12, 11, 150),  # IVC
    ]
    return s


def _noise_bank(rows: int, cols: int, sigma: float, seed: int, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, rows, cols), dtype=np.float32) * np.float32(sigma)


# ----------------------------------------------------------------------------------------------------------
# CT
# ----------------------------------------------------------------------------------------------------------


def _ct_series(
    out: Path,
    spec: _StudySpec,
    *,
    series_key: str,
    series_number: int,
    series_description: str,
    rows: int,
    cols: int,
    pixel_spacing: float,
    fov_center: tuple[float, float],
    z_positions: Sequence[float],
    slice_thickness: float,
    shapes: Sequence[_Shape],
    transfer_syntax: str,
    kvp: float = 120.0,
    contrast: str | None = None,
    noise_sigma: float = 5.0,
    convolution_kernel: str = "STANDARD",
    texture: Callable[[np.ndarray, _SliceGrid, float], None] | None = None,
) -> tuple[str, list[Path], list[str]]:
    """Write one axial CT series (HFS, IOP 1,0,0,0,1,0). Returns (series UID, files, SOP instance UIDs).

    ``texture(hu, grid, z)`` may refine each noise-free slice in place before noise is added.
    """
    series_uid = _uid(spec.key, series_key, "series")
    frame_uid = _uid(spec.key, series_key, "frame-of-reference")
    x0 = fov_center[0] - (cols - 1) / 2 * pixel_spacing
    y0 = fov_center[1] - (rows - 1) / 2 * pixel_spacing
    grid = _SliceGrid(rows, cols, x0, y0, pixel_spacing)
    noise = _noise_bank(rows, cols, noise_sigma, seed=series_number)
    files: list[Path] = []
    sops: list[str] = []
    cache: dict = {}
    folder = out / f"{series_number:03d}_CT"
    t0 = spec.when + dt.timedelta(minutes=3)
    for i, z in enumerate(z_positions):
        hu = _render_axial(shapes, grid, float(z), background=-1000.0, cache=cache)
        if texture is not None:
            texture(hu, grid, float(z))
        hu += np.roll(noise[i % len(noise)], shift=(i * 37) % cols, axis=1)
        stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
        sop = _uid(spec.key, series_key, "instance", i)
        acquired = t0 + dt.timedelta(milliseconds=250 * i)
        ds = _base_dataset(
            spec,
            sop_class=CT_IMAGE_STORAGE,
            sop_uid=sop,
            series_uid=series_uid,
            series_number=series_number,
            series_description=series_description,
            instance_number=i + 1,
            modality="CT",
            manufacturer_model="Synthetic CT 64",
            acquired=acquired,
        )
        ds.BodyPartExamined = spec.body_part
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.KVP = kvp
        ds.SliceThickness = _ds(slice_thickness)
        ds.ConvolutionKernel = convolution_kernel
        ds.ReconstructionDiameter = _ds(pixel_spacing * max(rows, cols))
        # exact values (the phantom was evaluated at exactly these pixel centres)
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(float(z))]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = _ds(float(z))
        ds.PixelSpacing = [_ds(pixel_spacing), _ds(pixel_spacing)]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        if contrast:
            ds.ContrastBolusAgent = contrast
            ds.ContrastBolusRoute = "IV"
        if spec.body_part == "HEAD":
            ds.WindowCenter, ds.WindowWidth = [40, 600], [80, 2800]
        else:
            ds.WindowCenter, ds.WindowWidth = [50, 500], [400, 2000]
        ds.WindowCenterWidthExplanation = ["BRAIN" if spec.body_part == "HEAD" else "SOFT TISSUE", "BONE"]
        files.append(_write(ds, folder / f"CT{i + 1:06d}.dcm", stored, transfer_syntax))
        sops.append(sop)
    return series_uid, files, sops


def write_ct_series(
    out: Path,
    n_slices: int = 300,
    rows: int = 512,
    cols: int = 512,
    *,
    slice_spacing: float | None = None,
    pixel_spacing: float | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    key: str = "bench-ct",
    description: str = "CT HEAD WO CONTRAST (SYNTHETIC BENCH)",
    body_part: str = "HEAD",
    priority: str = "ROUTINE",
    acquired: dt.datetime | None = None,
    patient_name: str = "SYNTHETIC^BENCHCT",
    patient_id: str = "RRDEMO-BENCH",
) -> list[Path]:
    """Write one synthetic head CT series: ``n_slices`` axial ``rows`` x ``cols`` slices (benches, tests).

    The head phantom always fits the scan: by default the slices span 190 mm (``slice_spacing`` =
    190 / n_slices, at most 5 mm) and the field of view is 240 mm. The files go under ``out`` in one
    study folder; ``key`` names the study (different keys give different, deterministic UIDs and
    accession numbers). ``description``, ``body_part``, ``priority`` ("STAT" | "ROUTINE"), ``acquired``
    (study date/time, default 2026-01-15 03:00) and the patient go into the headers as given, so a test
    can make studies that route differently without rewriting the files.
    """
    out = Path(out)
    if n_slices < 1 or rows < 16 or cols < 16:
        raise ValueError("a CT series needs at least one slice of at least 16x16 pixels")
    if priority not in ("STAT", "ROUTINE"):
        raise ValueError(f"priority must be STAT or ROUTINE, not {priority!r}")
    dz = slice_spacing if slice_spacing is not None else round(min(190.0 / n_slices, 5.0), 4)
    ps = pixel_spacing if pixel_spacing is not None else 240.0 / max(rows, cols)
    center = (0.0, 0.0, 0.0)
    z_positions = [-(n_slices - 1) / 2 * dz + i * dz for i in range(n_slices)]
    number = uuid.uuid5(_UID_NAMESPACE, key).int % 10**8
    spec = _StudySpec(
        key=key,
        patient=_Patient(patient_name, patient_id, "O", dt.date(1975, 6, 15)),
        when=acquired or dt.datetime(2026, 1, 15, 3, 0, 0),
        accession=f"SYNB{number:08d}",
        description=description,
        priority=priority,
        modality="CT",
        body_part=body_part,
        study_id=f"{number % 10**6}",
    )
    shapes = [sh for sh in _head_shapes(center, bleed=False)]
    _, files, _ = _ct_series(
        out / "bench_ct",
        spec,
        series_key="axial",
        series_number=1,
        series_description=f"AXIAL {dz:g}mm (SYNTHETIC)",
        rows=rows,
        cols=cols,
        pixel_spacing=ps,
        fov_center=(0.0, 0.0),
        z_positions=z_positions,
        slice_thickness=dz,
        shapes=shapes,
        transfer_syntax=transfer_syntax,
    )
    return files


# ----------------------------------------------------------------------------------------------------------
# Projection radiography (DX, For Presentation)
# ----------------------------------------------------------------------------------------------------------


class _Film:
    """An attenuation canvas in detector millimetres: u across (columns), v down (rows), origin at the centre.

    Shapes add their projected thickness (mm) times a weight; ``to_pixels`` maps the line integral to
    12-bit "for presentation" values (higher = more attenuation = whiter on MONOCHROME2).
    """

    def __init__(self, rows: int, cols: int, spacing: float):
        self.rows, self.cols, self.ps = rows, cols, spacing
        self.att = np.zeros((rows, cols), dtype=np.float32)
        self.u0 = -(cols - 1) / 2 * spacing
        self.v0 = -(rows - 1) / 2 * spacing

    def uv_to_rc(self, u: float, v: float) -> tuple[float, float]:
        return (v - self.v0) / self.ps, (u - self.u0) / self.ps

    def _box(self, umin: float, umax: float, vmin: float, vmax: float):
        c0 = max(math.floor((umin - self.u0) / self.ps), 0)
        c1 = min(math.ceil((umax - self.u0) / self.ps) + 1, self.cols)
        r0 = max(math.floor((vmin - self.v0) / self.ps), 0)
        r1 = min(math.ceil((vmax - self.v0) / self.ps) + 1, self.rows)
        if c0 >= c1 or r0 >= r1:
            return None
        u = (self.u0 + self.ps * np.arange(c0, c1, dtype=np.float32))[None, :]
        v = (self.v0 + self.ps * np.arange(r0, r1, dtype=np.float32))[:, None]
        return (slice(r0, r1), slice(c0, c1)), u, v

    def ellipsoid(
        self, weight: float, cu: float, cv: float, a: float, b: float, depth: float, angle: float = 0.0
    ) -> None:
        """Add an ellipsoid (semi-axes a across, b down, ``depth`` along the beam), rotated in-plane."""
        reach = max(a, b)
        box = self._box(cu - reach, cu + reach, cv - reach, cv + reach)
        if box is None:
            return
        sl, u, v = box
        du, dv = u - np.float32(cu), v - np.float32(cv)
        if angle:
            th = math.radians(angle)
            du, dv = (math.cos(th) * du + math.sin(th) * dv, -math.sin(th) * du + math.cos(th) * dv)
        t = 1.0 - (du / np.float32(a)) ** 2 - (dv / np.float32(b)) ** 2
        self.att[sl] += np.float32(2 * depth * weight) * np.sqrt(np.maximum(t, 0.0))

    def tube(
        self,
        weight: float,
        points: Sequence[tuple[float, float]],
        radius: float,
        inner: float = 0.0,
        inner_weight: float = 0.0,
    ) -> None:
        """Add a cylinder of ``radius`` along a polyline (a bone shaft, a rib), optionally hollow."""
        pts = np.asarray(points, dtype=np.float32)
        box = self._box(
            pts[:, 0].min() - radius,
            pts[:, 0].max() + radius,
            pts[:, 1].min() - radius,
            pts[:, 1].max() + radius,
        )
        if box is None:
            return
        sl, u, v = box
        d2 = np.full(np.broadcast_shapes(u.shape, v.shape), np.inf, dtype=np.float32)
        for (pu, pv), (qu, qv) in itertools.pairwise(pts):
            eu, ev = qu - pu, qv - pv
            t = np.clip(((u - pu) * eu + (v - pv) * ev) / max(float(eu * eu + ev * ev), 1e-9), 0.0, 1.0)
            d2 = np.minimum(d2, (u - pu - t * eu) ** 2 + (v - pv - t * ev) ** 2)
        val = np.float32(2 * weight) * np.sqrt(np.maximum(radius * radius - d2, 0.0))
        if inner:
            val -= np.float32(2 * (weight - inner_weight)) * np.sqrt(np.maximum(inner * inner - d2, 0.0))
        self.att[sl] += val

    def to_pixels(self, offset: float, gain: float, noise: float, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        img = np.float32(offset) + np.float32(gain) * self.att
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
        return np.clip(np.rint(img), 0, 4095).astype(np.uint16)


def _chest_pa(rows: int, cols: int, ps: float) -> np.ndarray:
    """PA chest, viewed as facing the patient (patient's left to the image right), with a RLL opacity."""
    f = _Film(rows, cols, ps)
    f.tube(110 / 165, [(0, -140), (0, 420)], 165)  # trunk: 330 mm wide, 220 mm deep
    f.ellipsoid(1.0, -150, -150, 45, 70, 50, angle=30)  # right shoulder
    f.ellipsoid(1.0, 150, -150, 45, 70, 50, angle=-30)  # left shoulder
    air = _Film(rows, cols, ps)
    air.ellipsoid(1.0, -80, -25, 64, 150, 82)  # right lung (higher hemidiaphragm below the liver)
    air.ellipsoid(1.0, 78, -12, 64, 158, 80)  # left lung
    heart = _Film(rows, cols, ps)
    heart.ellipsoid(1.0, 30, 75, 72, 64, 62)
    heart.ellipsoid(1.0, 0, -60, 22, 90, 40)  # mediastinum (aorta, trachea area)
    heart.ellipsoid(0.7, -85, 70, 30, 28, 35)  # right lower lobe consolidation (the finding)
    f.att -= 0.95 * np.maximum(air.att - heart.att, 0.0)
    f.tube(0.9, [(0, -300), (0, 330)], 20, inner=15, inner_weight=0.5)  # spine
    for i in range(10):  # posterior ribs
        v0 = -150 + 31 * i
        for s in (-1.0, 1.0):
            pts = [(s * (18 + 14 * k), v0 - 12 + 0.0016 * (14 * k) ** 2 + 2.5 * k) for k in range(11)]
            f.tube(1.4, pts, 5.5, inner=4.0, inner_weight=0.5)
    for i in range(6):  # anterior ribs, fainter, sloping down towards the midline
        v0 = -110 + 34 * i
        for s in (-1.0, 1.0):
            pts = [(s * (150 - 16 * k), v0 + 5.0 * k) for k in range(8)]
            f.tube(0.8, pts, 5.0, inner=3.5, inner_weight=0.4)
    for s in (-1.0, 1.0):
        f.tube(
            1.8, [(s * 18, -178), (s * 80, -190), (s * 150, -178)], 7.5, inner=4, inner_weight=1.0
        )  # clavicle
        f.ellipsoid(1.4, s * 175, -150, 30, 30, 25)  # humeral head
    return f.to_pixels(offset=250, gain=12.0, noise=10.0, seed=11)


def _chest_lateral(rows: int, cols: int, ps: float) -> np.ndarray:
    """Left lateral chest, anterior to the image left: lungs superimposed, heart anterior, spine posterior."""
    f = _Film(rows, cols, ps)
    f.tube(165 / 115, [(0, -140), (0, 420)], 115)  # trunk seen from the side: 230 mm deep, 330 mm wide
    air = _Film(rows, cols, ps)
    air.ellipsoid(2.0, 10, -15, 88, 155, 64)  # both lungs, superimposed
    heart = _Film(rows, cols, ps)
    heart.ellipsoid(2.0, -40, 75, 58, 64, 52)
    heart.ellipsoid(1.2, 25, 65, 30, 25, 30)  # RLL opacity projected over the posterior lung
    f.att -= 0.95 * np.maximum(air.att - heart.att, 0.0)
    z = -260.0
    while z < 330:  # vertebral bodies with disc spaces
        f.ellipsoid(2.6, 72, z + 12, 18, 12, 20)
        z += 28.0
    f.tube(1.6, [(-110, -160), (-104, 70)], 6, inner=3, inner_weight=0.8)  # sternum
    for i in range(9):
        v0 = -140 + 32 * i
        f.tube(0.5, [(95, v0), (40, v0 + 25), (-60, v0 + 55)], 5, inner=3.5, inner_weight=0.2)
    return f.to_pixels(offset=250, gain=7.0, noise=10.0, seed=12)


@dataclass(frozen=True)
class _WristPose:
    du: float = 0.0
    dv: float = 0.0
    fracture: bool = True
    ball: tuple[float, float] | None = None  # (row, col) pixel centre of the calibration ball


def _wrist_pa(rows: int, cols: int, ps: float, pose: _WristPose, seed: int) -> np.ndarray:
    """Right wrist PA, fingers up, radial side (thumb) to the image left; optional distal radius fracture."""
    f = _Film(rows, cols, ps)
    ou, ov = pose.du, pose.dv

    def P(u: float, v: float) -> tuple[float, float]:
        return (u + ou, v + ov)

    # soft tissue: forearm, wrist, hand, thumb
    f.tube(1.0, [P(-2, 180), P(-2, -15)], 31)
    f.ellipsoid(1.0, *P(2, -85), 47, 70, 21)
    f.tube(1.0, [P(-32, -45), P(-56, -110)], 11)
    # radius: flaring distal metaphysis, slanted articular surface (radial styloid more distal)
    ru, rv_end = -15.0 + ou, -6.0 + ov

    def radius_film(su: float, sv: float) -> np.ndarray:
        """Projected radius; (su, sv) displaces the distal end (the fracture fragment)."""
        cap, neck, shaft = (_Film(rows, cols, ps) for _ in range(3))
        cap.ellipsoid(2.0, ru + su, rv_end + 14 + sv, 15.5, 17, 9, angle=-12)
        neck.tube(
            2.2, [(ru + su, rv_end + 14 + sv), (ru + 2, rv_end + 45)], 12.5, inner=9.5, inner_weight=0.9
        )
        shaft.tube(2.2, [(ru + 2, rv_end + 40), (ru + 3, 185 + ov)], 10, inner=6.5, inner_weight=0.9)
        return np.maximum(np.maximum(cap.att, neck.att), shaft.att)

    radius = radius_film(0.0, 0.0)
    if pose.fracture:
        # oblique fracture line 12-24 mm proximal to the articular surface; the distal fragment is
        # displaced 1.2 mm radially and impacted 0.8 mm
        (a_u, a_v), (b_u, b_v) = ((u_ + ou, v_ + ov) for u_, v_ in _WRIST_FRACTURE_UV)
        n_u, n_v = -(b_v - a_v), (b_u - a_u)
        n_len = math.hypot(n_u, n_v)
        n_u, n_v = n_u / n_len, n_v / n_len
        distal = radius_film(-1.2, 0.8)
        rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
        u = f.u0 + ps * cc
        v = f.v0 + ps * rr
        side = (u - a_u) * n_u + (v - a_v) * n_v  # < 0 on the distal side (towards the hand)
        line = np.abs(side) < 0.6
        radius = np.where(side < 0, distal, radius)
        radius = np.where(line, radius * 0.15, radius)
    f.att += radius
    # ulna and its styloid
    f.tube(2.0, [P(17, 4), P(14, 185)], 8, inner=5, inner_weight=0.8)
    f.ellipsoid(2.0, *P(21, -1), 3.5, 7, 4)
    # carpal bones (proximal and distal rows)
    for cu, cv, a, b, ang in [
        (-17, -18, 8, 12, 35),
        (-2, -17, 8, 8, 0),
        (11, -15, 7, 7, 0),
        (17, -11, 5, 5, 0),
        (-25, -38, 8, 8, 10),
        (-12, -39, 6, 8, 0),
        (0, -38, 8, 12, 0),
        (13, -36, 8, 11, 0),
    ]:
        f.ellipsoid(1.9, *P(cu, cv), a, b, 8, angle=ang)
    # metacarpal bases and shafts
    for (bu, bv), (tu, tv), r in [
        ((-32, -50), (-52, -112), 6.0),
        ((-15, -53), (-22, -180), 5.5),
        ((0, -55), (0, -180), 5.5),
        ((12, -53), (18, -180), 5.0),
        ((23, -48), (36, -170), 5.0),
    ]:
        f.tube(2.0, [P(bu, bv), P(tu, tv)], r, inner=r - 2.0, inner_weight=0.7)
    img = f.to_pixels(offset=180, gain=26.0, noise=9.0, seed=seed)
    if pose.ball is not None:
        # steel calibration ball: saturates the detector, sharp (anti-aliased) edge
        br, bc = pose.ball
        rad_px = WRIST_BALL_DIAMETER_MM / 2 / ps
        r0, r1 = int(br - rad_px - 2), int(br + rad_px + 3)
        c0, c1 = int(bc - rad_px - 2), int(bc + rad_px + 3)
        yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        w = np.clip(rad_px + 0.5 - np.hypot(yy - br, xx - bc), 0.0, 1.0)
        region = img[r0:r1, c0:c1].astype(np.float32)
        img[r0:r1, c0:c1] = np.rint(region + (4000.0 - region) * w).astype(np.uint16)
    return img


def _wrist_lateral(rows: int, cols: int, ps: float, pose: _WristPose, seed: int) -> np.ndarray:
    """Right wrist lateral, fingers up, palmar side to the image left.

    Normally the distal radial articular surface tilts ~11 degrees towards the palm; with the fracture
    the distal fragment is tilted dorsally (-18 degrees) and displaced 2.5 mm dorsally (a Colles pattern).
    """
    f = _Film(rows, cols, ps)
    ou, ov = pose.du, pose.dv

    def P(u: float, v: float) -> tuple[float, float]:
        return (u + ou, v + ov)

    f.tube(1.0, [P(2, 180), P(0, -15)], 22)  # forearm soft tissue
    f.ellipsoid(1.0, *P(-2, -85), 19, 72, 44)  # hand, seen edge-on
    f.tube(1.0, [P(-14, -45), P(-32, -110)], 10)  # thumb
    # radius and ulna superimposed
    f.tube(1.6, [P(3, 40), P(3, 185)], 9, inner=6.0, inner_weight=0.7)  # ulna (behind the radius)
    shaft = _Film(rows, cols, ps)
    shaft.tube(2.2, [P(0, 20), P(1, 185)], 10, inner=6.5, inner_weight=0.9)
    distal = _Film(rows, cols, ps)
    if pose.fracture:
        distal.ellipsoid(2.0, *P(2.5, 6.0), 11.5, 14, 15, angle=-18)
    else:
        distal.ellipsoid(2.0, *P(0.0, 6.0), 11.5, 14, 15, angle=11)
    radius = np.maximum(shaft.att, distal.att)
    if pose.fracture:
        rr = np.arange(rows, dtype=np.float32)[:, None]
        v = f.v0 + ps * rr - ov
        radius = np.where(np.abs(v - 19.0) < 0.7, radius * 0.2, radius)  # the fracture line
    f.att += radius
    # carpus: lunate over the radius, capitate above it, scaphoid and pisiform
    for cu, cv, a, b, ang in [
        (1, -17, 9, 8, 0),
        (1, -36, 8, 12, 0),
        (-5, -22, 6, 12, 40),
        (-11, -14, 5, 5, 0),
        (-9, -40, 7, 7, 0),
    ]:
        f.ellipsoid(1.9, *P(cu, cv), a, b, 14 if a > 7 else 8, angle=ang)
    for (bu, bv), (tu, tv), r in [
        ((0, -50), (-3, -180), 6.5),
        ((2, -50), (2, -180), 6.0),
        ((-12, -46), (-30, -110), 5.5),
    ]:
        f.tube(2.0, [P(bu, bv), P(tu, tv)], r, inner=r - 2.0, inner_weight=0.7)
    return f.to_pixels(offset=180, gain=22.0, noise=9.0, seed=seed)


def _dx_image(
    out_file: Path,
    *,
    spec: _StudySpec,
    series_key: str,
    series_number: int,
    series_description: str,
    pixels: np.ndarray,
    imager_spacing: float,
    view_position: str,
    view_code: tuple[str, str, str],
    patient_orientation: Sequence[str],
    laterality: str,
    anatomy: tuple[str, str, str],
    body_part: str,
    monochrome1: bool,
    transfer_syntax: str,
    acquired: dt.datetime,
    window: tuple[float, float],
) -> tuple[str, str, Path]:
    """Write one DX For Presentation image; ``pixels`` are MONOCHROME2-sense (inverted for MONOCHROME1)."""
    series_uid = _uid(spec.key, series_key, "series")
    sop = _uid(spec.key, series_key, "instance", 0)
    ds = _base_dataset(
        spec,
        sop_class=DX_PRESENTATION_STORAGE,
        sop_uid=sop,
        series_uid=series_uid,
        series_number=series_number,
        series_description=series_description,
        instance_number=1,
        modality="DX",
        manufacturer_model="Synthetic DR",
        acquired=acquired,
    )
    ds.BodyPartExamined = body_part
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.AcquisitionNumber = 1
    ds.PatientOrientation = list(patient_orientation)
    ds.ImageLaterality = laterality  # (Series-level Laterality must then be absent)
    ds.PositionerType = "COLUMN" if body_part == "CHEST" else "NONE"
    ds.ViewPosition = view_position
    ds.ViewCodeSequence = DicomSequence([_code(*view_code)])
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = DicomSequence([])
    ds.AnatomicRegionSequence = DicomSequence([_code(*anatomy)])
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    wc, ww = window
    if monochrome1:
        pixels = (4095 - pixels).astype(np.uint16)
        wc = 4095 - wc
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.PresentationLUTShape = "INVERSE"
        ds.PixelIntensityRelationshipSign = 1  # higher values: more beam intensity (less attenuation)
    else:
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PresentationLUTShape = "IDENTITY"
        ds.PixelIntensityRelationshipSign = -1  # higher values: less beam intensity (bone is bright)
    ds.WindowCenter = wc
    ds.WindowWidth = ww
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.CalibrationImage = "NO"
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = [imager_spacing, imager_spacing]
    if body_part == "CHEST":  # erect chest stand at 180 cm; the wrist lies on the detector (no distances)
        ds.DistanceSourceToDetector = 1800
        ds.DistanceSourceToPatient = 1650
        ds.EstimatedRadiographicMagnificationFactor = _ds(round(1800 / 1650, 4))
    ds.KVP = 110 if body_part == "CHEST" else 55
    ds.ExposureInuAs = 2_000_000 if body_part == "CHEST" else 2_500_000
    ds.AcquisitionContextSequence = DicomSequence([])
    _write(ds, out_file, pixels, transfer_syntax)
    return series_uid, sop, out_file


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


# ----------------------------------------------------------------------------------------------------------
# Ultrasound cine
# ----------------------------------------------------------------------------------------------------------

US_ROWS, US_COLS, US_FRAMES = 480, 640, 32
US_FRAME_TIME_MS = 33.3
US_DELTA_MM = 0.3  # physical size of a pixel in both directions
US_APEX = (20, 320)  # (row, col) of the transducer's virtual apex
US_STONE_CENTER_FRAME1 = (290, 306)  # (row, col) of the gallstone's centre in frame 1


def _box_blur(a: np.ndarray, ry: int, rx: int) -> np.ndarray:
    """Separable moving average over (2*ry+1) x (2*rx+1) pixels, edges clamped (numpy only)."""
    for axis, r in ((0, ry), (1, rx)):
        if r <= 0:
            continue
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
        hi = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis)
        lo = np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
        a = ((hi - lo) / (2 * r + 1)).astype(np.float32)
    return a


def _us_cine(seed: int) -> np.ndarray:
    """Sector-scan cine of the right upper quadrant: liver, gallbladder with a shadowing stone, breathing."""
    rng = np.random.default_rng(seed)
    rows, cols, n = US_ROWS, US_COLS, US_FRAMES
    d = US_DELTA_MM
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x = (cc - US_APEX[1]) * d  # lateral mm
    y = (rr - US_APEX[0]) * d  # depth mm
    r = np.hypot(x, y)
    theta = np.degrees(np.arctan2(x, y))
    sector = (np.abs(theta) < 35.0) & (r > 4.0) & (r < 135.0)
    stone_r = US_STONE_DIAMETER_MM / 2
    sy = (US_STONE_CENTER_FRAME1[0] - US_APEX[0]) * d
    sx = (US_STONE_CENTER_FRAME1[1] - US_APEX[1]) * d
    margin = 24
    # speckle: Rayleigh-distributed, correlated over ~1.5 mm laterally and ~0.6 mm axially like real speckle
    # (the magnitude of a smoothed complex Gaussian field: Rayleigh statistics, full speckle contrast)
    shape = (rows + 2 * margin, cols)
    re = _box_blur(rng.standard_normal(shape, dtype=np.float32), 1, 4)
    im = _box_blur(rng.standard_normal(shape, dtype=np.float32), 1, 4)
    speckle = np.hypot(re, im)
    speckle *= np.float32(0.7 * math.sqrt(math.pi / 2)) / speckle.mean()
    frames = np.zeros((n, rows, cols), dtype=np.uint8)
    depth_gain = np.float32(1.0) - np.float32(0.0025) * r
    for i in range(n):
        m = 4.0 * math.sin(2 * math.pi * i / n)  # breathing: the organs move down by up to 4 mm
        e = np.full((rows, cols), 0.5, dtype=np.float32)  # liver parenchyma
        e = np.where((y > 6) & (y < 13), 0.85, e)  # abdominal wall fascia
        e = np.where(y <= 6, 0.35, e)  # subcutaneous fat
        yy = y - m
        gb = ((x + 8) / 15.0) ** 2 + ((yy - 64) / 30.0) ** 2
        e = np.where((gb < 1.12) & (gb >= 1.0), 1.0, e)  # gallbladder wall
        e = np.where(gb < 1.0, 0.03, e)  # bile, anechoic
        pv = ((x - 22) / 6.0) ** 2 + ((yy - 74) / 4.0) ** 2
        e = np.where(pv < 1.0, 0.05, e)  # portal vein
        dia = np.abs(np.hypot(x, yy + 40) - 160.0)
        e = np.where(dia < 1.5, 1.0, e)  # diaphragm
        e = np.where(np.hypot(x, yy + 40) > 161.5, 0.3, e)
        stone = np.hypot(x - sx, yy - sy)
        e = np.where(stone <= stone_r, 1.0, e)
        # acoustic shadow: rays through the stone, beyond it
        half_angle = math.degrees(math.asin(min(stone_r / math.hypot(sx, sy + m), 1.0)))
        ray = np.abs(theta - math.degrees(math.atan2(sx, sy + m))) < half_angle
        beyond = r > math.hypot(sx, sy + m)
        e = np.where(ray & beyond & (stone > stone_r), e * 0.12, e)
        shift = round(m / d)
        sp = speckle[margin - shift : margin - shift + rows]
        img = e * sp * depth_gain * np.float32(190.0)
        w = np.clip(0.5 - (stone - stone_r) / d, 0.0, 1.0)  # anti-aliased edge of the stone
        img += (np.maximum(img, 215.0) - img) * w  # strongly reflective surface
        img = np.where(sector, img, 0.0)
        frames[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return frames


def _us_study(out: Path, spec: _StudySpec) -> DemoStudy:
    series_uid = _uid(spec.key, "cine", "series")
    sop = _uid(spec.key, "cine", "instance", 0)
    acquired = spec.when + dt.timedelta(minutes=6)
    ds = _base_dataset(
        spec,
        sop_class=US_MULTIFRAME_STORAGE,
        sop_uid=sop,
        series_uid=series_uid,
        series_number=1,
        series_description="RUQ CINE (SYNTHETIC)",
        instance_number=1,
        modality="US",
        manufacturer_model="Synthetic US C5-1",
        acquired=acquired,
    )
    frames = _us_cine(seed=21)
    ds.BodyPartExamined = "ABDOMEN"
    ds.PatientOrientation = ""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    ds.AcquisitionNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.FrameTime = US_FRAME_TIME_MS
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.CineRate = 30
    ds.RecommendedDisplayFrameRate = 30
    ds.EffectiveDuration = round(US_FRAME_TIME_MS * frames.shape[0] / 1000.0, 3)
    ds.ActualFrameDuration = int(US_FRAME_TIME_MS)
    ds.StartTrim = 1
    ds.StopTrim = frames.shape[0]
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.TransducerData = ["C5-1", "", ""]
    ds.ProcessingFunction = "ABDOMEN"
    region = Dataset()
    half_width = math.ceil(135.0 / US_DELTA_MM * math.sin(math.radians(35)))
    region.RegionSpatialFormat = 1  # 2D
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = US_APEX[1] - half_width
    region.RegionLocationMinY0 = US_APEX[0]
    region.RegionLocationMaxX1 = US_APEX[1] + half_width
    region.RegionLocationMaxY1 = min(US_APEX[0] + int(135.0 / US_DELTA_MM), US_ROWS - 1)
    region.ReferencePixelX0 = US_APEX[1] - region.RegionLocationMinX0
    region.ReferencePixelY0 = 0
    region.ReferencePixelPhysicalValueX = 0.0
    region.ReferencePixelPhysicalValueY = 0.0
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = US_DELTA_MM / 10
    region.PhysicalDeltaY = US_DELTA_MM / 10
    region.TransducerFrequency = 3500
    ds.SequenceOfUltrasoundRegions = DicomSequence([region])
    f = _write(ds, out / "001_US" / "US000001.dcm", frames, ExplicitVRLittleEndian)
    known = [
        KnownObject(
            name="gallstone",
            kind="disc",
            diameter_mm=US_STONE_DIAMETER_MM,
            series_uid=series_uid,
            sop_instance_uid=sop,
            center=US_STONE_CENTER_FRAME1,
            note="echogenic disc with acoustic shadow; moves with breathing (frame 1 is the rest position)",
        )
    ]
    return _study_result(spec, [f], [series_uid], ExplicitVRLittleEndian, known)


# ----------------------------------------------------------------------------------------------------------
# The demo night
# ----------------------------------------------------------------------------------------------------------


def _study_result(
    spec: _StudySpec,
    files: list[Path],
    series_uids: list[str],
    transfer_syntax: str,
    known: list[KnownObject] | None = None,
) -> DemoStudy:
    return DemoStudy(
        study_uid=spec.study_uid,
        patient_id=spec.patient.patient_id,
        issuer_of_patient_id=ISSUER,
        patient_name=spec.patient.name,
        patient_sex=spec.patient.sex,
        modality=spec.modality,
        body_part=spec.body_part,
        description=spec.description,
        priority=spec.priority,
        study_date=spec.date,
        institution=spec.institution,
        files=files,
        transfer_syntax=str(transfer_syntax),
        series_uids=series_uids,
        study_time=spec.time,
        accession_number=spec.accession,
        patient_birth_date=spec.birth_date(),
        patient_age=spec.age(),
        referring_physician=spec.referrer,
        clinical_history=spec.history,
        known_objects=known or [],
    )


def _cortical_sulci(center: tuple[float, float, float]) -> Callable[[np.ndarray, _SliceGrid, float], None]:
    """CSF-filled sulci in the outer 15 % of the cerebrum: gyri instead of a smooth grey-matter shell."""
    cx, cy, cz = center[0], center[1] + 1.0, center[2] - 1.0  # the grey-matter ellipsoid
    ax, ay, az = 64.0, 84.0, 87.0

    def apply(hu: np.ndarray, grid: _SliceGrid, z: float) -> None:
        t = 1.0 - ((z - cz) / az) ** 2
        if t <= 0.05:
            return
        a, b = ax * math.sqrt(t), ay * math.sqrt(t)
        x = grid.xs[None, :] - np.float32(cx)
        y = grid.ys[:, None] - np.float32(cy)
        q = np.sqrt((x / np.float32(a)) ** 2 + (y / np.float32(b)) ** 2)
        theta = np.arctan2(y, x)
        wave = np.abs(np.sin(16.0 * theta + 3.0 * np.sin(3.0 * theta + 0.07 * z) + 0.11 * z))
        start = 0.80 + 0.07 * np.sin(7.0 * theta + 0.05 * z)  # sulci of varying depth
        depth = np.clip((q - start) / 0.05, 0.0, 1.0) * (q < 1.0)  # only the cortical ribbon
        w = np.clip(1.0 - wave / 0.24, 0.0, 1.0) * depth
        brain = (hu > 22.0) & (hu < 45.0)  # grey/white matter only: bone, CSF and blood untouched
        hu += np.where(brain, (np.float32(8.0) - hu) * w, np.float32(0.0)).astype(np.float32)

    return apply


def _ct_head(out: Path, spec: _StudySpec) -> DemoStudy:
    head_center = (1.5, -4.0, -60.0)
    zs = [HEAD_SLICE_Z0 + i * HEAD_SLICE_SPACING for i in range(HEAD_N_SLICES)]
    series_uid, files, sops = _ct_series(
        out,
        spec,
        series_key="axial",
        series_number=2,
        series_description="HEAD AXIAL 1.0 (SYNTHETIC)",
        rows=512,
        cols=512,
        pixel_spacing=0.45,
        fov_center=(0.0, 0.0),
        z_positions=zs,
        slice_thickness=HEAD_SLICE_SPACING,
        shapes=_head_shapes(head_center),
        transfer_syntax=ExplicitVRLittleEndian,
        convolution_kernel="H30s",
        texture=_cortical_sulci(head_center),
    )
    known = [
        KnownObject(
            name="haemorrhage",
            kind="sphere",
            diameter_mm=HEAD_BLEED_DIAMETER_MM,
            series_uid=series_uid,
            sop_instance_uid=sops[HEAD_BLEED_SLICE_INDEX],
            center=HEAD_BLEED_CENTER_LPS,
            note="hyperdense (72 HU) sphere in the right frontal lobe, 4 mm oedema rim (20 HU)",
        )
    ]
    return _study_result(spec, files, [series_uid], ExplicitVRLittleEndian, known)


def _ct_abdomen(out: Path, spec: _StudySpec) -> DemoStudy:
    top = ABDOMEN_TOP_Z
    n = 200
    zs = [top - 2.0 * i for i in range(n)]  # head to feet, as scanned
    series_uid, files, sops = _ct_series(
        out,
        spec,
        series_key="axial",
        series_number=3,
        series_description="ABD PEL PV 2.0 (SYNTHETIC)",
        rows=512,
        cols=512,
        pixel_spacing=0.78125,
        fov_center=(0.0, 8.0),
        z_positions=zs,
        slice_thickness=2.0,
        shapes=_abdomen_shapes(top),
        transfer_syntax=RLELossless,
        contrast="Iohexol 350 (synthetic)",
        noise_sigma=8.0,
    )
    k = 40  # a slice through the upper abdomen, where the aorta is a plain cylinder
    known = [
        KnownObject(
            name="aorta",
            kind="cylinder",
            diameter_mm=ABDOMEN_AORTA_DIAMETER_MM,
            series_uid=series_uid,
            sop_instance_uid=sops[k],
            center=(*ABDOMEN_AORTA_CENTER_XY, zs[k]),
            note=f"vertical cylinder (185 HU) from z={top + 30:.1f} down to z={top - 250:.1f}",
        ),
        KnownObject(
            name="appendix",
            kind="sphere-section",
            diameter_mm=ABDOMEN_APPENDIX_DIAMETER_MM,
            series_uid=series_uid,
            sop_instance_uid=sops[zs.index(ABDOMEN_APPENDIX_CENTER_LPS[2])],
            center=ABDOMEN_APPENDIX_CENTER_LPS,
            note="outer wall (120 HU) of a vertical ellipsoid; fluid lumen 6.4 mm (18 HU); stranding -25 HU",
        ),
    ]
    return _study_result(spec, files, [series_uid], RLELossless, known)


def _born(today: dt.date, age: int, month: int, day: int) -> dt.date:
    """A birth date on month/day that makes the patient ``age`` years old on ``today``."""
    year = today.year - age - (1 if (month, day) > (today.month, today.day) else 0)
    return dt.date(year, month, 28 if (month, day) == (2, 29) else day)


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _chest_study(out: Path, spec: _StudySpec) -> DemoStudy:
    rows, cols, ps = 2500, 2000, 0.175
    common = {
        "imager_spacing": ps,
        "laterality": "U",
        "anatomy": ("816094009", "SCT", "Chest"),
        "body_part": "CHEST",
        "transfer_syntax": ExplicitVRLittleEndian,
    }
    pa_uid, _, pa_file = _dx_image(
        out / "001_DX" / "DX000001.dcm",
        spec=spec,
        series_key="pa",
        series_number=1,
        series_description="CHEST PA (SYNTHETIC)",
        pixels=_chest_pa(rows, cols, ps),
        view_position="PA",
        view_code=("399348003", "SCT", "postero-anterior"),
        patient_orientation=["L", "F"],
        monochrome1=True,
        acquired=spec.when + dt.timedelta(minutes=1),
        window=(2150.0, 3400.0),
        **common,
    )
    lat_uid, _, lat_file = _dx_image(
        out / "002_DX" / "DX000001.dcm",
        spec=spec,
        series_key="lateral",
        series_number=2,
        series_description="CHEST LAT (SYNTHETIC)",
        pixels=_chest_lateral(rows, cols, ps),
        view_position="LL",
        view_code=("399173006", "SCT", "left lateral"),
        patient_orientation=["P", "F"],
        monochrome1=False,
        acquired=spec.when + dt.timedelta(minutes=2),
        window=(2150.0, 3400.0),
        **common,
    )
    return _study_result(spec, [pa_file, lat_file], [pa_uid, lat_uid], ExplicitVRLittleEndian)


def _wrist_study(out: Path, spec: _StudySpec, current: bool) -> DemoStudy:
    pose = (
        _WristPose(fracture=True, ball=WRIST_BALL_CENTER)
        if current
        else _WristPose(du=3.0, dv=-5.0, fracture=False, ball=None)
    )
    common = {
        "spec": spec,
        "imager_spacing": WRIST_SPACING,
        "laterality": "R",
        "body_part": "WRIST",
        "anatomy": ("74670003", "SCT", "Wrist joint"),
        "monochrome1": False,
        "transfer_syntax": JPEG2000Lossless,
        "window": (2000.0, 3600.0),
    }
    pa_uid, pa_sop, pa_file = _dx_image(
        out / "001_DX" / "DX000001.dcm",
        series_key="pa",
        series_number=1,
        series_description="WRIST PA RIGHT (SYNTHETIC)",
        pixels=_wrist_pa(WRIST_ROWS, WRIST_COLS, WRIST_SPACING, pose, seed=31 if current else 32),
        view_position="PA",
        view_code=("399348003", "SCT", "postero-anterior"),
        patient_orientation=["L", "H"],  # fingers up: in the anatomic position they point to the feet (PS3.17 Annex A)
        acquired=spec.when + dt.timedelta(minutes=1),
        **common,
    )
    lat_uid, _, lat_file = _dx_image(
        out / "002_DX" / "DX000001.dcm",
        series_key="lateral",
        series_number=2,
        series_description="WRIST LAT RIGHT (SYNTHETIC)",
        pixels=_wrist_lateral(WRIST_ROWS, WRIST_COLS, WRIST_SPACING, pose, seed=33 if current else 34),
        view_position="LL",
        view_code=("399173006", "SCT", "left lateral"),
        patient_orientation=["P", "H"],
        acquired=spec.when + dt.timedelta(minutes=2),
        **common,
    )
    known = []
    if current:
        known.append(
            KnownObject(
                name="calibration ball",
                kind="disc",
                diameter_mm=WRIST_BALL_DIAMETER_MM,
                series_uid=pa_uid,
                sop_instance_uid=pa_sop,
                center=WRIST_BALL_CENTER,
                note="steel sphere at the detector plane: measure with ImagerPixelSpacing",
            )
        )
    return _study_result(spec, [pa_file, lat_file], [pa_uid, lat_uid], JPEG2000Lossless, known)


DEMO_KEYS = ("ct-head", "ct-abdomen", "xr-chest", "xr-wrist", "xr-wrist-prior", "us-abdomen")


def write_demo_studies(
    out: Path, night: dt.date | None = None, only: Collection[str] | None = None
) -> list[DemoStudy]:
    """Write the demo night shift under ``out`` (one folder per study) and describe what was written.

    ``night`` is the date on which the shift ends (early-morning studies carry this date, late-evening
    ones the day before); default today (UTC). UIDs do not depend on it. ``only`` restricts the output
    to some of :data:`DEMO_KEYS` (e.g. ``{"ct-head"}`` for a test that needs one study).
    """
    unknown = set(only or ()) - set(DEMO_KEYS)
    if unknown:
        raise ValueError(f"unknown demo studies {sorted(unknown)}; choose from {', '.join(DEMO_KEYS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if night is None:
        night = dt.datetime.now(dt.UTC).date()
    evening = night - dt.timedelta(days=1)

    def at(day: dt.date, hh: int, mm: int, ss: int = 0) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, hh, mm, ss)

    head = _StudySpec(
        key="ct-head",
        patient=_Patient("SYNTHETIC^HEADCT", "RRDEMO-0001", "M", _born(night, 78, 3, 9)),
        when=at(night, 2, 14, 7),
        accession="SYN26001",
        description="CT HEAD WO CONTRAST",
        priority="STAT",
        modality="CT",
        body_part="HEAD",
        study_id="1001",
        history="Fall at home, on warfarin, new confusion. GCS 14.",
    )
    abdomen = _StudySpec(
        key="ct-abdomen",
        patient=_Patient("SYNTHETIC^ABDOMENCT", "RRDEMO-0002", "F", _born(night, 24, 11, 2)),
        when=at(night, 1, 38, 41),
        accession="SYN26002",
        description="CT ABDOMEN PELVIS WITH CONTRAST",
        priority="ROUTINE",
        modality="CT",
        body_part="ABDOMEN",
        study_id="1002",
        history="RLQ pain for 18 hours, fever 38.4, WBC 14. Appendicitis?",
    )
    chest = _StudySpec(
        key="xr-chest",
        patient=_Patient("SYNTHETIC^CHESTXRAY", "RRDEMO-0003", "M", _born(night, 45, 7, 21)),
        when=at(evening, 23, 31, 12),
        accession="SYN26003",
        description="XR CHEST PA AND LATERAL",
        priority="ROUTINE",
        modality="DX",
        body_part="CHEST",
        study_id="1003",
        history="Cough and fever for 4 days, crackles right base.",
    )
    wrist_patient = _Patient("SYNTHETIC^WRISTXRAY", "RRDEMO-0004", "F", _born(night, 34, 4, 30))
    wrist = _StudySpec(
        key="xr-wrist",
        patient=wrist_patient,
        when=at(evening, 22, 47, 55),
        accession="SYN26004",
        description="XR WRIST RIGHT 2 VIEWS",
        priority="ROUTINE",
        modality="DX",
        body_part="WRIST",
        study_id="1004",
        history="Fall on outstretched right hand, distal radius tenderness.",
    )
    wrist_prior = _StudySpec(
        key="xr-wrist-prior",
        patient=wrist_patient,
        when=at(_years_before(evening, 2), 14, 5, 30),
        accession="SYN24117",
        description="XR WRIST RIGHT 2 VIEWS",
        priority="ROUTINE",
        modality="DX",
        body_part="WRIST",
        study_id="0877",
        institution="Synthetic Orthopaedic Clinic (demo)",
        history="Wrist pain after a sprain two weeks ago.",
        referrer="SYNTHETIC^ORTHO^DOCTOR^^MD",
    )
    ultrasound = _StudySpec(
        key="us-abdomen",
        patient=_Patient("SYNTHETIC^ABDOMENUS", "RRDEMO-0005", "F", _born(night, 52, 1, 17)),
        when=at(night, 0, 52, 3),
        accession="SYN26005",
        description="US ABDOMEN RUQ",
        priority="ROUTINE",
        modality="US",
        body_part="ABDOMEN",
        study_id="1005",
        history="RUQ pain after fatty meals, Murphy sign positive.",
    )
    writers: list[tuple[str, Callable[[], DemoStudy]]] = [
        ("ct-head", lambda: _ct_head(out / "ct_head", head)),
        ("ct-abdomen", lambda: _ct_abdomen(out / "ct_abdomen", abdomen)),
        ("xr-chest", lambda: _chest_study(out / "xr_chest", chest)),
        ("xr-wrist", lambda: _wrist_study(out / "xr_wrist", wrist, current=True)),
        ("xr-wrist-prior", lambda: _wrist_study(out / "xr_wrist_prior", wrist_prior, current=False)),
        ("us-abdomen", lambda: _us_study(out / "us_abdomen", ultrasound)),
    ]
    return [write() for key, write in writers if only is None or key in only]
