"""Synthetic demo studies for the reference cloud: an urgent-care night shift as real DICOM files.

This module owns the demo data set that ``readroom-cloud demo-data --out DIR`` writes and ``--seed-demo``
stores through STOW-RS, plus :func:`write_ct_series`, a plain CT series writer the benches use.

Everything here is synthetic: analytic phantoms (no real patient data), names like ``SYNTHETIC^HEADCT``,
issuer ``READROOM-DEMO``. The objects are nevertheless standard, valid DICOM (checked with ``dciodvfy`` in
tests/unit/test_demo_data.py) with exact geometry, because the viewer's geometry and measurement tests use
them:

* CT head without contrast (STAT): 512x512, 160 axial slices of 1.0 mm, HU via rescale, a 3D head phantom
  (scalp, three-layer skull, grey/white matter, lateral ventricles) with a hyperdense intraparenchymal bleed
  that is an exact sphere (:data:`HEAD_BLEED_DIAMETER_MM`, centre :data:`HEAD_BLEED_CENTER_LPS`).
* CT abdomen/pelvis with IV contrast: 512x512, 200 slices of 2.0 mm, RLE Lossless; liver, spleen,
  kidneys, spine, aorta (an exact cylinder, :data:`ABDOMEN_AORTA_DIAMETER_MM`), colon, bladder and an
  inflamed appendix with an appendicolith.
* Chest X-ray PA (MONOCHROME1) and left lateral (MONOCHROME2), DX, 2500x2000 at 0.175 mm.
* Right wrist PA with a distal radius fracture line, JPEG 2000 Lossless, with a 25 mm calibration ball
  (:data:`WRIST_BALL_DIAMETER_MM`); and its prior, same patient, two years earlier, without the fracture.
* Abdominal ultrasound cine: 32 frames, 480x640, frame time 33.3 ms, with a gallbladder stone.

The geometry is built from the DICOM header outwards: phantoms are defined in patient millimetres (LPS)
and evaluated at each pixel centre computed from Image Position/Orientation (Patient) and Pixel Spacing,
so the header and the pixels cannot disagree. UIDs are deterministic (derived from fixed names), so
re-writing the demo yields the same studies, which lets the cloud recognise a re-sent study.

The cloud is a separate deployable: this module imports nothing from the client packages.
"""
from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

