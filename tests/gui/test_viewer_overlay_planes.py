"""DICOM overlay planes (60xx) on screen: the real Siemens MR with an overlay, and synthetic ones (origin offset,
multi-slice order), drawn in one colour over the image independent of window/level, toggled with O.

Run: xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python -m pytest tests/gui/test_viewer_overlay_planes.py
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")]

from PySide6.QtCore import Qt

from viewer.qt.viewport import StackViewport
from viewer.volume import load_series


@pytest.fixture
def view(qtbot):
    v = StackViewport()
    qtbot.addWidget(v)
    v.resize(600, 600)
    v.show()
    qtbot.waitExposed(v)
    return v


def _screen(view, vol, k: int, j: int, i: int) -> np.ndarray:
    img = view.grab_rgb()
    x, y = view.patient_to_display(vol.index_to_patient(k, j, i))
    return img[img.shape[0] - 1 - round(y), round(x)].astype(int)


def test_real_mr_overlay_is_drawn_in_its_colour_and_toggled(view, real_data, qtbot):
    vol = load_series(sorted((real_data / "18_mr_overlay").glob("*.dcm")))
    [plane] = vol.overlays[0]
    assert plane.mask.shape == vol.shape[1:] and plane.mask.sum() > 100
    view.set_volume(vol)
    view.set_window_level(4000, 2000)
    js, is_ = np.nonzero(plane.mask)
    j, i = next((a, b) for a, b in zip(js, is_) if plane.mask[a, b])
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


def _mr_slice(z: float, overlay: np.ndarray | None, origin=(1, 1), number=1):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "MR"
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0, 0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.full((32, 32), 100, np.uint16).tobytes()
    if overlay is not None:
        ds.add_new(0x60000010, "US", overlay.shape[0])
        ds.add_new(0x60000011, "US", overlay.shape[1])
        ds.add_new(0x60000040, "CS", "G")
        ds.add_new(0x60000050, "SS", list(origin))
        ds.add_new(0x60000100, "US", 1)
        ds.add_new(0x60000102, "US", 0)
        bits = np.packbits(overlay.astype(np.uint8).ravel(), bitorder="little").tobytes()
        ds.add_new(0x60003000, "OW", bits + b"\x00" * (len(bits) % 2))
    return ds


def test_overlay_origin_offset_and_slice_order():
    # files given in reverse order; only the middle slice carries an overlay, 4x6 at origin row 11, column 21
    ov = np.ones((4, 6), bool)
    datasets = [_mr_slice(2.0, None, number=3), _mr_slice(1.0, ov, origin=(11, 21), number=2),
                _mr_slice(0.0, None, number=1)]
    vol = load_series(datasets)
    assert set(vol.overlays) == {1}
    mask = vol.overlays[1][0].mask
    assert mask[10:14, 20:26].all() and mask.sum() == 24
    # an origin outside the image is clipped, not an error
    vol2 = load_series([_mr_slice(0.0, np.ones((5, 5), bool), origin=(-1, 30))])
    m2 = vol2.overlays[0][0].mask
    assert m2.sum() == 3 * 3 and m2[0:3, 29:32].all()
