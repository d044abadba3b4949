"""Measurement tools driven by real Qt mouse events: the points go through the view's screen -> patient
conversion and come out as viewer.measurements objects with the right values."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")]

import itertools

from viewer import measurements as m
from viewer.qt.phantom import ct_phantom
from viewer.qt.testing import click, drag, qt_pos, shown_stack_view


@pytest.fixture
def view(qtbot):
    return shown_stack_view(qtbot, 800)



def half_max_edges(profile: np.ndarray) -> tuple[float, float]:
    """Sub-pixel positions where a bright plateau's profile crosses half its height (left and right edge)."""
    lo, hi = float(profile.min()), float(profile.max())
    half = (lo + hi) / 2
    above = np.nonzero(profile > half)[0]
    a, b = above[0], above[-1]
    left = a - 1 + (half - profile[a - 1]) / (profile[a] - profile[a - 1])
    right = b + (profile[b] - half) / (profile[b] - profile[b + 1])
    return float(left), float(right)


@pytest.mark.parametrize("zoom", [None, 2.5])
def test_length_over_phantom_block_within_half_a_millimetre(view, zoom):
    vol = ct_phantom(shape=(32, 256, 256), spacing=(2.0, 0.7, 0.7))
    true_width = vol.metadata["block_mm"][0]          # along the row direction (screen x)
    view.set_volume(vol)
    if zoom:
        view.set_zoom(zoom)
    view.set_window_level(960, 520)                   # tissue (40) black, bone (1000) white
    img = view.grab_rgb().min(axis=2).astype(float)   # grey image only (overlay letters are coloured)
    centre = vol.index_to_patient(view.k, 127.5, 127.5)
    _, row_qt = qt_pos(view, centre)
    row = round(row_qt)
    x0, x1 = half_max_edges(img[row])                 # the block's edges as seen on screen
    view.set_tool("length")
    drag(view.canvas, (x0, row_qt), (x1, row_qt))
    assert len(view.results) == 1
    length = view.results[0]
    assert isinstance(length, m.Length)
    assert abs(length.value - true_width) < 0.5, (length.value, true_width)
    assert length.sop_instance_uid == vol.metadata["slice_refs"][view.k][0]
    assert "mm" in length.label()
    assert view.tools.annotations[0].measurement is length


def test_angle_and_cobb_from_clicks(view):
    vol = ct_phantom(shape=(8, 128, 128), spacing=(2.0, 1.0, 1.0))
    view.set_volume(vol)
    k = view.k
    p = {name: vol.index_to_patient(k, j, i) for name, (j, i) in
         {"a": (64, 100), "v": (64, 64), "b": (28, 64), "c1": (30, 20), "c2": (40, 60), "d1": (90, 20),
          "d2": (80, 60)}.items()}
    view.set_tool("angle")
    for name in ("a", "v", "b"):
        click(view.canvas, qt_pos(view, p[name]))
    angle = view.results[-1]
    assert isinstance(angle, m.Angle) and angle.value == pytest.approx(90.0, abs=1.0)
    view.set_tool("cobb")
    drag(view.canvas, qt_pos(view, p["c1"]), qt_pos(view, p["c2"]))
    drag(view.canvas, qt_pos(view, p["d1"]), qt_pos(view, p["d2"]))
    cobb = view.results[-1]
    expected = 2 * np.degrees(np.arctan2(10, 40))
    assert isinstance(cobb, m.CobbAngle) and cobb.value == pytest.approx(expected, abs=1.0)


