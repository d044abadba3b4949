"""MPR geometry under Xvfb: a point marked in axial (by a real click) lands at the right place in coronal and
sagittal; sheared (gantry-tilt) stacks reslice exactly; slab MIP/MinIP/average; oblique rotation.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")]

from viewer.qt.mpr import MprViewport, MprWidget
from viewer.qt.phantom import ct_phantom
from viewer.qt.testing import click


@pytest.fixture
def mpr(qtbot):
    w = MprWidget()
    qtbot.addWidget(w)
    w.resize(900, 900)
    w.show()
    qtbot.waitExposed(w)
    return w


def bright_centroid(view, threshold=250):
    """Display coordinates (VTK, origin bottom-left) of the centroid of the saturated pixels of the image."""
    img = view.grab_rgb().min(axis=2).astype(float)   # white only: overlay letters/lines are coloured
    h = img.shape[0]
    ys, xs = np.nonzero(img >= threshold)
    assert len(xs) > 3, "marker not visible"
    return np.array([xs.mean(), h - 1 - ys.mean()])


def show_marker_only(view):
    view.set_window_level(600, 1700)  # only the 2000 HU marker saturates; bone (1000) stays grey


def test_point_marked_in_axial_appears_in_coronal_and_sagittal(mpr):
    vol = ct_phantom(shape=(60, 200, 200), spacing=(1.5, 0.8, 0.8))
    marker = np.array(vol.metadata["marker"])
    mpr.set_volume(vol)
    ax, co, sa = (mpr.views[n] for n in ("axial", "coronal", "sagittal"))
    # bring the axial plane to the marker's height (the crosshair's position elsewhere is irrelevant)
    ax.scroll(round((marker[2] - ax.centre[2]) / ax.out_spacing))
    show_marker_only(ax)
    xy = bright_centroid(ax)
    qt = ax.display_to_qt(*xy)
    click(ax.canvas, (qt.x(), qt.y()))               # the crosshair tool, through Qt
    picked = mpr.point
    assert np.linalg.norm(picked[:2] - marker[:2]) < 1.0
    assert abs(picked[2] - marker[2]) <= ax.out_spacing
    for view in (co, sa):
        assert view.distance_from_plane(picked) < 1e-6   # the plane passes through the picked point
        show_marker_only(view)
        seen = bright_centroid(view)
        found = view.display_to_patient(*seen)
        assert np.linalg.norm(found - marker) < 1.5, (view.orientation, found, marker)
        # the crosshair is drawn where the marker is
        assert np.linalg.norm(view.patient_to_display(picked) - seen) < 4.0


def test_sheared_gantry_tilt_stack_reslices_at_true_patient_positions(qtbot):
    vol = ct_phantom(shape=(40, 96, 96), spacing=(2.5, 1.0, 1.0))
    vol.voxels[:] = 0
    tilt = np.radians(18.5)
    vol.slice_direction = np.array([0.0, np.sin(tilt), np.cos(tilt)])  # sheared: not perpendicular to rows/cols
    k0, j0, i0 = 30, 20, 60
    vol.voxels[k0 - 1:k0 + 2, j0 - 2:j0 + 3, i0 - 2:i0 + 3] = 3000
    truth = vol.index_to_patient(k0, j0, i0)
    view = MprViewport(orientation="sagittal")
    qtbot.addWidget(view)
    view.resize(500, 500)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(vol, centre=truth)
    view.set_window_level(600, 2700)
    found = view.display_to_patient(*bright_centroid(view))
    assert np.linalg.norm(found - truth) < 1.5
    # an unsheared reading (index * spacing along the normal) would be off by several millimetres
    naive = vol.origin + np.array([i0 * 1.0, j0 * 1.0, k0 * 2.5])
    assert np.linalg.norm(naive - truth) > 5


def test_slab_modes(mpr):
    vol = ct_phantom(shape=(60, 128, 128), spacing=(1.0, 1.0, 1.0))
    marker = np.array(vol.metadata["marker"])
    mpr.set_volume(vol)
    ax = mpr.views["axial"]
    mpr.set_crosshair(marker + np.array([0, 0, 6.0]))  # 6 mm above the 3 mm-radius marker: not in the thin plane
    ax.set_window_level(600, 1700)
    thin_value = ax.reslice.GetOutput().GetScalarRange()[1]
    assert thin_value < 2000
    ax.set_slab(16.0, "mip")
    ax.reslice.Update()
    assert ax.reslice.GetOutput().GetScalarRange()[1] == pytest.approx(2000, abs=1)
    assert "MIP" in ax.corner_texts()[0]
    ax.set_slab(16.0, "minip")
    ax.reslice.Update()
    low = ax.reslice.GetOutput().GetScalarRange()
    ax.set_slab(16.0, "average")
    ax.reslice.Update()
    avg = ax.reslice.GetOutput().GetScalarRange()
    assert low[1] <= avg[1] < 2000
    with pytest.raises(ValueError):
        ax.set_slab(5.0, "median")


def test_oblique_rotation_keeps_crosshair_and_updates_letters(mpr):
    vol = ct_phantom(shape=(60, 128, 128), spacing=(1.0, 1.0, 1.0))
    marker = np.array(vol.metadata["marker"])
    mpr.set_volume(vol)
    mpr.set_crosshair(marker)
    mpr.rotate_oblique("axial", 40.0)
    co = mpr.views["coronal"]
    assert co.orientation == "oblique"
    assert co.letters["right"] == "LP"            # the coronal plane turned 40 degrees about S
    assert co.distance_from_plane(marker) < 1e-6
    show_marker_only(co)
    found = co.display_to_patient(*bright_centroid(co))
    assert np.linalg.norm(found - marker) < 1.5
    # axial untouched, and the crosshair traces in it follow the rotated planes
    ax = mpr.views["axial"]
    assert ax.letters["right"] == "L"
    d = ax.crosshair_dirs[0]
    assert abs(np.degrees(np.arccos(abs(d @ np.array([1.0, 0, 0]))))) in (pytest.approx(40, abs=0.1),
                                                                          pytest.approx(50, abs=0.1))


def test_ctrl_drag_rotates_and_keys_change_the_slab(mpr, qtbot):
    from PySide6.QtCore import Qt

    from viewer.qt.testing import drag

    vol = ct_phantom(shape=(40, 96, 96), spacing=(1.0, 1.0, 1.0))
    mpr.set_volume(vol)
    ax, co = mpr.views["axial"], mpr.views["coronal"]
    c = ax.display_to_qt(*ax.patient_to_display(mpr.point))
    # a quarter circle around the crosshair, counter-clockwise on screen, holding Ctrl
    start, end = (c.x() + 100, c.y()), (c.x(), c.y() - 100)
    drag(ax.canvas, start, end, steps=12, modifiers=Qt.ControlModifier)
    turned = np.degrees(np.arccos(abs(co.ex @ np.array([1.0, 0, 0]))))
    assert turned == pytest.approx(90.0, abs=1.0)
    assert co.orientation == "sagittal"          # a coronal plane turned 90 degrees about S is sagittal
    assert ax.orientation == "axial" and co.distance_from_plane(mpr.point) < 1e-6
    for _ in range(3):
        qtbot.keyClick(co.canvas, Qt.Key_BracketRight)
    assert all(v.slab_mm == 6.0 and v.slab_mode == "mip" for v in mpr.views.values())
    qtbot.keyClick(co.canvas, Qt.Key_M)
    assert all(v.slab_mode == "minip" for v in mpr.views.values())


def test_window_level_is_linked_across_the_three_views(mpr):
    mpr.set_volume(ct_phantom(shape=(20, 64, 64)))
    mpr.views["coronal"].set_window_level(1500, -600)
    assert all((v.window, v.level) == (1500, -600) for v in mpr.views.values())


def test_series_without_3d_geometry_are_refused_in_words(mpr):
    from viewer.qt.mpr import NotReformattable

    colour = ct_phantom(shape=(4, 16, 16))
    colour.voxels = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(NotReformattable, match="colour"):
        mpr.set_volume(colour)
    xr = ct_phantom(shape=(1, 16, 16))
    xr.metadata["kind"] = "projection"
    with pytest.raises(NotReformattable, match="projection"):
        mpr.set_volume(xr)
