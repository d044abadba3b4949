"""3D volume rendering under Xvfb: non-empty images from the GPU ray caster (Mesa) and the software fallback,
which one ran is reported, and presets change what is drawn."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")]

from viewer.qt.phantom import ct_phantom
from viewer.qt.volume3d import VolumeView
from viewer.qt.vtk_bridge import buffer_address, volume_to_vtk_image


def lit_fraction(img: np.ndarray) -> float:
    bg = img[2, 2].astype(int)
    return float((np.abs(img.astype(int) - bg).sum(axis=2) > 30).mean())


@pytest.mark.parametrize("mode", ["auto", "software"])
def test_volume_rendering_is_not_empty_and_says_which_renderer_ran(qtbot, mode):
    vol = ct_phantom(shape=(48, 128, 128), spacing=(2.0, 1.0, 1.0))
    shared = volume_to_vtk_image(vol)
    view = VolumeView(mode=mode)
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(vol, shared=shared, preset="bone")
    view.render()
    assert view.backend in view.info.GetInput()          # the renderer that ran is shown on screen
    view.info.SetVisibility(False)                        # count only the rendered volume below
    view.orientation_widget.SetEnabled(0)
    img = view.grab_rgb()
    assert lit_fraction(img) > 0.01
    assert buffer_address(view.mapper.GetInput()) == vol.voxels.ctypes.data  # mapper reads the shared buffer
    if mode == "software":
        assert view.backend.startswith("software ray cast")
    else:
        assert view.backend.startswith(("GPU ray cast", "software ray cast (fallback)"))
    assert "OpenGL renderer:" in view.backend
    print(f"3D backend ({mode}): {view.backend}")
    bone_only = lit_fraction(img)
    view.set_preset("soft_tissue")
    assert lit_fraction(view.grab_rgb()) > bone_only  # soft tissue shows the body cylinder too


def test_orientation_cube_faces_follow_patient_axes(qtbot):
    view = VolumeView(mode="software")
    qtbot.addWidget(view)
    cube = view.orientation_cube
    assert (cube.GetXPlusFaceText(), cube.GetXMinusFaceText()) == ("L", "R")
    assert (cube.GetYPlusFaceText(), cube.GetYMinusFaceText()) == ("P", "A")
    assert (cube.GetZPlusFaceText(), cube.GetZMinusFaceText()) == ("S", "I")
    assert view.orientation_widget.GetEnabled()


def test_anterior_view_puts_patient_left_on_screen_right(qtbot):
    vol = ct_phantom(shape=(48, 128, 128), spacing=(2.0, 1.0, 1.0))
    vol.voxels[vol.voxels < 1500] = -1000            # only the marker (patient left, anterior, superior)
    view = VolumeView(mode="software")
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(vol, preset="bone")
    view.info.SetVisibility(False)
    view.orientation_widget.SetEnabled(0)
    img = view.grab_rgb()
    bg = img[2, 2].astype(int)
    ys, xs = np.nonzero(np.abs(img.astype(int) - bg).sum(axis=2) > 30)
    assert len(xs) > 0
    assert xs.mean() > img.shape[1] / 2       # marker x > 0 = patient left -> screen right
    assert ys.mean() < img.shape[0] / 2       # marker z > 0 = superior -> screen top


def test_save_png_writes_the_frame_on_screen(qtbot, tmp_path):
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOImage import vtkPNGReader

    from viewer.qt.testing import shown_stack_view

    def read_png(path) -> np.ndarray:
        r = vtkPNGReader()
        r.SetFileName(str(path))
        r.Update()
        img = r.GetOutput()
        w, h, _ = img.GetDimensions()
        return vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3]

    vol = ct_phantom(shape=(16, 64, 64))
    views = [VolumeView(mode="software"), shown_stack_view(qtbot, 320)]
    qtbot.addWidget(views[0])
    views[0].resize(320, 320)
    views[0].show()
    qtbot.waitExposed(views[0])
    for n, view in enumerate(views):
        view.set_volume(vol)
        shown = view.grab_rgb()
        path = tmp_path / f"view{n}.png"
        view.save_png(path)
        saved = read_png(path)
        assert saved.shape == shown.shape and np.abs(saved.astype(int) - shown).max() <= 2
        assert saved.std() > 1                                # an image, not an empty frame