def test_ellipse_roi_stats_probe_freehand_arrow_text(view):
    vol = ct_phantom(shape=(8, 256, 256), spacing=(2.0, 0.7, 0.7))
    view.set_volume(vol)
    k = view.k
    c = vol.index_to_patient(k, 127.5, 127.5)
    corner = c + np.array([8.0, 6.0, 0.0])               # inside the 40 x 29 mm block
    view.set_tool("ellipse")
    drag(view.canvas, qt_pos(view, c), qt_pos(view, corner))
    roi = view.results[-1]
    assert isinstance(roi, m.EllipseROI)
    assert roi.stats.mean == pytest.approx(1000) and roi.stats.sd == pytest.approx(0)
    assert roi.area == pytest.approx(np.pi * 8 * 6, rel=0.05)
    assert roi.stats.units == "HU"
    view.set_tool("probe")
    click(view.canvas, qt_pos(view, c + np.array([-40.0, 0, 0])))   # soft tissue, 40 mm to the right
    probe = view.results[-1]
    assert isinstance(probe, m.PixelProbe) and probe.value == 40
    view.set_tool("freehand")
    square = [c + np.array(d) for d in ((-5, -5, 0), (5, -5, 0), (5, 5, 0), (-5, 5, 0))]
    # one continuous stroke around the square
    from PySide6.QtCore import QEvent, QPointF, Qt

    from viewer.qt.testing import _send

    pts = [qt_pos(view, q) for q in square] + [qt_pos(view, square[0])]
    _send(view.canvas, QEvent.MouseButtonPress, QPointF(*pts[0]), Qt.LeftButton, Qt.LeftButton)
    for a, b in itertools.pairwise(pts):
        for t in np.linspace(0, 1, 12)[1:]:
            _send(view.canvas, QEvent.MouseMove, QPointF(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t),
                  Qt.NoButton, Qt.LeftButton)
    _send(view.canvas, QEvent.MouseButtonRelease, QPointF(*pts[-1]), Qt.LeftButton, Qt.NoButton)
    free = view.results[-1]
    assert isinstance(free, m.FreehandROI)
    assert free.area == pytest.approx(100.0, rel=0.1)
    assert free.stats.mean == pytest.approx(1000)
    view.set_tool("arrow")
    drag(view.canvas, qt_pos(view, c), qt_pos(view, c + np.array([20.0, 20.0, 0])))
    arrow = view.results[-1]
    assert isinstance(arrow, m.Arrow)
    assert np.allclose(arrow.points[0], c, atol=0.5)            # the tip is where the drag started
    view.tools.ask_text = lambda: "small bleed"
    view.set_tool("text")
    click(view.canvas, qt_pos(view, c))
    note = view.results[-1]
    assert isinstance(note, m.TextNote) and note.text == "small bleed"
    # annotations are drawn only on their own slice
    view.update_overlays()
    drawn = view.tools._lines.GetNumberOfCells()
    assert drawn > 0
    view.scroll(1)
    view.update_overlays()
    assert view.tools._lines.GetNumberOfCells() == 0


def test_key_image_mark(view):
    vol = ct_phantom(shape=(8, 64, 64))
    view.set_volume(vol)
    assert view.toggle_key_image() is True
    mark = view.results[-1]
    assert isinstance(mark, m.KeyImage)
    assert mark.sop_instance_uid == vol.metadata["slice_refs"][view.k][0]
    assert "KEY" in view.corner_texts()[0]
    assert view.toggle_key_image() is False
    vol.metadata["slice_refs"][2] = None                       # an interpolated slice cannot be a key image
    with pytest.raises(m.MeasurementError):
        view.toggle_key_image(2)


def test_refused_measurement_is_explained_not_raised(view):
    vol = ct_phantom(shape=(4, 128, 128), spacing=(1.0, 1.0, 1.0))
    view.set_volume(vol)
    view.set_tool("freehand")
    a = vol.index_to_patient(view.k, 64, 20)
    drag(view.canvas, qt_pos(view, a), qt_pos(view, a + np.array([20.0, 0, 0])), steps=10)  # a line: no area
    assert view.results == []
    assert view.overlays.notice.GetVisibility()
    assert "pixel" in view.overlays.notice.GetInput()


def test_uncalibrated_length_is_in_pixels(view):
    vol = ct_phantom(shape=(4, 128, 128), spacing=(1.0, 1.0, 1.0))
    vol.metadata["calibration"] = "uncalibrated"
    view.set_volume(vol)
    view.set_tool("length")
    a, b = vol.index_to_patient(view.k, 64, 20), vol.index_to_patient(view.k, 64, 70)
    drag(view.canvas, qt_pos(view, a), qt_pos(view, b))
    length = view.results[-1]
    assert length.calibration == "uncalibrated" and "px" in length.label()
    assert length.value == pytest.approx(50, abs=0.5)