__all__ = [
    "DemoStudy",
    "KnownObject",
    "write_demo_studies",
    "write_ct_series",
    "ISSUER",
    "HEAD_BLEED_DIAMETER_MM",
    "HEAD_BLEED_CENTER_LPS",
    "ABDOMEN_AORTA_DIAMETER_MM",
    "WRIST_BALL_DIAMETER_MM",
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
#: The current wrist radiograph carries a steel calibration ball of this diameter (mm) at the detector
#: plane (magnification 1.0): measure it with ImagerPixelSpacing.
WRIST_BALL_DIAMETER_MM = 25.0
#: The gallstone in the ultrasound cine is a disc of this diameter (mm) in the US region's physical units.
US_GALLSTONE_DIAMETER_MM = 9.0


@dataclass(frozen=True)
class KnownObject:
    """An object of exactly known size in one demo series, for measurement tests.

    For cross-sectional images ``center`` is a patient position (LPS, mm) and ``sop_instance_uid`` the
    slice through its centre; for projection and ultrasound images ``center`` is (row, column) in pixels
    (0-based, pixel centres) of that instance (frame 1 for a cine).
    """

    name: str
    kind: str  # "sphere" | "cylinder" | "disc"
    diameter_mm: float
    series_uid: str
    sop_instance_uid: str
    center: tuple[float, ...]
    note: str = ""


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
    known_objects: list[KnownObject] = field(default_factory=list)


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
    age_years: int
    birth_month_day: tuple[int, int]


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
        p = self.patient
        month, day = p.birth_month_day
        year = self.when.year - p.age_years
        if (month, day) > (self.when.month, self.when.day):
            year -= 1  # birthday still to come this year
        return f"{year:04d}{month:02d}{day:02d}"

    def age(self) -> str:
        born = dt.datetime.strptime(self.birth_date(), "%Y%m%d").date()
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
    return ds


def _write(ds: Dataset, path: Path, pixels: np.ndarray, transfer_syntax: str) -> Path:
    """Attach pixels (uncompressed or compressed losslessly) and write a Part 10 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if transfer_syntax == ExplicitVRLittleEndian:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        ds.compress(transfer_syntax, np.ascontiguousarray(pixels), encoding_plugin="pylibjpeg",
                    generate_instance_uid=False)
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


def _paint_ellipse(img: np.ndarray, grid: _SliceGrid, cx: float, cy: float, a: float, b: float,
                   angle_deg: float, value: float) -> None:
    """Paint a filled, anti-aliased ellipse (patient mm) into img in place."""
    ps = grid.spacing
    reach = max(a, b) + 2 * ps
    c0 = max(int(math.floor((cx - reach - grid.x0) / ps)), 0)
    c1 = min(int(math.ceil((cx + reach - grid.x0) / ps)) + 1, grid.cols)
    r0 = max(int(math.floor((cy - reach - grid.y0) / ps)), 0)
    r1 = min(int(math.ceil((cy + reach - grid.y0) / ps)) + 1, grid.rows)
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


def _render_axial(shapes: Sequence[_Shape], grid: _SliceGrid, z: float, background: float) -> np.ndarray:
    img = np.full((grid.rows, grid.cols), background, dtype=np.float32)
    for sh in shapes:
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

    def cyl(x: float, y: float, z_from: float, z_to: float, a: float, b: float, value: float,
            angle: float = 0.0) -> _Shape:
        zc = (z_from + z_to) / 2
        return _Shape(at(x, y, zc), (a, b, abs(z_to - z_from) / 2), value, angle=angle, kind="cylinder")

    ax, ay = ABDOMEN_AORTA_CENTER_XY
    ra = ABDOMEN_AORTA_DIAMETER_MM / 2
    s: list[_Shape] = [
        cyl(0, 5, 30, -430, 165, 118, -105),  # subcutaneous fat
        cyl(0, 5, 30, -430, 152, 106, 48),  # abdominal wall muscles
        cyl(0, 3, 30, -430, 143, 97, -75),  # intra-abdominal fat
        cyl(38, 62, -130, -340, 19, 17, 52),  # left psoas
        cyl(-38, 62, -130, -340, 19, 17, 52),  # right psoas
        cyl(36, 84, 30, -430, 27, 18, 55),  # left paraspinal muscles
        cyl(-36, 84, 30, -430, 27, 18, 55),  # right paraspinal muscles
        cyl(0, 88, 30, -430, 17, 10, 480),  # posterior elements
    ]
    # vertebral bodies (cortex + cancellous) with discs
    z = 0.0
    while z > -340:
        s.append(cyl(0, 52, z, z - 27, 21, 19, 85))  # disc level (drawn first, body covers most)
        s.append(cyl(0, 52, z - 3, z - 27, 21, 19, 620))
        s.append(cyl(0, 52, z - 4.5, z - 25.5, 18, 16, 210))
        z -= 30.0
    s += [
        cyl(0, 78, 30, -430, 8, 8, 12),  # spinal canal
        cyl(0, 68, -340, -430, 55, 24, 420, ),  # sacrum
        cyl(0, 68, -345, -425, 45, 16, 190),
        _Shape(at(-62, -8, -75), (88, 92, 85), 108, angle=12),  # liver
        _Shape(at(-45, -55, -125), (14, 24, 30), 12, angle=25),  # gallbladder
        _Shape(at(88, 48, -75), (34, 55, 52), 118, angle=-32),  # spleen
        _Shape(at(52, -42, -60), (46, 34, 48), 22),  # stomach
        _Shape(at(52, -62, -45), (30, 12, 24), -950),  # air in the stomach fundus
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
        # the appendix: inflamed (11 mm), enhancing wall, fluid lumen, fat stranding, appendicolith
        _Shape(at(-68, -18, -330), (13, 13, 34), -25),  # fat stranding
        _Shape(at(-68, -18, -330), (5.5, 5.5, 24), 120),  # wall
        _Shape(at(-68, -18, -330), (3.2, 3.2, 21), 18),  # lumen
        _Shape(at(-68, -18, -338), (2.8, 2.8, 2.8), 650),  # appendicolith
        cyl(105, 40, -290, -430, 24, 48, 650, angle=-28),  # left iliac bone cortex
        cyl(105, 40, -292, -428, 18, 42, 240, angle=-28),
        cyl(-105, 40, -290, -430, 24, 48, 650, angle=28),  # right iliac bone
        cyl(-105, 40, -292, -428, 18, 42, 240, angle=28),
        _Shape(at(0, -35, -385), (48, 36, 38), 8),  # urinary bladder
        # retroperitoneal vessels last: nothing in front of them may cover them
        cyl(ax, ay, 30, -250, ra, ra, 185),  # aorta (exact cylinder)
        cyl(30, 18, -250, -430, 6.5, 6.5, 175),  # left common iliac
        cyl(-30, 18, -250, -430, 6.5, 6.5, 175),  # right common iliac
        cyl(-22, 24, 30, -250, 12, 11, 150),  # IVC
    ]
    return s


def _noise_bank(rows: int, cols: int, sigma: float, seed: int, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, rows, cols), dtype=np.float32) * np.float32(sigma))


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
) -> tuple[str, list[Path], list[str]]:
    """Write one axial CT series (HFS, IOP 1,0,0,0,1,0). Returns (series UID, files, SOP instance UIDs)."""
    series_uid = _uid(spec.key, series_key, "series")
    frame_uid = _uid(spec.key, series_key, "frame-of-reference")
    x0 = fov_center[0] - (cols - 1) / 2 * pixel_spacing
    y0 = fov_center[1] - (rows - 1) / 2 * pixel_spacing
    grid = _SliceGrid(rows, cols, x0, y0, pixel_spacing)
    noise = _noise_bank(rows, cols, noise_sigma, seed=abs(hash(series_key)) % 2**31 if False else series_number)
    files: list[Path] = []
    sops: list[str] = []
    folder = out / f"{series_number:03d}_CT"
    t0 = spec.when + dt.timedelta(minutes=3)
    for i, z in enumerate(z_positions):
        hu = _render_axial(shapes, grid, float(z), background=-1000.0)
        hu += np.roll(noise[i % len(noise)], shift=(i * 37) % cols, axis=1)
        stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
        sop = _uid(spec.key, series_key, "instance", i)
        acquired = t0 + dt.timedelta(milliseconds=250 * i)
        ds = _base_dataset(
            spec, sop_class=CT_IMAGE_STORAGE, sop_uid=sop, series_uid=series_uid,
            series_number=series_number, series_description=series_description, instance_number=i + 1,
            modality="CT", manufacturer_model="Synthetic CT 64", acquired=acquired,
        )
        ds.BodyPartExamined = spec.body_part
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.KVP = kvp
        ds.SliceThickness = slice_thickness
        ds.SpacingBetweenSlices = None
        del ds.SpacingBetweenSlices
        ds.ConvolutionKernel = convolution_kernel
        ds.ReconstructionDiameter = round(pixel_spacing * max(rows, cols), 3)
        ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(float(z), 4)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = round(float(z), 4)
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
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
        wc, ww = ([40, 400], [80, 400]) if spec.body_part == "HEAD" else ([40, 400], [400, 2000])
        if spec.body_part == "HEAD":
            ds.WindowCenter, ds.WindowWidth = [40, 600], [80, 2800]
        else:
            ds.WindowCenter, ds.WindowWidth = [50, 500], [400, 2000]
        del wc, ww
        ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "BONE"]
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
) -> list[Path]:
    """Write one synthetic head CT series of ``n_slices`` axial ``rows`` x ``cols`` slices (for benches).

    The head phantom always fits the scan: by default the slices span 190 mm (``slice_spacing`` =
    190 / n_slices, at most 5 mm) and the field of view is 240 mm. The files go under ``out`` in one
    study folder; ``key`` names the study (different keys give different, deterministic UIDs).
    """
    out = Path(out)
    if n_slices < 1 or rows < 16 or cols < 16:
        raise ValueError("a CT series needs at least one slice of at least 16x16 pixels")
    dz = slice_spacing if slice_spacing is not None else min(190.0 / n_slices, 5.0)
    ps = pixel_spacing if pixel_spacing is not None else 240.0 / max(rows, cols)
    center = (0.0, 0.0, 0.0)
    z_positions = [-(n_slices - 1) / 2 * dz + i * dz for i in range(n_slices)]
    spec = _StudySpec(
        key=key,
        patient=_Patient("SYNTHETIC^BENCHCT", "RRDEMO-BENCH", "O", 50, (6, 15)),
        when=dt.datetime(2026, 1, 15, 3, 0, 0),
        accession="SYNBENCH01",
        description="CT HEAD WO CONTRAST (SYNTHETIC BENCH)",
        priority="ROUTINE",
        modality="CT",
        body_part="HEAD",
        study_id="BENCH",
    )
    shapes = [sh for sh in _head_shapes(center, bleed=False)]
    _, files, _ = _ct_series(
        out / "bench_ct", spec, series_key="axial", series_number=1,
        series_description=f"AXIAL {dz:g}mm (SYNTHETIC)", rows=rows, cols=cols, pixel_spacing=ps,
        fov_center=(0.0, 0.0), z_positions=z_positions, slice_thickness=dz, shapes=shapes,
        transfer_syntax=transfer_syntax,
    )
    return files


# ----------------------------------------------------------------------------------------------------------
# The demo night
# ----------------------------------------------------------------------------------------------------------


def _study_result(spec: _StudySpec, files: list[Path], series_uids: list[str], transfer_syntax: str,
                  known: list[KnownObject] | None = None) -> DemoStudy:
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
        known_objects=known or [],
    )


def _ct_head(out: Path, spec: _StudySpec) -> DemoStudy:
    head_center = (1.5, -4.0, -60.0)
    zs = [HEAD_SLICE_Z0 + i * HEAD_SLICE_SPACING for i in range(HEAD_N_SLICES)]
    series_uid, files, sops = _ct_series(
        out, spec, series_key="axial", series_number=2, series_description="HEAD AXIAL 1.0 (SYNTHETIC)",
        rows=512, cols=512, pixel_spacing=0.45, fov_center=(0.0, 0.0), z_positions=zs,
        slice_thickness=HEAD_SLICE_SPACING, shapes=_head_shapes(head_center), transfer_syntax=ExplicitVRLittleEndian,
        convolution_kernel="H30s",
    )
    known = [KnownObject(
        name="haemorrhage", kind="sphere", diameter_mm=HEAD_BLEED_DIAMETER_MM, series_uid=series_uid,
        sop_instance_uid=sops[HEAD_BLEED_SLICE_INDEX], center=HEAD_BLEED_CENTER_LPS,
        note="hyperdense (72 HU) sphere in the right frontal lobe, 4 mm oedema rim (20 HU)",
    )]
    return _study_result(spec, files, [series_uid], ExplicitVRLittleEndian, known)


def _ct_abdomen(out: Path, spec: _StudySpec) -> DemoStudy:
    top = -95.0
    n = 200
    zs = [top - 2.0 * i for i in range(n)]  # head to feet, as scanned
    series_uid, files, sops = _ct_series(
        out, spec, series_key="axial", series_number=3, series_description="ABD PEL PV 2.0 (SYNTHETIC)",
        rows=512, cols=512, pixel_spacing=0.78125, fov_center=(0.0, 8.0), z_positions=zs,
        slice_thickness=2.0, shapes=_abdomen_shapes(top), transfer_syntax=RLELossless,
        contrast="Iohexol 350 (synthetic)", noise_sigma=8.0,
    )
    k = 40  # a slice through the upper abdomen, where the aorta is a plain cylinder
    known = [KnownObject(
        name="aorta", kind="cylinder", diameter_mm=ABDOMEN_AORTA_DIAMETER_MM, series_uid=series_uid,
        sop_instance_uid=sops[k], center=(*ABDOMEN_AORTA_CENTER_XY, zs[k]),
        note="vertical cylinder (185 HU) from z=%.1f down to z=%.1f" % (top + 30, top - 250),
    )]
    return _study_result(spec, files, [series_uid], RLELossless, known)


def write_demo_studies(out: Path, night: dt.date | None = None) -> list[DemoStudy]:
    """Write the demo night shift under ``out`` (one folder per study) and describe what was written.

    ``night`` is the date on which the shift ends (early-morning studies carry this date, late-evening
    ones the day before); default today (UTC). UIDs do not depend on it.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if night is None:
        night = dt.datetime.now(dt.timezone.utc).date()
    evening = night - dt.timedelta(days=1)

    def at(day: dt.date, hh: int, mm: int, ss: int = 0) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, hh, mm, ss)

    head = _StudySpec(
        key="ct-head", patient=_Patient("SYNTHETIC^HEADCT", "RRDEMO-0001", "M", 78, (3, 9)),
        when=at(night, 2, 14, 7), accession="SYN26001", description="CT HEAD WO CONTRAST",
        priority="STAT", modality="CT", body_part="HEAD", study_id="1001",
    )
    abdomen = _StudySpec(
        key="ct-abdomen", patient=_Patient("SYNTHETIC^ABDOMENCT", "RRDEMO-0002", "F", 24, (11, 2)),
        when=at(night, 1, 38, 41), accession="SYN26002", description="CT ABDOMEN PELVIS WITH CONTRAST",
        priority="ROUTINE", modality="CT", body_part="ABDOMEN", study_id="1002",
    )
    studies = [
        _ct_head(out / "ct_head", head),
        _ct_abdomen(out / "ct_abdomen", abdomen),
    ]
    del evening
    return studies
