"""What a radiologist must see on screen: loader warnings (missing slices, no spacing, ...), calibration of
radiographs (patient / detector / uncalibrated) in the corner text and in measurement labels, Image
Laterality, and Patient Orientation letters of radiographs that stay true after flip and rotate.

Run: xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python -m pytest tests/gui/test_viewer_safety_overlays.py
"""
from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")]

from viewer.qt.testing import drag, qt_pos, shown_stack_view
from viewer.synthetic import axial_positions, make_slice_series
from viewer.volume import load_series

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


@pytest.fixture
def view(qtbot):
    return shown_stack_view(qtbot, 700)



def dx_dataset(imager_spacing: float | None = 0.2, laterality: str | None = "R", orientation=("P", "F")):
    """A one-frame DX without Image Orientation/Position (Patient) or Pixel Spacing, as a wrist PA is sent."""
    ds = make_slice_series([(0, 0, 0)], rows=96, cols=80, modality="DX", intercept=0.0, signed=False,
                           values=lambda n, jj, ii: (ii * 10 + jj) % 4000)[0]
    for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "PatientPosition"):
        delattr(ds, key)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    if orientation:
        ds.PatientOrientation = list(orientation)
    if laterality:
        ds.ImageLaterality = laterality
    if imager_spacing:
        ds.ImagerPixelSpacing = [str(imager_spacing), str(imager_spacing)]
    return ds


def on_screen(text: str) -> str:
    """Warning text as read (the overlay wraps long lines): whitespace runs collapsed to one space."""
    return " ".join(text.split())


def radiograph(**kw):
    return load_series([dx_dataset(**kw)])


