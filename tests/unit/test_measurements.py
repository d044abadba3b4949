"""Measurement maths with known answers (viewer.measurements): lengths, angles, Cobb, ROI statistics, probe."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewer.measurements import (
    Angle,
    Arrow,
    CobbAngle,
    EllipseROI,
    FreehandROI,
    KeyImage,
    Length,
    MeasurementError,
    PixelProbe,
    TextNote,
    image_to_patient,
    locate,
)
from viewer.synthetic import axial_positions, make_slice_series
from viewer.volume import load_series


@pytest.fixture(scope="module")
def phantom():
    """CT, 64x64 pixels of 0.5 mm, 5 slices 2 mm apart: HU = 10 * column index, except a 100 HU disc
    of radius 8 mm centred at pixel (32, 32) on slice 2."""
    def values(n, jj, ii):
        v = 10 * ii + 1024
        if n == 2:
            disc = (ii - 32) ** 2 + (jj - 32) ** 2 <= 16 ** 2
            v = np.where(disc, 100 + 1024, v)
        return v
    return load_series(make_slice_series(axial_positions(5, step=2.0, start=(-10, -20, 30)), rows=64, cols=64,
                                         pixel_spacing=(0.5, 0.5), values=values))


def test_length_in_patient_mm_and_reference(phantom):
    a = phantom.index_to_patient(1, 10, 10)
    b = phantom.index_to_patient(1, 10 + 30, 10 + 40)          # 30 rows, 40 columns at 0.5 mm -> 15, 20 mm
    m = Length.from_volume(phantom, [a, b])
    assert m.value == pytest.approx(25.0)
    assert m.label() == "25.0 mm"
    assert m.sop_instance_uid == phantom.metadata["slice_refs"][1][0]
    assert m.frame_number is None
    assert m.image_points == [(10.5, 10.5), (50.5, 40.5)]
    assert m.calibration == "patient"
    # image points map back to the same patient points
    np.testing.assert_allclose(image_to_patient(phantom, 1, m.image_points[1]), b, atol=1e-9)


def test_length_through_slices_is_3d():
    m = Length(points=[(0, 0, 0), (3, 4, 12)])
    assert m.value == pytest.approx(13.0)


def test_calibration_labels():
    assert Length(points=[(0, 0, 0), (10, 0, 0)], calibration="detector").label() == "10.0 mm (detector)"
    assert Length(points=[(0, 0, 0), (10, 0, 0)], calibration="uncalibrated").label() == "10.0 px (uncalibrated)"
    with pytest.raises(MeasurementError):
        Length(points=[(0, 0, 0), (10, 0, 0)], calibration="guess")


def test_angles():
    assert Angle(points=[(10, 0, 0), (0, 0, 0), (0, 10, 0)]).value == pytest.approx(90.0)
    assert Angle(points=[(1, 0, 0), (0, 0, 0), (-1, 1, 0)]).value == pytest.approx(135.0)
    assert Angle(points=[(1, 0, 0), (0, 0, 0), (1, 0, 0)]).value == pytest.approx(0.0)
    with pytest.raises(MeasurementError):
        _ = Angle(points=[(0, 0, 0), (0, 0, 0), (1, 0, 0)]).value


def test_cobb_angle_is_between_lines_regardless_of_direction():
    def line(deg, length=40.0, origin=(0.0, 0.0)):
        r = math.radians(deg)
        return [(origin[0], origin[1], 0.0), (origin[0] + length * math.cos(r), origin[1] + length * math.sin(r), 0.0)]
    assert CobbAngle(points=line(10) + line(40, origin=(0, 80))).value == pytest.approx(30.0)
    # drawing the second line the other way round gives the same Cobb angle
    l2 = line(40, origin=(0, 80))
    assert CobbAngle(points=line(10) + l2[::-1]).value == pytest.approx(30.0)
    assert CobbAngle(points=line(-25) + line(25)).value == pytest.approx(50.0)
    with pytest.raises(MeasurementError):
        CobbAngle(points=line(10))


def test_ellipse_roi_on_uniform_disc(phantom):
    c = phantom.index_to_patient(2, 32, 32)
    row = np.asarray(phantom.row_direction)
    col = np.asarray(phantom.column_direction)
    pts = [c - 5 * row, c + 5 * row, c - 3 * col, c + 3 * col]     # semi-axes 5 mm and 3 mm inside the disc
    roi = EllipseROI.from_volume(phantom, pts)
    assert roi.area == pytest.approx(math.pi * 15)
    assert roi.stats.mean == pytest.approx(100.0) and roi.stats.sd == pytest.approx(0.0)
    assert roi.stats.min == roi.stats.max == 100.0
    assert roi.stats.units == "HU"
    # pixel count ~ area / pixel area (0.25 mm2)
    assert roi.stats.pixel_count == pytest.approx(roi.area / 0.25, rel=0.08)
    assert "Mean 100.0 HU" in roi.label()


def test_ellipse_from_bounding_box_corners(phantom):
    a = phantom.index_to_patient(1, 20, 10)
    b = phantom.index_to_patient(1, 40, 50)                  # 20 mm wide, 10 mm high
    roi = EllipseROI.from_volume(phantom, [a, b])
    assert sorted(roi.semi_axes) == pytest.approx([5.0, 10.0])
    # the HU ramp (10 per column) is symmetric about the centre column 30 -> mean 300 HU
    assert roi.stats.mean == pytest.approx(300.0, abs=1e-6)
    assert roi.stats.min == pytest.approx(300.0 - 190.0, abs=10) and roi.stats.max <= 500.0


def test_freehand_square_roi(phantom):
    corners = [(0, 0), (0, 20), (20, 20), (20, 0)]             # (row, col) offsets in pixels -> 10 x 10 mm
    pts = [phantom.index_to_patient(3, 10 + r, 10 + c) for r, c in corners]
    roi = FreehandROI.from_volume(phantom, pts)
    assert roi.area == pytest.approx(100.0)
    # pixel centres strictly inside/on the square edge rule: columns 10..29 or 11..30 -> ramp mean 195..205
    assert roi.stats.mean == pytest.approx(200.0, abs=10.0)
    assert roi.stats.sd == pytest.approx(np.std(np.arange(20) * 10.0), rel=0.1)
    assert roi.stats.pixel_count == pytest.approx(400, rel=0.1)


def test_roi_on_an_oblique_plane_is_sampled():
    # a triangle spanning slices 1..3 (an MPR/oblique plane); HU = 10 * column: linear, so trilinear samples are
    # exact and the mean is the ramp at the centroid of the sample points (~ the triangle centroid)
    ramp = load_series(make_slice_series(axial_positions(5, step=2.0), rows=64, cols=64,
                                         values=lambda n, jj, ii: 10 * ii + 1024))
    pts = [ramp.index_to_patient(1, 10, 10), ramp.index_to_patient(3, 10, 40), ramp.index_to_patient(3, 40, 40)]
    roi = FreehandROI.from_volume(ramp, pts)
    assert roi.sop_instance_uid is None and roi.image_points is None       # not on an acquired image
    centroid_col = (10 + 40 + 40) / 3
    assert roi.stats.mean == pytest.approx(10 * centroid_col, abs=10)
    assert roi.stats.min >= 100 - 1e-6 and roi.stats.max <= 400 + 1e-6
    assert roi.stats.pixel_count > 100


def test_coronal_ellipse_inside_uniform_column():
    # 10 slices 1 mm apart, every slice 70 HU: a coronal ellipse through them reads exactly 70 HU
    vol = load_series(make_slice_series(axial_positions(10, step=1.0), rows=32, cols=32,
                                        values=lambda n, jj, ii: np.full(jj.shape, 70 + 1024)))
    c = vol.index_to_patient(4.5, 16, 16)
    pts = [c - (3, 0, 0), c + (3, 0, 0), c - (0, 0, 2), c + (0, 0, 2)]
    roi = EllipseROI.from_volume(vol, pts)
    assert roi.stats.mean == pytest.approx(70.0) and roi.stats.sd == pytest.approx(0.0, abs=1e-9)
    assert roi.area == pytest.approx(math.pi * 6)


def test_non_planar_freehand_is_refused(phantom):
    pts = [phantom.index_to_patient(0, 0, 0), phantom.index_to_patient(0, 0, 60),
           phantom.index_to_patient(4, 60, 60), phantom.index_to_patient(0, 60, 0)]
    with pytest.raises(MeasurementError, match="one plane"):
        FreehandROI.from_volume(phantom, pts)


def test_pixel_probe_and_annotations(phantom):
    p = phantom.index_to_patient(4, 7, 13)
    probe = PixelProbe.at(phantom, p)
    assert probe.value == 130.0 and probe.units == "HU"
    assert probe.label() == "130.0 HU"
    arrow = Arrow.from_volume(phantom, [p, phantom.index_to_patient(4, 20, 20)], text="lesion")
    assert arrow.sop_instance_uid == phantom.metadata["slice_refs"][4][0]
    note = TextNote(points=[p], text="see prior")
    assert note.label() == "see prior"
    key = KeyImage.from_volume(phantom, 2, note="disc")
    assert key.sop_instance_uid == phantom.metadata["slice_refs"][2][0] and key.note == "disc"


def test_locate_off_slice_has_no_reference(phantom):
    mid = phantom.index_to_patient(1.5, 10, 10)
    ref = locate(phantom, [mid])
    assert "sop_instance_uid" not in ref and "image_points" not in ref


def test_uncalibrated_radiograph_lengths_in_pixels(real_data):
    vol = load_series(real_data / "09_cr_extremity_mono1" / "RG3_J2KR.dcm")
    a, b = vol.index_to_patient(0, 100, 100), vol.index_to_patient(0, 100, 400)
    m = Length.from_volume(vol, [a, b])
    assert m.calibration == "uncalibrated" and m.value == pytest.approx(300.0)
    assert m.label() == "300.0 px (uncalibrated)"


def test_detector_calibrated_mammogram(real_data):
    vol = load_series(real_data / "12_mg_voi_lut_sequence" / "GH133.dcm")
    a, b = vol.index_to_patient(0, 0, 0), vol.index_to_patient(0, 0, 1000)
    m = Length.from_volume(vol, [a, b])
    assert m.calibration == "detector"
    assert m.value == pytest.approx(1000 * 0.09409090909091, rel=1e-6)
    assert m.label().endswith("mm (detector)")
