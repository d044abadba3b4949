"""The demo's known-size objects, measured from the DICOM headers alone.

cloud/demo_data.py documents objects of exact size (the head CT's bleed sphere, the abdomen CT's aorta, the
wrist's calibration ball, the gallstone on ultrasound). Here each is found and measured using nothing but
the header geometry (Image Position/Orientation (Patient), Pixel Spacing, Imager Pixel Spacing, the
ultrasound region calibration) and the pixels: an edge-to-edge length at half contrast must match the
documented diameter within 0.5 mm, which is what the viewer's measurement tools are held to.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from cloud import demo_data
from cloud.demo_data import DemoStudy, KnownObject

TOLERANCE_MM = 0.5


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, DemoStudy]:
    """Demo studies by the first two words of their description ("CT HEAD", "XR WRIST"...)."""
    from tests.unit.test_demo_data import generated_demo  # written once per session, shared

    studies = [s for s in generated_demo(tmp_path_factory) if s.study_date >= "2026"]  # not the prior
    return {" ".join(s.description.split()[:2]): s for s in studies}


def _known(study: DemoStudy, name: str) -> tuple[KnownObject, pydicom.Dataset, list[pydicom.Dataset]]:
    obj = next(k for k in study.known_objects if k.name == name)
    dss = [pydicom.dcmread(f) for f in study.files]
    target = next(d for d in dss if d.SOPInstanceUID == obj.sop_instance_uid)
    assert target.SeriesInstanceUID == obj.series_uid
    return obj, target, dss


def _plane(ds: pydicom.Dataset):
    ipp = np.asarray(ds.ImagePositionPatient, float)
    row_dir, col_dir = np.reshape(np.asarray(ds.ImageOrientationPatient, float), (2, 3))
    dr, dc = (float(v) for v in ds.PixelSpacing)  # between rows, between columns
    return ipp, row_dir, col_dir, dr, dc


def _patient_to_pixel(ds: pydicom.Dataset, lps) -> tuple[float, float, float]:
    """(row, col, distance from the plane in mm) of a patient point, from the header alone."""
    ipp, row_dir, col_dir, dr, dc = _plane(ds)
    d = np.asarray(lps, float) - ipp
    normal = np.cross(row_dir, col_dir)
    return float(d @ col_dir / dr), float(d @ row_dir / dc), float(d @ normal)


def _crossings(profile: np.ndarray, centre: float, level: float) -> tuple[float, float]:
    """Sub-pixel positions where a profile falls through ``level`` on either side of ``centre``."""
    i = round(centre)
    assert profile[i] > level, "the profile's centre is not inside the object"

    def walk(step: int) -> float:
        j = i
        while profile[j + step] > level:
            j += step
        a, b = profile[j], profile[j + step]
        return j + step * (a - level) / (a - b)

    return walk(-1), walk(+1)


def _diameter_px(img: np.ndarray, r: float, c: float, inside: float, outside: float) -> tuple[float, float]:
    """Edge-to-edge widths (pixels) along the row and the column through (r, c), averaged over 3 lines."""
    level = (inside + outside) / 2
    ri, ci = round(r), round(c)
    row_profile = img[ri - 1 : ri + 2, :].mean(axis=0)
    col_profile = img[:, ci - 1 : ci + 2].mean(axis=1)
    a, b = _crossings(row_profile, c, level)
    e, f = _crossings(col_profile, r, level)
    return b - a, f - e


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_head_bleed_sphere_diameter_from_headers(demo):
    obj, ds, dss = _known(demo["CT HEAD"], "haemorrhage")
    assert obj.diameter_mm == demo_data.HEAD_BLEED_DIAMETER_MM
    r, c, off_plane = _patient_to_pixel(ds, obj.center)
    assert abs(off_plane) < 1e-3  # the named slice passes through the centre
    hu = _hu(ds)
    wr, wc = _diameter_px(hu, r, c, inside=72.0, outside=20.0)  # blood vs surrounding oedema
    _, _, _, dr, dc = _plane(ds)
    assert abs(wr * dc - obj.diameter_mm) < TOLERANCE_MM, wr * dc
    assert abs(wc * dr - obj.diameter_mm) < TOLERANCE_MM, wc * dr
    # along the slice normal: the slices whose plane cuts the sphere show blood at its projected centre,
    # the others do not; their extent (from IPP) matches the diameter within one slice spacing
    showing = []
    for d in dss:
        rr, cc, dist = _patient_to_pixel(d, obj.center)
        if abs(dist) > 1.5 * obj.diameter_mm:
            continue  # far away the line through the centre meets skull and scalp instead
        value = _hu(d)[round(rr) - 1 : round(rr) + 2, round(cc) - 1 : round(cc) + 2].mean()
        if value > 46:
            showing.append(dist)
        elif abs(dist) < obj.diameter_mm / 2 - 1.0:
            pytest.fail(f"slice {dist:+.1f} mm from the centre should show the bleed (HU {value:.0f})")
    spacing = float(ds.SliceThickness)
    extent = max(showing) - min(showing)
    assert obj.diameter_mm - 2 * spacing <= extent <= obj.diameter_mm


def test_abdomen_aorta_cylinder_diameter_from_headers(demo):
    obj, ds, _ = _known(demo["CT ABDOMEN"], "aorta")
    r, c, off_plane = _patient_to_pixel(ds, obj.center)
    assert abs(off_plane) < 1e-3
    hu = _hu(ds)
    _, _, _, dr, dc = _plane(ds)
    # the aorta lies in retroperitoneal fat: measure its wall against the fat just outside it
    ring = obj.diameter_mm / 2 + 2.0
    outside = float(
        np.median(
            [
                hu[round(r + dy * ring / dr), round(c + dx * ring / dc)]
                for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))
            ]
        )
    )
    assert outside < -50  # fat
    wr, wc = _diameter_px(hu, r, c, inside=185.0, outside=outside)
    assert abs(wr * dc - obj.diameter_mm) < TOLERANCE_MM, wr * dc
    assert abs(wc * dr - obj.diameter_mm) < TOLERANCE_MM, wc * dr


def test_wrist_calibration_ball_from_imager_pixel_spacing(demo):
    obj, ds, _ = _known(demo["XR WRIST"], "calibration ball")
    assert obj.diameter_mm == demo_data.WRIST_BALL_DIAMETER_MM
    assert "PixelSpacing" not in ds  # uncalibrated: the detector-plane spacing is the one to use
    dr, dc = (float(v) for v in ds.ImagerPixelSpacing)
    img = ds.pixel_array.astype(np.float64)
    r, c = obj.center
    background = img[round(r), round(c + 1.2 * obj.diameter_mm / dc)]
    wr, wc = _diameter_px(img, r, c, inside=float(img[round(r), round(c)]), outside=float(background))
    assert abs(wr * dc - obj.diameter_mm) < TOLERANCE_MM, wr * dc
    assert abs(wc * dr - obj.diameter_mm) < TOLERANCE_MM, wc * dr


def test_gallstone_from_ultrasound_region_calibration(demo):
    obj, ds, _ = _known(demo["US ABDOMEN"], "gallstone")
    region = ds.SequenceOfUltrasoundRegions[0]
    assert region.PhysicalUnitsXDirection == 3 and region.PhysicalUnitsYDirection == 3  # cm
    r, c = obj.center
    assert region.RegionLocationMinX0 <= c <= region.RegionLocationMaxX1
    assert region.RegionLocationMinY0 <= r <= region.RegionLocationMaxY1
    dx_mm = float(region.PhysicalDeltaX) * 10
    dy_mm = float(region.PhysicalDeltaY) * 10
    frame = ds.pixel_array[0].astype(np.float64)
    wr, wc = _diameter_px(
        frame, r, c, inside=float(np.median(frame[round(r) - 3 : round(r) + 4, round(c)])), outside=0.0
    )
    assert abs(wr * dx_mm - obj.diameter_mm) < TOLERANCE_MM, wr * dx_mm
    assert abs(wc * dy_mm - obj.diameter_mm) < TOLERANCE_MM, wc * dy_mm


def _outer_width(profile: np.ndarray, centre: float, level: float, reach: int) -> float:
    """Width (pixels) between the outermost crossings of ``level`` within ``reach`` of ``centre``."""
    i = round(centre)
    above = np.flatnonzero(profile[i - reach : i + reach + 1] > level) + i - reach
    first, last = int(above[0]), int(above[-1])
    left = first - (profile[first] - level) / (profile[first] - profile[first - 1])
    right = last + (profile[last] - level) / (profile[last] - profile[last + 1])
    return right - left


def test_appendix_outer_diameter_from_headers(demo):
    obj, ds, _ = _known(demo["CT ABDOMEN"], "appendix")
    assert obj.diameter_mm > 6.0  # the CT criterion for appendicitis
    r, c, off_plane = _patient_to_pixel(ds, obj.center)
    assert abs(off_plane) < 1e-3
    hu = _hu(ds)
    _, _, _, dr, dc = _plane(ds)
    assert hu[round(r), round(c)] < 60  # fluid-filled lumen in the middle
    level = (120.0 + -25.0) / 2  # enhancing wall against the stranded fat around it
    reach = round(obj.diameter_mm / dc)
    rows = hu[round(r) - 1 : round(r) + 2, :].mean(axis=0)
    cols = hu[:, round(c) - 1 : round(c) + 2].mean(axis=1)
    assert abs(_outer_width(rows, c, level, reach) * dc - obj.diameter_mm) < TOLERANCE_MM
    assert abs(_outer_width(cols, r, level, reach) * dr - obj.diameter_mm) < TOLERANCE_MM