def test_loader_warnings_missing_slice_and_no_pixel_spacing_are_on_screen(view):
    datasets = make_slice_series(axial_positions(8), rows=32, cols=32)
    del datasets[4]                       # a gap in the stack
    for ds in datasets:
        del ds.PixelSpacing               # and no in-plane calibration
    vol = load_series(datasets)
    assert any("missing" in w for w in vol.warnings) and any("Pixel Spacing" in w for w in vol.warnings)
    view.set_volume(vol)
    view.render()
    actor = view.overlays.warning
    shown = on_screen(actor.GetInput())
    assert actor.GetVisibility()
    assert "slice(s) missing" in shown and "no Pixel Spacing" in shown
    assert on_screen(view.overlays.warning_text()) == shown
    # placed below the top corner texts (patient / study lines), not over them
    top_lines = max(len(view.corner_texts()[i].splitlines()) for i in (2, 3))
    assert top_lines >= 2
    assert actor.GetPosition()[1] <= 1.0 - 17.0 * top_lines / view.viewport_px()[1]
    # the gap itself is marked on the slice the reader is looking at (the blank slice 5 of 8), and only there
    gap = vol.metadata["acquired"].index(False)
    view.set_slice(gap)
    assert "NOT ACQUIRED" in view.corner_texts()[0] and "NOT ACQUIRED" in view.overlays.corners[0].GetInput()
    view.set_slice(gap - 1)
    assert "NOT ACQUIRED" not in view.corner_texts()[0]
    # ... and in amber, actually drawn: the top-centre band has amber pixels that an unwarned series lacks
    img = view.grab_rgb()
    band = img[: img.shape[0] // 4, img.shape[1] // 4: 3 * img.shape[1] // 4].astype(int)
    amber = (band[..., 0] > 200) & (band[..., 1] > 120) & (band[..., 1] < 200) & (band[..., 2] < 60)
    assert amber.sum() > 50

    clean = load_series(make_slice_series(axial_positions(8), rows=32, cols=32))
    assert clean.warnings == []
    view.set_volume(clean)
    view.render()
    assert not view.overlays.warning.GetVisibility() and view.overlays.warning_text() == ""


def test_radiograph_with_imager_pixel_spacing_is_calibrated_to_detector(view):
    vol = radiograph(imager_spacing=0.2)
    assert vol.metadata["calibration"] == "detector"
    view.set_volume(vol)
    view.render()
    assert "calibrated to detector" in view.corner_texts()[1]
    assert "Imager Pixel Spacing" in on_screen(view.overlays.warning_text())
    assert view.overlays.bar.GetVisibility() and view.overlays.bar_label.GetInput().endswith("mm (detector)")
    view.set_tool("length")
    a, b = vol.index_to_patient(0, 40, 10), vol.index_to_patient(0, 40, 60)   # 50 px at 0.2 mm
    drag(view.canvas, qt_pos(view, a), qt_pos(view, b))
    length = view.results[-1]
    assert length.calibration == "detector"
    assert length.value == pytest.approx(10.0, abs=0.2)
    assert "mm (detector)" in length.label()


def test_radiograph_without_any_spacing_is_uncalibrated_in_pixels(view):
    vol = radiograph(imager_spacing=None)
    assert vol.metadata["calibration"] == "uncalibrated"
    view.set_volume(vol)
    view.render()
    assert "UNCALIBRATED" in view.corner_texts()[1]
    assert not view.overlays.bar.GetVisibility()          # no scale bar in mm
    assert "uncalibrated" in on_screen(view.overlays.warning_text())
    view.set_tool("length")
    a, b = vol.index_to_patient(0, 40, 10), vol.index_to_patient(0, 40, 60)
    drag(view.canvas, qt_pos(view, a), qt_pos(view, b))
    length = view.results[-1]
    assert length.calibration == "uncalibrated"
    assert length.value == pytest.approx(50, abs=0.5)
    assert "px" in length.label() and "mm" not in length.label()


def test_radiograph_laterality_in_corner_text(view):
    view.set_volume(radiograph(laterality="R"))
    view.render()
    assert "Laterality R" in view.corner_texts()[3]
    assert "Laterality R" in view.overlays.corners[3].GetInput()
    view.set_volume(radiograph(laterality="L"))
    assert "Laterality L" in view.corner_texts()[3]
    view.set_volume(radiograph(laterality=None))
    assert "Laterality" not in view.corner_texts()[3]
    view.set_volume(radiograph(laterality="U"))     # unpaired body part (a chest): nothing to say
    assert "Laterality" not in view.corner_texts()[3]


def test_radiograph_patient_orientation_letters_follow_flip_and_rotate(view):
    # Patient Orientation P\F: rows run to the patient's posterior, columns to the feet (a lateral view)
    view.set_volume(radiograph(orientation=("P", "F")))
    assert view.letters == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    view.flip(horizontal=True)
    assert view.letters == {"left": "P", "right": "A", "top": "S", "bottom": "I"}
    view.flip(horizontal=True)
    view.flip(horizontal=False)
    assert view.letters == {"left": "A", "right": "P", "top": "I", "bottom": "S"}
    view.flip(horizontal=False)
    view.rotate(1)  # clockwise: what was at the top (S) goes to the right
    assert view.letters == {"left": "I", "right": "S", "top": "A", "bottom": "P"}
    assert {s: view.overlays.letters[s].GetInput() for s in view.letters} == view.letters
    # a PA wrist: rows to the patient's left... as sent (L\F) and after a horizontal flip
    view.set_volume(radiograph(orientation=("L", "F")))
    assert view.letters == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    view.flip(horizontal=True)
    assert view.letters == {"left": "L", "right": "R", "top": "S", "bottom": "I"}
    assert "Laterality R" in view.corner_texts()[3]       # flipping never changes which side was imaged


def test_radiograph_without_patient_orientation_says_orientation_unknown(view):
    view.set_volume(radiograph(orientation=None))
    view.render()
    assert view.letters == {"left": "", "right": "", "top": "", "bottom": ""}
    assert "orientation unknown" in on_screen(view.overlays.warning_text())
    view.set_volume(radiograph(orientation=("L", "F")))
    view.render()
    assert view.letters["right"] == "L" and "orientation unknown" not in on_screen(view.overlays.warning_text())


def test_reading_page_shows_loader_warnings_and_laterality_while_streaming(qtbot):
    """End to end through the reading page's events (as the study loader sends them): a CT with a missing slice
    and a radiograph with Image Laterality R; the panes show the warning and the side while slices stream in."""
    from app.cli_gui import application
    from app.reading_page import ReadingPage
    from app.study_loader import SeriesInfo, SeriesReady, SlicesArrived
    from viewer.loader import VolumeBuilder

    application()
    page = ReadingPage(workstation=None)
    qtbot.addWidget(page)
    page.resize(1200, 800)
    page.show()
    ct = make_slice_series(axial_positions(6), rows=32, cols=32)
    del ct[2]
    dx_ds = dx_dataset(imager_spacing=0.2, laterality="R", orientation=("L", "F"))
    for modality, dss in (("CT", ct), ("DX", [dx_ds])):
        info = SeriesInfo(series_uid=str(dss[0].SeriesInstanceUID), modality=modality, description=modality)
        b = VolumeBuilder(dss)
        page._on_event(SeriesReady(info, b.volume))
        for ds in dss:
            page._on_event(SlicesArrived(info.series_uid, b.add_instance(ds)))
    panes = {p.volume.metadata.get("modality"): p for p in page.panes if p.volume is not None}
    for p in panes.values():
        p.render()
    assert "slice(s) missing" in on_screen(panes["CT"].overlays.warning.GetInput())
    assert panes["CT"].overlays.warning.GetVisibility()
    dx_pane = panes["DX"]
    assert "Laterality R" in dx_pane.overlays.corners[3].GetInput()
    assert "calibrated to detector" in dx_pane.overlays.corners[1].GetInput()
    assert "Imager Pixel Spacing" in on_screen(dx_pane.overlays.warning.GetInput())
    assert dx_pane.letters == {"left": "R", "right": "L", "top": "S", "bottom": "I"}


def test_demo_right_wrist_pa_letters_laterality_and_calibration(view, tmp_path):
    """The demo's right wrist PA (fingers up, thumb to the image left): Patient Orientation follows the anatomic
    position (PS3.17 Annex A: for a hand, RIGHT is towards the thumb of the right hand and the fingers point to
    the feet whatever the pose), so the thumb edge is R and the finger edge I; the side and the detector
    calibration are in the corner text."""
    from cloud.demo_data import write_demo_studies

    write_demo_studies(tmp_path, only={"xr-wrist"})
    pa = next(f for f in sorted(tmp_path.rglob("*.dcm")) if "001_DX" in str(f))
    vol = load_series([pa])
    view.set_volume(vol)
    view.render()
    assert view.letters == {"left": "R", "right": "L", "top": "I", "bottom": "S"}
    assert "Laterality R" in view.corner_texts()[3]
    assert "calibrated to detector" in view.corner_texts()[1]
