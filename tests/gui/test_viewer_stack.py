"""Stack viewport rendering under Xvfb: zero-copy sharing, window/level pixels, orientation letters, camera
operations, progressive display, gestures, calibration label.

Run: xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python -m pytest tests/gui/test_viewer_stack.py
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")]

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from viewer.qt.phantom import ct_phantom
from viewer.qt.testing import drag, shown_stack_view
from viewer.qt.vtk_bridge import buffer_address, volume_to_vtk_image


@pytest.fixture
def view(qtbot):
    return shown_stack_view(qtbot, 600)


def pixel_at(view, patient_point) -> np.ndarray:
    """RGB of the screen pixel where ``patient_point`` is drawn (through the view's own conversion)."""
    img = view.grab_rgb()
    x, y = view.patient_to_display(patient_point)
    return img[img.shape[0] - 1 - round(y), round(x)].astype(int)


def expected_grey(value: float, window: float, level: float) -> float:
    return float(np.clip((value - (level - window / 2)) / window, 0, 1) * 255)


def test_numpy_voxels_shared_with_vtk_without_copy(view):
    vol = ct_phantom(shape=(8, 64, 64))
    shared = volume_to_vtk_image(vol)
    assert shared.zero_copy
    assert buffer_address(shared.image) == vol.voxels.ctypes.data
    view.set_volume(vol, shared=shared)
    # the renderer reads the same memory: writing into the numpy array changes what VTK sees
    vol.voxels[view.k, 32, 32] = 1234
    scalars = shared.image.GetPointData().GetScalars()
    assert scalars.GetTuple1(view.k * 64 * 64 + 32 * 64 + 32) == 1234
    assert buffer_address(view.mapper.GetInput()) == vol.voxels.ctypes.data


def test_non_contiguous_voxels_are_copied_and_say_so():
    vol = ct_phantom(shape=(8, 32, 32))
    vol.voxels = vol.voxels[:, :, ::-1]
    shared = volume_to_vtk_image(vol)
    assert not shared.zero_copy
    assert shared.image.GetPointData().GetScalars().GetTuple1(5) == vol.voxels.reshape(-1)[5]


def test_window_level_changes_pixels_as_predicted(view):
    vol = ct_phantom()
    view.set_volume(vol)
    centre = vol.index_to_patient(view.k, 127.5, 127.5)           # inside the bone block (1000 HU)
    tissue = vol.index_to_patient(view.k, 127.5, 127.5 + 40 / 0.7)  # soft tissue (40 HU), 40 mm to the left
    air = vol.index_to_patient(view.k, 40, 10)                      # outside the body: air (-1000 HU)
    for window, level in ((400, 40), (2000, 500), (100, 20)):
        view.set_window_level(window, level)
        for point, value in ((centre, 1000), (tissue, 40), (air, -1000)):
            got = pixel_at(view, point)
            assert abs(got[0] - expected_grey(value, window, level)) <= 3, (window, level, value, got)
            assert got[0] == got[1] == got[2]  # grey
    view.set_inverted(True)
    view.set_window_level(2000, 500)
    assert abs(pixel_at(view, tissue)[0] - (255 - expected_grey(40, 2000, 500))) <= 3


def test_right_drag_changes_window_level_and_presets_apply(view, qtbot):
    vol = ct_phantom(shape=(8, 64, 64))
    view.set_volume(vol)
    view.apply_preset("bone")
    assert (view.window, view.level) == (1800.0, 400.0)
    w0, l0 = view.window, view.level
    c = view.canvas
    drag(c, (300, 300), (340, 330), button=Qt.RightButton)
    assert view.window > w0      # dragged right: wider
    assert view.level > l0       # dragged down: higher level
    view.apply_preset("ct_lung")
    assert (view.window, view.level) == (1500.0, -600.0)


@pytest.mark.parametrize("orientation, letters", [
    ("axial", {"left": "R", "right": "L", "top": "A", "bottom": "P"}),
    ("coronal", {"left": "R", "right": "L", "top": "S", "bottom": "I"}),
    ("sagittal", {"left": "A", "right": "P", "top": "S", "bottom": "I"}),
])
def test_orientation_letters_from_geometry(view, orientation, letters):
    view.set_volume(ct_phantom(shape=(8, 64, 64), orientation=orientation))
    assert view.letters == letters
    assert {s: view.overlays.letters[s].GetInput() for s in letters} == letters


def test_rotate_and_flip_keep_letters_true(view):
    vol = ct_phantom(shape=(8, 64, 64))
    view.set_volume(vol)
    marker_left = vol.index_to_patient(view.k, 32, 60)   # a point on the patient's left (+x)
    x_before = view.patient_to_display(marker_left)[0]
    view.flip(horizontal=True)
    assert view.letters == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    assert view.patient_to_display(marker_left)[0] < x_before  # the patient's left moved to screen left
    view.flip(horizontal=True)
    view.rotate(1)  # clockwise: anterior (top) goes to the right
    assert view.letters == {"left": "P", "right": "A", "top": "R", "bottom": "L"}


def test_oblique_stack_gets_two_letter_labels(view):
    vol = ct_phantom(shape=(8, 64, 64))
    a = np.radians(30)
    vol.row_direction = np.array([np.cos(a), np.sin(a), 0.0])
    vol.column_direction = np.array([-np.sin(a), np.cos(a), 0.0])
    view.set_volume(vol)
    assert view.letters["right"] == "LP" and view.letters["left"] == "RA"


def test_zoom_pan_fit_one_to_one(view):
    vol = ct_phantom(shape=(8, 128, 128), spacing=(2.0, 0.5, 0.5))
    view.set_volume(vol)
    fitted = view.zoom
    assert fitted == pytest.approx(600 / 128 / 1.02, rel=0.03)
    view.one_to_one()
    assert view.zoom == pytest.approx(1.0)
    p = vol.index_to_patient(view.k, 64, 64)
    before = view.patient_to_display(p)
    view.pan(25, -10)
    after = view.patient_to_display(p)
    assert after - before == pytest.approx([25, -10], abs=0.01)
    view.zoom_by(2.0)
    assert view.zoom == pytest.approx(2.0)
    view.fit()
    assert view.zoom == pytest.approx(fitted)


def test_scroll_by_wheel_keys_drag_and_page(view, qtbot):
    vol = ct_phantom(shape=(40, 64, 64))
    view.set_volume(vol)
    view.set_slice(10)
    c = view.canvas
    ev = QWheelEvent(QPointF(100, 100), QPointF(100, 100), QPoint(0, 0), QPoint(0, -120), Qt.NoButton,
                     Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(c, ev)
    assert view.k == 11
    qtbot.keyClick(c, Qt.Key_Down)
    assert view.k == 12
    qtbot.keyClick(c, Qt.Key_PageDown)
    assert view.k == 16
    qtbot.keyClick(c, Qt.Key_End)
    assert view.k == 39
    qtbot.keyClick(c, Qt.Key_Home)
    assert view.k == 0
    drag(c, (200, 200), (200, 240))
    assert view.k == 10  # 40 px down at 4 px per slice
    # the displayed plane follows the slice
    assert view.slice_position()[2] == pytest.approx(vol.index_to_patient(10, 0, 0)[2])


def test_progressive_display_shows_slices_as_they_arrive(view):
    final = ct_phantom(shape=(12, 64, 64))
    vol = ct_phantom(shape=(12, 64, 64))
    vol.voxels[:] = 0
    view.set_volume(vol, arrived=set())
    assert view.overlays.notice.GetVisibility()
    vol.voxels[5] = final.voxels[5]
    view.slice_arrived(5)
    assert view.k == 5 and not view.overlays.notice.GetVisibility()
    view.set_window_level(400, 40)
    centre = vol.index_to_patient(5, 31.5, 31.5)
    assert pixel_at(view, centre)[0] == 255   # bone block is there
    view.set_slice(6)                          # not arrived yet: "loading" notice, no stale image
    assert view.overlays.notice.GetVisibility()
    assert "loading" in view.overlays.notice.GetInput()
    vol.voxels[6] = final.voxels[6]
    view.slice_arrived(6)
    assert not view.overlays.notice.GetVisibility()
    assert pixel_at(view, vol.index_to_patient(6, 31.5, 31.5))[0] == 255


def test_cine_plays_at_set_frame_rate(view, qtbot):
    vol = ct_phantom(shape=(30, 32, 32))
    view.set_volume(vol)
    view.set_slice(0)
    view.play(fps=50)
    assert view._cine.interval() == 20
    qtbot.wait(500)
    view.stop()
    assert 1 <= view.k <= 27  # ~25 frames at 50 fps; fewer on a loaded machine, never more
    assert not view.playing
    k = view.k
    qtbot.wait(100)
    assert view.k == k        # stopped
    view.play()
    view.set_frame_rate(5)
    assert view.fps == 5 and view._cine.interval() == 200
    assert "Cine 5 fps" in view.corner_texts()[1]
    view.stop()


def test_corner_text_scale_bar_and_calibration_label(view):
    vol = ct_phantom(shape=(8, 64, 64))
    view.set_volume(vol)
    texts = view.corner_texts()
    assert "SYNTHETIC^PHANTOM" in texts[2]
    assert "W " in texts[1] and "Zoom" in texts[1]
    assert "Im 5/8" in texts[0]
    assert "Loc S 1.0 mm" in texts[0]           # slice 5 of 8 at z = +1.0 mm (superior)
    view.set_slice(0)
    assert "Loc I 7.0 mm" in view.corner_texts()[0]   # z = (0 - 3.5) * 2 mm
    assert view.overlays.bar.GetVisibility() and view.overlays.bar_mm > 0
    # the bar is as long on screen as its label says
    p0 = view.overlays._bar_pts.GetPoint(1)
    p1 = view.overlays._bar_pts.GetPoint(2)
    assert (p1[0] - p0[0]) * view.pixel_mm() == pytest.approx(view.overlays.bar_mm, rel=1e-6)
    vol.metadata["calibration"] = "detector"
    view.set_volume(vol)
    assert "calibrated to detector" in view.corner_texts()[1]
    vol.metadata["calibration"] = "uncalibrated"
    view.set_volume(vol)
    assert "UNCALIBRATED" in view.corner_texts()[1]
    assert not view.overlays.bar.GetVisibility()


def test_real_sagittal_mr_letters(view, real_data):
    from viewer.volume import load_series

    files = sorted((real_data / "02_mr_brain_t1_sagittal_series").glob("*.dcm"))
    vol = load_series(files)
    view.set_volume(vol)
    assert view.letters["top"] == "S" and view.letters["bottom"] == "I"
    assert view.letters["left"] == "A" and view.letters["right"] == "P"
    assert view.grab_rgb().mean() > 5


def test_monochrome1_radiograph_starts_inverted(view, real_data):
    from viewer.volume import load_series

    vol = load_series(sorted((real_data / "11_dx_chest_mono1_small").glob("*.dcm")))
    view.set_volume(vol)
    assert view.inverted
    img = view.grab_rgb()
    assert img.mean() > 5


def test_progressive_display_with_the_streaming_loader(view):
    """The loader's VolumeBuilder preallocates the volume; the view shows each slice as its instance arrives,
    reading the builder's own buffer (no copy)."""
    from viewer.synthetic import axial_positions, make_slice_series
    from viewer.volume import VolumeBuilder

    def values(n, jj, ii):
        return (1024 + 100 * n + 0 * ii).astype(np.int16)   # slice n holds 100 * n HU everywhere

    datasets = make_slice_series(axial_positions(10, step=2.0), rows=32, cols=32, values=values)
    builder = VolumeBuilder(datasets)
    vol = builder.volume
    view.set_volume(vol, arrived=set())
    assert buffer_address(view.mapper.GetInput()) == vol.voxels.ctypes.data
    order = [7, 2, 9, 0, 1, 3, 4, 5, 6, 8]   # the cloud sends the slice on screen first, then the rest
    for n, idx in enumerate(order):
        for k in builder.add_instance(datasets[idx]):
            view.slice_arrived(k)
        if n == 0:
            first = view.k
            assert vol.voxels[first].mean() == 700        # slice 7 arrived first and is on screen
            view.set_window_level(2000, 700)
            assert abs(pixel_at(view, view.slice_position())[0] - 127) <= 3
            assert view.has_slice(first) and not view.has_slice(0)
    assert builder.complete and view.arrived is None      # all there: no more "loading" states
    view.set_slice(3)
    assert abs(pixel_at(view, view.slice_position())[0] - expected_grey(300, 2000, 700)) <= 3


def test_real_colour_ultrasound_cine_plays_at_its_frame_rate(view, qtbot, real_data):
    from viewer.volume import load_series

    vol = load_series([real_data / "13_us_cine_multiframe" / "examples_ybr_color.dcm"])
    assert vol.voxels.ndim == 4 and vol.voxels.shape[3] == 3
    view.set_volume(vol)
    assert view.shared.zero_copy and view.shared.components == 3
    md = vol.metadata
    if md.get("fps") or md.get("frame_time_ms"):
        expected = md.get("fps") or 1000.0 / md["frame_time_ms"]
        assert view.fps == pytest.approx(expected)
    img = view.grab_rgb()
    assert img.std() > 5
    # colour reaches the screen as colour (RGB channels differ somewhere in the image)
    assert (np.abs(img[:, :, 0].astype(int) - img[:, :, 2].astype(int)) > 20).any()
    view.set_slice(0)
    view.play()
    qtbot.wait(300)
    view.stop()
    assert view.k > 0


def test_real_gantry_tilt_ct_reslices_voxels_at_their_patient_positions(qtbot, real_data):
    """Sheared real CT (18.5 degree tilt): a voxel's value appears in a sagittal MPR exactly at the patient
    position the loader gives for it."""
    from viewer.qt.mpr import MprViewport
    from viewer.volume import load_series

    vol = load_series(sorted((real_data / "01_ct_head_gantry_tilt_series").glob("*.dcm")))
    view = MprViewport(orientation="sagittal")
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    qtbot.waitExposed(view)
    rng = np.random.default_rng(7)
    view.set_volume(vol)
    checked = 0
    for _ in range(40):
        k, j, i = int(rng.integers(1, vol.shape[0] - 1)), int(rng.integers(100, 400)), int(rng.integers(100, 400))
        if vol.metadata.get("acquired") and not vol.metadata["acquired"][k]:
            continue
        local = vol.voxels[k, j - 1:j + 2, i - 1:i + 2].astype(float)
        if local.std() < 20:          # only where the image has structure, so a wrong position would show
            continue
        p = vol.index_to_patient(k, j, i)
        view.set_plane(centre=p)      # sagittal plane through p; p sits at plane coordinates (0, 0)
        view.reslice.Update()
        out = view.reslice.GetOutput()
        idx, pc = [0, 0, 0], [0.0, 0.0, 0.0]
        assert out.ComputeStructuredCoordinates([0.0, 0.0, 0.0], idx, pc)
        assert out.GetScalarComponentAsDouble(idx[0], idx[1], 0, 0) == pytest.approx(vol.voxels[k, j, i], abs=0.5)
        checked += 1
    assert checked >= 5
    assert vol.metadata.get("tilt_deg") or any("tilt" in w.lower() for w in vol.warnings)


def test_view_events_do_not_leak_references_to_true(view):
    """PySide6 6.12.0 drops a reference to True on every Python-side Signal.emit (CPython then aborts after a
    few thousand frames); the views' events are plain Python hooks and must not touch it."""
    import sys

    vol = ct_phantom(shape=(20, 32, 32))
    view.set_volume(vol)
    seen = []
    view.sliceChanged.connect(seen.append)
    view.windowLevelChanged.connect(lambda w, lv: seen.append((w, lv)))
    before = sys.getrefcount(True)
    for n in range(100):
        view.set_slice(n % 20)
        view.set_window_level(400 + n, 40)
    assert len(seen) > 150
    assert sys.getrefcount(True) >= before - 5   # with Qt Signals it would have fallen by > 150


def test_real_mammogram_sigmoid_window_and_voi_lut_sequence(view, real_data):
    from viewer.presets import apply_window
    from viewer.volume import load_series

    vol = load_series(sorted((real_data / "12_mg_voi_lut_sequence").glob("*.dcm")))
    view.set_volume(vol)
    md = vol.metadata
    assert view.voi_name == "NORMAL SIGMOID"
    assert "SIGMOID" in view.corner_texts()[1]
    # a tissue voxel whose neighbours are alike; zoom in on it so one voxel covers many screen pixels
    vox = vol.voxels[0].astype(float)
    best = None
    for j in range(400, vox.shape[0] - 400, 37):
        for i in range(300, vox.shape[1] - 300, 37):
            patch = vox[j - 1:j + 2, i - 1:i + 2]
            if 2300 < vox[j, i] < 3000 and (best is None or patch.std() < best[0]):
                best = (patch.std(), j, i)
    assert best is not None and best[0] < 8
    _, j, i = best
    value = vox[j, i]
    p = vol.index_to_patient(0, j, i)
    view.set_zoom(12)
    view.center_on(p)
    assert view.patient_to_display(p) == pytest.approx(np.array(view.viewport_px()) / 2, abs=1.0)
    expected = float(apply_window(np.array([value]), md["window_presets"][0])[0]) * 255
    assert abs(pixel_at(view, p)[0] - expected) <= 6
    lut = md["voi_luts"][0]
    view.apply_voi(lut)
    assert view.voi_name.startswith("VOI LUT")
    assert abs(pixel_at(view, p)[0] - float(lut.apply(np.array([value]))[0]) * 255) <= 6
    view.set_window_level(900, 2653)          # a drag leaves the table for a linear window
    assert view.voi_name is None
    assert abs(pixel_at(view, p)[0] - expected_grey(value, 900, 2653)) <= 6
