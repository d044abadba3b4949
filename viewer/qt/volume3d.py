"""3D volume rendering of a Volume in patient space: GPU ray casting where OpenGL allows, software ray casting else.

Owns the choice of VTK volume mapper, the transfer-function presets (bone, soft tissue), the 3D camera
(anterior view by default, trackball rotation) and the report of which renderer really ran
(``VolumeView.backend``: the mapper mode VTK used plus the OpenGL renderer string, e.g. Mesa llvmpipe).
The mapper reads the shared numpy buffer (``vtk_bridge``); the GPU path uploads it as a 3D texture.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
from PySide6.QtWidgets import QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
from vtkmodules.vtkRenderingCore import (
    vtkColorTransferFunction,
    vtkRenderer,
    vtkTextActor,
    vtkVolume,
    vtkVolumeProperty,
)
from vtkmodules.vtkRenderingVolume import vtkFixedPointVolumeRayCastMapper
from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

from viewer.qt import vtk_bridge  # noqa: F401
from viewer.qt.vtk_bridge import (
    SharedImage,
    data_to_patient,
    to_vtk_matrix,
    volume_to_vtk_image,
    window_rgb,
    write_window_png,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VolumePreset:
    """Transfer functions in modality units (HU for CT): colour points (value, r, g, b), opacity points."""

    name: str
    colors: tuple[tuple[float, float, float, float], ...]
    opacity: tuple[tuple[float, float], ...]
    shade: bool = True


PRESETS_3D = {
    "bone": VolumePreset("bone", ((-1000, 0, 0, 0), (150, 0.55, 0.25, 0.15), (300, 0.9, 0.82, 0.7),
                                  (1500, 1.0, 1.0, 0.95)),
                         ((-1000, 0.0), (150, 0.0), (300, 0.35), (1500, 0.9))),
    "soft_tissue": VolumePreset("soft_tissue", ((-1000, 0, 0, 0), (-300, 0.6, 0.3, 0.2), (40, 0.9, 0.55, 0.45),
                                                (300, 1.0, 0.9, 0.8), (1500, 1.0, 1.0, 1.0)),
                                ((-1000, 0.0), (-300, 0.0), (-100, 0.04), (40, 0.12), (300, 0.3), (1500, 0.6))),
}


class VolumeView(QWidget):
    """A 3D view. ``mode``: "auto" (GPU ray cast if possible, else software), "gpu", or "software"."""

    def __init__(self, parent: QWidget | None = None, mode: str = "auto") -> None:
        super().__init__(parent)
        if mode not in ("auto", "gpu", "software"):
            raise ValueError("mode must be auto, gpu or software")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.canvas = QVTKRenderWindowInteractor(self)
        lay.addWidget(self.canvas)
        self.render_window = self.canvas.GetRenderWindow()
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.05, 0.05, 0.08)
        self.render_window.AddRenderer(self.renderer)
        self.canvas.GetRenderWindow().GetInteractor().SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        self.canvas.Initialize()
        self.mode = mode
        self.property = vtkVolumeProperty()
        self.property.SetInterpolationTypeToLinear()
        self.prop = vtkVolume()
        self.prop.SetProperty(self.property)
        self.mapper = None
        self.volume = None
        self.shared: SharedImage | None = None
        self.preset = "bone"
        self.backend = ""
        self.info = vtkTextActor()   # which renderer ran, on screen (and in screenshots)
        self.info.GetTextProperty().SetFontSize(13)
        self.info.GetTextProperty().SetColor(0.8, 0.8, 0.6)
        self.info.SetPosition(6, 6)
        self.renderer.AddViewProp(self.info)
        self.orientation_cube = _orientation_cube()   # world = patient LPS, so the cube's faces are L/R/A/P/S/I
        self.orientation_widget = vtkOrientationMarkerWidget()
        self.orientation_widget.SetOrientationMarker(self.orientation_cube)
        self.orientation_widget.SetInteractor(self.canvas.GetRenderWindow().GetInteractor())
        self.orientation_widget.SetViewport(0.82, 0.0, 1.0, 0.18)
        self.orientation_widget.SetEnabled(1)
        self.orientation_widget.InteractiveOff()

    def set_volume(self, volume, shared: SharedImage | None = None, preset: str = "bone") -> None:
        from viewer.qt.mpr import check_reformattable

        check_reformattable(volume)   # same rule as MPR: a grey-scale cross-sectional stack (NotReformattable)
        self.volume = volume
        self.shared = shared or volume_to_vtk_image(volume)
        if self.mode == "software":
            self.mapper = vtkFixedPointVolumeRayCastMapper()
        else:
            self.mapper = vtkSmartVolumeMapper()
            if self.mode == "gpu":
                self.mapper.SetRequestedRenderModeToGPU()
            else:
                self.mapper.SetRequestedRenderModeToDefault()
        self.mapper.SetInputData(self.shared.image)
        self.prop.SetMapper(self.mapper)
        self.prop.SetUserMatrix(to_vtk_matrix(data_to_patient(volume)))
        self.renderer.AddVolume(self.prop)
        self.set_preset(preset, render=False)
        self.reset_camera("anterior")

    def set_preset(self, name: str, render: bool = True) -> None:
        p = PRESETS_3D[name]
        ctf = vtkColorTransferFunction()
        for v, r, g, b in p.colors:
            ctf.AddRGBPoint(v, r, g, b)
        otf = vtkPiecewiseFunction()
        for v, o in p.opacity:
            otf.AddPoint(v, o)
        self.property.SetColor(ctf)
        self.property.SetScalarOpacity(otf)
        self.property.SetShade(p.shade)
        self.property.SetAmbient(0.3)
        self.property.SetDiffuse(0.7)
        self.property.SetSpecular(0.2)
        self.preset = name
        self.info.SetInput(f"3D {name.replace('_', ' ')}: {self.backend}")
        if render:
            self.render()

    def reset_camera(self, view: str = "anterior") -> None:
        """Camera looking at the patient from ``view`` (anterior, posterior, left, right, superior)."""
        dirs = {"anterior": ((0, 1, 0), (0, 0, 1)), "posterior": ((0, -1, 0), (0, 0, 1)),
                "left": ((-1, 0, 0), (0, 0, 1)), "right": ((1, 0, 0), (0, 0, 1)),
                "superior": ((0, 0, -1), (0, -1, 0))}
        dop, up = (np.array(v, float) for v in dirs[view])
        cam = self.renderer.GetActiveCamera()
        b = self.prop.GetBounds()
        centre = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2])
        cam.SetFocalPoint(*centre)
        cam.SetPosition(*(centre - dop * 1000.0))
        cam.SetViewUp(*up)
        self.renderer.ResetCamera()

    def render(self) -> None:
        self.render_window.Render()
        backend = self._describe_backend()
        if backend != self.backend:   # known only after the first frame: show it, then draw once more
            self.backend = backend
            self.info.SetInput(f"3D {self.preset.replace('_', ' ')}: {backend}")
            self.render_window.Render()

    def _describe_backend(self) -> str:
        if self.mapper is None:
            return ""
        if isinstance(self.mapper, vtkSmartVolumeMapper):
            used = self.mapper.GetLastUsedRenderMode()
            what = {vtkSmartVolumeMapper.GPURenderMode: "GPU ray cast",
                    vtkSmartVolumeMapper.RayCastRenderMode: "software ray cast (fallback)"}.get(used, f"mode {used}")
        else:
            what = "software ray cast (fixed point)"
        return f"{what}; OpenGL renderer: {gl_renderer(self.render_window)}"

    def grab_rgb(self) -> np.ndarray:
        """The current frame as an (H, W, 3) uint8 array, row 0 at the top (as on screen)."""
        self.render()
        return window_rgb(self.render_window)

    def save_png(self, path) -> None:
        self.render()
        write_window_png(self.render_window, path)


def _orientation_cube():
    from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

    cube = vtkAnnotatedCubeActor()
    cube.SetXPlusFaceText("L")
    cube.SetXMinusFaceText("R")
    cube.SetYPlusFaceText("P")
    cube.SetYMinusFaceText("A")
    cube.SetZPlusFaceText("S")
    cube.SetZMinusFaceText("I")
    cube.SetFaceTextScale(0.65)
    cube.GetCubeProperty().SetColor(0.25, 0.3, 0.4)
    cube.GetTextEdgesProperty().SetColor(0.9, 0.9, 0.9)
    for prop in (cube.GetXPlusFaceProperty(), cube.GetXMinusFaceProperty(), cube.GetYPlusFaceProperty(),
                 cube.GetYMinusFaceProperty(), cube.GetZPlusFaceProperty(), cube.GetZMinusFaceProperty()):
        prop.SetColor(1.0, 0.85, 0.2)
    return cube


def gl_renderer(render_window) -> str:
    """The OpenGL renderer string of a render window that has rendered (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)")."""
    try:
        caps = render_window.ReportCapabilities() or ""
    except Exception:  # noqa: BLE001 - capabilities are diagnostic only
        return "unknown"
    for line in caps.splitlines():
        if "renderer string" in line.lower():
            return line.split(":", 1)[1].strip()
    return "unknown"
