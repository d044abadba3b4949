"""Orientation letters for screen edges (viewer.orientation), on unit vectors and on real series."""
from __future__ import annotations

import numpy as np
import pytest

from viewer.orientation import (
    ScreenLabels,
    direction_label,
    labels_from_patient_orientation,
    plane_name,
    screen_labels,
    volume_screen_labels,
)
from viewer.volume import load_series


@pytest.mark.parametrize("vec, label", [
    ((1, 0, 0), "L"), ((-1, 0, 0), "R"), ((0, 1, 0), "P"), ((0, -1, 0), "A"), ((0, 0, 1), "S"), ((0, 0, -1), "I"),
    ((0.8, -0.6, 0), "LA"), ((-0.6, 0.8, 0), "PR"), ((-0.6, 0.5, 0.62), "SRP"), ((0.99, 0.1, 0), "L"),
    ((0, 0, 0), ""),
])
def test_direction_label(vec, label):
    assert direction_label(vec) == label


def test_threshold_controls_small_components():
    v = (np.cos(np.radians(6)), np.sin(np.radians(6)), 0)   # 6 degrees off: named only with a low threshold
    assert direction_label(v) == "L"
    assert direction_label(v, threshold=0.1) == "LP"


def test_axial_coronal_sagittal_screen_labels():
    assert screen_labels((1, 0, 0), (0, 1, 0)) == ScreenLabels(left="R", right="L", top="A", bottom="P")
    assert screen_labels((1, 0, 0), (0, 0, -1)) == ScreenLabels(left="R", right="L", top="S", bottom="I")
    assert screen_labels((0, 1, 0), (0, 0, -1)) == ScreenLabels(left="A", right="P", top="S", bottom="I")
    assert plane_name((1, 0, 0), (0, 1, 0)) == "axial"
    assert plane_name((1, 0, 0), (0, 0, -1)) == "coronal"
    assert plane_name((0, 1, 0), (0, 0, -1)) == "sagittal"
    a = np.radians(35)
    assert plane_name((np.cos(a), np.sin(a), 0), (0, 0, -1)) == "oblique"


def test_patient_orientation_for_radiographs():
    assert labels_from_patient_orientation(["P", "F"]) == ScreenLabels(left="A", right="P", top="S", bottom="I")
    assert labels_from_patient_orientation(["L", "H"]).top == "I"
    assert labels_from_patient_orientation([]) is None


def test_real_sagittal_and_coronal_and_oblique(real_data):
    sag = load_series(real_data / "02_mr_brain_t1_sagittal_series")
    assert volume_screen_labels(sag) == ScreenLabels(left="A", right="P", top="S", bottom="I")
    cor = load_series(real_data / "16_mr_oblique_and_coronal_slices" / "GH1261.dcm")
    assert volume_screen_labels(cor) == ScreenLabels(left="R", right="L", top="S", bottom="I")
    obl = load_series(real_data / "16_mr_oblique_and_coronal_slices" / "MR2_J2KR.dcm")   # row (0.569, 0.822, 0)
    labels = volume_screen_labels(obl)
    assert labels.right == "PL" and labels.left == "AR"
    tilt = load_series(real_data / "01_ct_head_gantry_tilt_series")   # row (1,0,0), column tilted 18.5 degrees
    lab = volume_screen_labels(tilt)
    assert (lab.left, lab.right) == ("R", "L") and lab.bottom.startswith("P")


def test_projection_without_geometry_uses_patient_orientation_or_none(real_data):
    dx = load_series(real_data / "11_dx_chest_mono1_small" / "dx_image.dcm")
    po = dx.metadata["patient_orientation"]
    got = volume_screen_labels(dx)
    if po:
        assert got == labels_from_patient_orientation(po)
    else:
        assert got is None
