"""DICOM overlay planes (60xx) on screen: the real Siemens MR with its overlay drawn in one colour over the image,
independent of window/level, toggled with O. (Placement is tested without a screen in tests/unit/test_volume_overlays.py.)

Run: xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python -m pytest tests/gui/test_viewer_overlay_planes.py
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")]

from PySide6.QtCore import Qt

from viewer.qt.testing import shown_stack_view
from viewer.volume import load_series


@pytest.fixture
def view(qtbot):
    return shown_stack_view(qtbot, 600)


def _screen(view, vol, k: int, j: int, i: int) -> np.ndarray:
    img = view.grab_rgb()
    x, y = view.patient_to_display(vol.index_to_patient(k, j, i))
    return img[img.shape[0] - 1 - round(y), round(x)].astype(int)


def test_real_mr_overlay_is_drawn_in_its_colour_and_toggled(view, real_data, qtbot):
    vol = load_series(sorted((real_data / "18_mr_overlay").glob("*.dcm")))
    [plane] = vol.overlays[0]
    full = plane.full_mask(*vol.shape[1:])
    assert full.sum() == plane.mask.sum() > 100
    view.set_volume(vol)
    view.set_window_level(4000, 2000)
    js, is_ = np.nonzero(full)
    j, i = int(js[len(js) // 2]), int(is_[len(is_) // 2])
    view.set_zoom(8.0)                                   # one image pixel covers many screen pixels
    view.center_on(vol.index_to_patient(0, j, i))
    colour = np.array(view.OVERLAY_RGBA[:3])
    assert np.abs(_screen(view, vol, 0, j, i) - colour).max() <= 40
    assert "Overlay" in view.corner_texts()[0]
    # independent of window/level
    view.set_window_level(10, 5000)
    assert np.abs(_screen(view, vol, 0, j, i) - colour).max() <= 40
    # O hides it: the pixel shows the image again (greyscale)
    qtbot.keyClick(view.canvas, Qt.Key_O)
    assert not view.show_overlays and "Overlay hidden (O)" in view.corner_texts()[0]
    px = _screen(view, vol, 0, j, i)
    assert px.max() - px.min() <= 3 and np.abs(px - colour).max() > 40
