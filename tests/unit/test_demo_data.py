"""Tests for cloud/demo_data.py: the demo studies are valid DICOM with the right content and geometry.

Generation runs once per module (it writes a few hundred files); each test then reads what it needs.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cloud import demo_data
from cloud.demo_data import DemoStudy, write_ct_series, write_demo_studies

NIGHT = dt.date(2026, 3, 1)  # the shift ends on 1 March: its prior falls on 1 March two years before


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> list[DemoStudy]:
    return write_demo_studies(tmp_path_factory.mktemp("demo"), night=NIGHT)


def _by_desc(demo: list[DemoStudy], word: str) -> DemoStudy:
    hits = [s for s in demo if word in s.description]
    assert len(hits) == 1, f"expected one study with {word!r}, got {[s.description for s in demo]}"
    return hits[0]


def _read_sorted(study: DemoStudy) -> list[pydicom.Dataset]:
    """Read a single-series study, sorted along the slice normal."""
    dss = [pydicom.dcmread(f) for f in study.files]
    normal = np.cross(*np.reshape(np.asarray(dss[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(dss, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _pixel_of(ds: pydicom.Dataset, lps) -> tuple[int, int]:
    """(row, col) of the pixel whose centre is nearest to a patient point lying in the slice plane."""
    ipp = np.asarray(ds.ImagePositionPatient, float)
    row_dir, col_dir = np.reshape(np.asarray(ds.ImageOrientationPatient, float), (2, 3))
    dr, dc = (float(v) for v in ds.PixelSpacing)  # row spacing, column spacing
    d = np.asarray(lps, float) - ipp
    return int(round(np.dot(d, col_dir) / dr)), int(round(np.dot(d, row_dir) / dc))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_every_object_passes_dciodvfy(demo):
    files = [f for s in demo for f in s.files]
    assert files
    failures = {}
    for f in files:
        res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=60)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        if errors:
            failures[f.name] = errors[:5]
    assert not failures, f"{len(failures)} of {len(files)} objects have dciodvfy errors: {failures}"


def test_every_object_decodes_and_matches_its_study(demo):
    for study in demo:
        assert study.files, study.description
        for f in study.files:
            ds = pydicom.dcmread(f)
            assert ds.StudyInstanceUID == study.study_uid
            assert ds.SeriesInstanceUID in study.series_uids
            assert ds.PatientID == study.patient_id
            assert ds.IssuerOfPatientID == "READROOM-DEMO"
            assert "SYNTHETIC" in str(ds.PatientName)
            assert ds.file_meta.TransferSyntaxUID == study.transfer_syntax
            assert ds.RequestedProcedurePriority == study.priority
            arr = ds.pixel_array
            assert arr.shape[-2:] == (ds.Rows, ds.Columns)


def test_exactly_one_stat_study_and_it_is_the_head_ct(demo):
    stat = [s for s in demo if s.priority == "STAT"]
    assert len(stat) == 1
    assert stat[0].modality == "CT" and stat[0].body_part == "HEAD"
    assert all(s.priority == "ROUTINE" for s in demo if s is not stat[0])


def test_ct_head_phantom_values_and_size(demo):
    head = _by_desc(demo, "CT HEAD")
    dss = _read_sorted(head)
    assert len(dss) >= 150
    assert (dss[0].Rows, dss[0].Columns) == (512, 512)
    bleed_center = demo_data.HEAD_BLEED_CENTER_LPS
    ds = next(d for d in dss if abs(float(d.ImagePositionPatient[2]) - bleed_center[2]) < 1e-3)
    hu = _hu(ds)
    r, c = _pixel_of(ds, bleed_center)
    bleed = hu[r - 4:r + 5, c - 4:c + 5].mean()
    assert 60 < bleed < 85, bleed  # acute blood
    # brain on the mirror side (patient left = +x in LPS) is normal parenchyma, darker than the bleed
    r2, c2 = _pixel_of(ds, (-bleed_center[0] + 3.0, bleed_center[1], bleed_center[2]))
    brain = hu[r2 - 4:r2 + 5, c2 - 4:c2 + 5].mean()
    assert 20 < brain < 45 and bleed - brain > 25
    # the skull is bone: walk from the image centre to the right edge along the row
    row = hu[r, :]
    assert row.max() > 1000
    assert hu[0, 0] < -900  # air outside the head


def test_ct_abdomen_is_rle_and_has_contrast_filled_aorta(demo):
    abd = _by_desc(demo, "ABDOMEN")
    assert abd.transfer_syntax == pydicom.uid.RLELossless
    dss = _read_sorted(abd)
    assert len(dss) >= 200
    known = next(k for k in abd.known_objects if k.name == "aorta")
    ds = next(d for d in dss if d.SOPInstanceUID == known.sop_instance_uid)
    hu = _hu(ds)
    r, c = _pixel_of(ds, known.center)
    assert 160 < hu[r - 3:r + 4, c - 3:c + 4].mean() < 210


def test_write_ct_series_for_benches(tmp_path):
    files = write_ct_series(tmp_path, n_slices=12, rows=128, cols=96)
    assert len(files) == 12
    ds = pydicom.dcmread(files[0])
    assert ds.pixel_array.shape == (128, 96)
    zs = sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files)
    assert np.allclose(np.diff(zs), float(ds.SliceThickness))
