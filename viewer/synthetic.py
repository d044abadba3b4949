"""Synthetic DICOM series with known geometry and values (phantoms for tests, benches and the QA mode).

Owns small, exact generators: a stack of CT/MR slices at given positions and orientation, whose stored pixel
values follow a formula the caller chooses, so that geometry and values can be checked after loading.
Names are synthetic ("SYNTHETIC^PHANTOM"); nothing here is patient data.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)


def _fmt(v: float) -> str:
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"


def make_slice_series(
    positions: Sequence[Sequence[float]],
    *,
    rows: int = 16,
    cols: int = 16,
    pixel_spacing: tuple[float, float] = (0.5, 0.5),
    iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
    modality: str = "CT",
    values: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
    slope: float = 1.0,
    intercept: float = -1024.0,
    signed: bool = True,
    patient_position: str = "HFS",
    study_uid: str | None = None,
    series_uid: str | None = None,
    slice_thickness: float | None = None,
    extra: dict | None = None,
) -> list[Dataset]:
    """One single-frame instance per entry of ``positions`` (Image Position (Patient), mm), in the given order.

    ``values(n, jj, ii)`` returns the *stored* values of instance n on the (rows, cols) index grids jj, ii;
    the default puts ``100 * n + i`` in each slice. Instance numbers follow the list order.
    """
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    for_uid = generate_uid()
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    jj, ii = np.mgrid[0:rows, 0:cols]
    out = []
    for n, pos in enumerate(positions):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        sop_uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.PatientName = "SYNTHETIC^PHANTOM"
        ds.PatientID = "SYN-0001"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = "SYN1"
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.Modality = modality
        ds.Manufacturer = "ReadRoom synthetic"
        ds.InstanceNumber = n + 1
        ds.PatientPosition = patient_position
        ds.ImagePositionPatient = [_fmt(float(v)) for v in pos]
        ds.ImageOrientationPatient = [_fmt(float(v)) for v in iop]
        ds.PixelSpacing = [_fmt(pixel_spacing[0]), _fmt(pixel_spacing[1])]
        if slice_thickness is not None:
            ds.SliceThickness = _fmt(slice_thickness)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        if modality == "CT" or slope != 1.0 or intercept != 0.0:
            ds.RescaleSlope = _fmt(slope)
            ds.RescaleIntercept = _fmt(intercept)
            ds.RescaleType = "HU" if modality == "CT" else "US"
        if modality == "CT":
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.KVP = "120"
            ds.AcquisitionNumber = 1
        arr = values(n, jj, ii) if values is not None else 100 * n + ii
        arr = np.asarray(arr).astype(np.int16 if signed else np.uint16)
        ds.PixelData = arr.tobytes()
        for k, v in (extra or {}).items():
            setattr(ds, k, v)
        out.append(ds)
    return out


def axial_positions(n: int, step: float = 2.0, start=(0.0, 0.0, 0.0)) -> list[tuple[float, float, float]]:
    return [(start[0], start[1], start[2] + k * step) for k in range(n)]
