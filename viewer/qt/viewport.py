"""Image viewports: a Qt widget around a VTK renderer that shows one plane of a Volume, and the 2D stack view.

Owns the behaviour shared by every 2D view (``ImageView``): window/level (right-drag, presets, header values),
invert, zoom/pan/fit/1:1, rotate/flip (camera-based, so orientation letters stay right), orientation letters
from the geometry, corner text, scale bar, calibration label, screenshots, the mapping between screen pixels
and patient millimetres, and routing of mouse/keyboard gestures to navigation or to the active tool.

``StackViewport`` shows native slices of a Volume straight from its numpy buffer (no copy) and supports
progressive display: ``set_volume(volume, arrived=set())`` then ``slice_arrived(k)`` as slices stream in.
MPR views (``viewer.qt.mpr``) reuse ``ImageView`` with a reslice pipeline.
"""
from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR, vtkLookupTable
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkRenderingCore import (
    vtkImageProperty,
    vtkImageSlice,
    vtkImageSliceMapper,
    vtkRenderer,
)

from viewer.loader import PROJECTION_MODALITIES
from viewer.qt import vtk_bridge  # noqa: F401  (registers VTK factories before any window exists)
from viewer.qt.events import event
from viewer.qt.overlays import Overlays, position_text
from viewer.qt.vtk_bridge import (
    SharedImage,
    data_to_patient,
    volume_to_vtk_image,
    window_rgb,
    write_window_png,
)

log = logging.getLogger(__name__)

def preset_window_level(name: str, volume=None) -> tuple[float, float]:
    """(window, level) of a named preset: a built-in CT preset (id or name, e.g. "ct_bone", "Bone", "bone"),
    a window from the series' header (by its name), or "header" for the header's first window."""
    from viewer import presets as core_presets

    header = list((getattr(volume, "metadata", None) or {}).get("window_presets") or []) if volume is not None else []
    if name == "header":
        if not header:
            raise KeyError("this series has no window in its header")
        return float(header[0].width), float(header[0].center)
    for p in header:
        if p.name.lower() == name.lower():
            return float(p.width), float(p.center)
    try:
        p = core_presets.builtin_preset(name)
    except KeyError:
        p = core_presets.builtin_preset("ct_" + name.lower())
    return float(p.width), float(p.center)


def header_window(volume) -> tuple[float, float] | None:
    """The first (window, level) the series' header gives, if any."""
    header = (getattr(volume, "metadata", None) or {}).get("window_presets") or []
    return (float(header[0].width), float(header[0].center)) if header else None


def default_window_level(volume) -> tuple[float, float]:
    """The window a series opens with (viewer.presets.default_preset: header, CT abdomen, or auto)."""
    from viewer import presets as core_presets

    p = core_presets.default_preset(volume)
    return float(p.width), float(p.center)


def calibration_text(volume) -> str:
    """What in-plane measurements are calibrated to, as shown on screen ("" for ordinary patient geometry).

    Reads the loader's ``metadata["calibration"]``: "patient" | "detector" | "uncalibrated".
    """
    cal = str((volume.metadata or {}).get("calibration", "patient")).lower()
    if cal == "uncalibrated":
        return "UNCALIBRATED"
    if cal == "detector":
        return "calibrated to detector"
    return ""


def _is_ct(volume) -> bool:
    return str((volume.metadata or {}).get("modality", "")).upper() == "CT"


class VtkCanvas(QVTKRenderWindowInteractor):
    """The QVTK widget; mouse, wheel and keys go to the owning view instead of VTK's default styles."""

    def __init__(self, owner: ImageView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._owner = owner

    def mousePressEvent(self, ev):
        self._owner._mouse_press(ev)

    def mouseMoveEvent(self, ev):
        self._owner._mouse_move(ev)

    def mouseReleaseEvent(self, ev):
        self._owner._mouse_release(ev)

    def mouseDoubleClickEvent(self, ev):
        self._owner._mouse_double_click(ev)

    def wheelEvent(self, ev):
        self._owner._wheel(ev)

    def keyPressEvent(self, ev):
        self._owner._key(ev)


class ImageView(QWidget):
    """A 2D view of one plane. Subclasses provide the image pipeline and the world -> patient matrix.

    World coordinates of a view are its image's coordinates: the displayed plane is ``z == plane_z()`` and
    ``world_to_patient()`` (4x4) places world points in patient LPS mm.
    """

    windowLevelChanged = event()
    sliceChanged = event()
    measurementAdded = event()
    cursorPicked = event()  # patient point (np.ndarray) chosen with the crosshair tool

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.canvas = VtkCanvas(self, self)
        lay.addWidget(self.canvas)
        self.render_window = self.canvas.GetRenderWindow()
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0, 0, 0)
        self.render_window.AddRenderer(self.renderer)
        self.canvas.GetRenderWindow().GetInteractor().SetInteractorStyle(None)
        self.canvas.Initialize()
        self.camera = self.renderer.GetActiveCamera()
        self.camera.ParallelProjectionOn()

        self.lut = vtkLookupTable()
        self.lut.SetNumberOfTableValues(256)
        self.lut.SetHueRange(0, 0)
        self.lut.SetSaturationRange(0, 0)
        self.lut.SetValueRange(0, 1)
        self.lut.SetRampToLinear()
        self.lut.Build()
        self.image_property = vtkImageProperty()
        self.image_property.SetInterpolationTypeToLinear()
        self.image_property.SetLookupTable(self.lut)
        self.image_property.UseLookupTableScalarRangeOff()
        self.image_slice = vtkImageSlice()
        self.image_slice.SetProperty(self.image_property)
        self.overlays = Overlays(self.renderer)

        self.volume = None
        self.shared: SharedImage | None = None
        self.window, self.level = 400.0, 40.0
        self.inverted = False
        self._voi = None             # (low, high, grey table, name) when a tabulated header VOI is shown
        self._voi_lut = None
        self.rotation = 0          # quarter turns clockwise
        self.flip_h = False
        self.flip_v = False
        self.tool = "scroll"       # what the left button does
        self._drag: dict | None = None
        self.letters: dict[str, str] = {}
        self.show_patient_text = True
        self.message: str | None = None
        self.label = ""              # what the hanging protocol calls this view ("Brain", "Prior", ...)
        from viewer.qt.tools import ToolController

        self.tools = ToolController(self)

    # ----- to be provided by subclasses
    def world_to_patient(self) -> np.ndarray:
        raise NotImplementedError

    def plane_z(self) -> float:
        return 0.0

    def image_bounds(self) -> tuple[float, ...]:
        return self.image_slice.GetMapper().GetInput().GetBounds() if self.image_slice.GetMapper() else (0,) * 6

    def native_pixel_mm(self) -> float:
        return 1.0

    def scroll(self, delta: int) -> None:
        pass

    def corner_texts(self) -> dict[int, str]:
        return {}

    def is_calibrated(self) -> bool:
        return True

    # ----- window / level
    def apply_voi(self, voi) -> None:
        """Show through a header VOI: a ``viewer.presets.WindowPreset`` (LINEAR windows use the fast linear
        ramp; SIGMOID / LINEAR_EXACT are tabulated with ``viewer.presets.apply_window``) or a
        ``viewer.presets.VoiLut`` (VOI LUT Sequence). A later window/level drag returns to a linear window."""
        from viewer.presets import VoiLut, apply_window

        if isinstance(voi, VoiLut):
            lo, hi = float(voi.first_mapped), float(voi.first_mapped + len(voi.data) - 1)
            x = np.linspace(lo, hi, max(2, min(len(voi.data), 4096)))
            grey = voi.apply(x)
            name = f"VOI LUT {voi.explanation}"
            self.window, self.level = hi - lo, (hi + lo) / 2.0
        elif str(voi.function).upper() == "LINEAR":
            self.set_window_level(voi.width, voi.center)
            return
        else:
            lo, hi = voi.center - 2.0 * voi.width, voi.center + 2.0 * voi.width
            x = np.linspace(lo, hi, 4096)
            grey = apply_window(x, voi)
            name = f"{voi.name} {str(voi.function).upper()}"
            self.window, self.level = float(voi.width), float(voi.center)
        self._voi = (lo, hi, np.asarray(grey, float), name)
        self._apply_voi_table()
        self.render()

    def _apply_voi_table(self) -> None:

        lo, hi, grey, _ = self._voi
        g = 1.0 - grey if self.inverted else grey
        rgba = np.empty((len(g), 4), np.uint8)
        rgba[:, :3] = np.clip(np.round(g * 255.0), 0, 255)[:, None]
        rgba[:, 3] = 255
        if self._voi_lut is None:
            self._voi_lut = vtkLookupTable()
        self._voi_lut.SetNumberOfTableValues(len(g))
        self._voi_lut.SetTable(numpy_support.numpy_to_vtk(rgba, deep=True))
        self._voi_lut.SetRange(lo, hi)
        self.image_property.SetLookupTable(self._voi_lut)
        self.image_property.UseLookupTableScalarRangeOn()

    @property
    def voi_name(self) -> str | None:
        return self._voi[3] if self._voi else None

    def set_window_level(self, window: float, level: float, emit: bool = True) -> None:
        if self._voi is not None:   # leave a tabulated VOI: back to the linear ramp
            self._voi = None
            self.image_property.SetLookupTable(self.lut)
            self.image_property.UseLookupTableScalarRangeOff()
        self.window = max(float(window), 1e-3)
        self.level = float(level)
        self.image_property.SetColorWindow(self.window)
        self.image_property.SetColorLevel(self.level)
        if emit:
            self.windowLevelChanged.emit(self.window, self.level)
        self.render()

    def drag_window_level(self, dx: float, dy: float) -> None:
        """Right-drag by (dx, dy) screen pixels: right widens the window, down raises the level (darker)."""
        step = max(abs(self.window), 1.0) / 200.0
        self.set_window_level(self.window + dx * step, self.level + dy * step)

    def apply_preset(self, name: str) -> None:
        w, lv = preset_window_level(name, self.volume)
        self.set_window_level(w, lv)

    def header_vois(self) -> list:
        md = (self.volume.metadata or {}) if self.volume is not None else {}
        return list(md.get("window_presets") or []) + list(md.get("voi_luts") or [])

    def cycle_header_voi(self) -> None:
        """Next window / VOI LUT from the series header (key L)."""
        vois = self.header_vois()
        if not vois:
            return
        self._voi_index = (getattr(self, "_voi_index", 0) + 1) % len(vois)
        self.apply_voi(vois[self._voi_index])

    def set_inverted(self, inverted: bool) -> None:
        self.inverted = bool(inverted)
        self.lut.SetValueRange((1, 0) if self.inverted else (0, 1))
        self.lut.Build()
        self.lut.Modified()
        if self._voi is not None:
            self._apply_voi_table()
        self.render()

    # ----- camera: fit, zoom, pan, rotate, flip
    def _screen_axes_world(self) -> tuple[np.ndarray, np.ndarray]:
        right, down = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        for _ in range(self.rotation % 4):
            right, down = -down, right
        if self.flip_h:
            right = -right
        if self.flip_v:
            down = -down
        return right, down

    def _apply_camera_orientation(self) -> None:
        right, down = self._screen_axes_world()
        up = -down
        dop = np.cross(up, right)
        fp = np.array(self.camera.GetFocalPoint())
        fp[2] = self.plane_z()
        self.camera.SetFocalPoint(*fp)
        self.camera.SetPosition(*(fp - dop * 1000.0))
        self.camera.SetViewUp(*up)
        self.renderer.ResetCameraClippingRange()
        self._update_letters()

    def letter_matrix(self) -> np.ndarray | None:
        """3x3 map from world directions to patient directions used for the letters (None: no geometry)."""
        return self.world_to_patient()[:3, :3]

    def _update_letters(self) -> None:
        right, down = self._screen_axes_world()
        lin = self.letter_matrix()
        if lin is None:
            self.letters = self.overlays.set_letters(None, None)
        else:
            self.letters = self.overlays.set_letters(lin @ right, lin @ down)

    def viewport_px(self) -> tuple[int, int]:
        w, h = self.render_window.GetSize()
        return max(int(w), 1), max(int(h), 1)

    def fit(self) -> None:
        b = self.image_bounds()
        right, down = self._screen_axes_world()
        corners = np.array([[x, y, self.plane_z()] for x in b[0:2] for y in b[2:4]])
        center = corners.mean(axis=0)
        wr = np.ptp(corners @ right) + self.native_pixel_mm()
        hr = np.ptp(corners @ down) + self.native_pixel_mm()
        vw, vh = self.viewport_px()
        self.camera.SetFocalPoint(*center)
        self.camera.SetParallelScale(max(hr / 2.0, wr / 2.0 * vh / vw) * 1.02)
        self._apply_camera_orientation()
        self.render()

    def pixel_mm(self) -> float:
        """World millimetres per screen pixel."""
        return 2.0 * self.camera.GetParallelScale() / self.viewport_px()[1]

    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel (1.0 = 1:1)."""
        return self.native_pixel_mm() / self.pixel_mm()

    def set_zoom(self, factor: float) -> None:
        self.camera.SetParallelScale(self.native_pixel_mm() * self.viewport_px()[1] / (2.0 * max(factor, 1e-3)))
        self.render()

    def one_to_one(self) -> None:
        self.set_zoom(1.0)

    def zoom_by(self, factor: float) -> None:
        self.set_zoom(self.zoom * factor)

    def pan(self, dx_px: float, dy_px: float) -> None:
        """Move the image by screen pixels (dx right, dy up)."""
        right, down = self._screen_axes_world()
        d = (-right * dx_px + (-down) * -dy_px) * self.pixel_mm()
        fp = np.array(self.camera.GetFocalPoint()) + d
        pos = np.array(self.camera.GetPosition()) + d
        self.camera.SetFocalPoint(*fp)
        self.camera.SetPosition(*pos)
        self.render()

    def center_on(self, patient_point) -> None:
        """Pan so that a patient point (on the displayed plane) is in the middle of the view."""
        w = self.patient_to_world(patient_point)
        fp = np.array(self.camera.GetFocalPoint())
        d = np.array([w[0] - fp[0], w[1] - fp[1], 0.0])
        self.camera.SetFocalPoint(*(fp + d))
        self.camera.SetPosition(*(np.array(self.camera.GetPosition()) + d))
        self.render()

    def rotate(self, quarter_turns: int = 1) -> None:
        """Rotate the displayed image clockwise by 90 degree steps (radiographs)."""
        self.rotation = (self.rotation + quarter_turns) % 4
        self._apply_camera_orientation()
        self.render()

    def flip(self, horizontal: bool = True) -> None:
        if horizontal:
            self.flip_h = not self.flip_h
        else:
            self.flip_v = not self.flip_v
        self._apply_camera_orientation()
        self.render()

    # ----- coordinates: display (VTK pixels, origin bottom-left) <-> world <-> patient
    def display_to_world(self, x: float, y: float) -> np.ndarray:
        self.renderer.SetDisplayPoint(float(x), float(y), 0.0)
        self.renderer.DisplayToWorld()
        wx, wy, wz, ww = self.renderer.GetWorldPoint()
        p = np.array([wx, wy, wz]) / (ww if ww else 1.0)
        p[2] = self.plane_z()  # parallel projection along +-z: the point on the displayed plane
        return p

    def world_to_display(self, p) -> np.ndarray:
        self.renderer.SetWorldPoint(float(p[0]), float(p[1]), float(p[2]), 1.0)
        self.renderer.WorldToDisplay()
        return np.array(self.renderer.GetDisplayPoint()[:2])

    def display_to_patient(self, x: float, y: float) -> np.ndarray:
        w = self.display_to_world(x, y)
        return (self.world_to_patient() @ np.append(w, 1.0))[:3]

    def patient_to_world(self, p) -> np.ndarray:
        return np.linalg.solve(self.world_to_patient(), np.append(np.asarray(p, float), 1.0))[:3]

    def patient_to_display(self, p) -> np.ndarray:
        return self.world_to_display(self.patient_to_world(p))

    def distance_from_plane(self, p) -> float:
        """Distance (mm along the view normal) of a patient point from the displayed plane."""
        w = self.patient_to_world(p)
        m = self.world_to_patient()[:3, :3]
        normal = np.cross(m[:, 0], m[:, 1])
        normal /= np.linalg.norm(normal) or 1.0
        return abs((w[2] - self.plane_z()) * float(m[:, 2] @ normal))

    def qt_to_display(self, pos) -> tuple[float, float]:
        ratio = self.canvas.devicePixelRatioF()
        return pos.x() * ratio, (self.canvas.height() - pos.y() - 1) * ratio

    def display_to_qt(self, x: float, y: float) -> QPoint:
        ratio = self.canvas.devicePixelRatioF()
        return QPoint(round(x / ratio), round(self.canvas.height() - 1 - y / ratio))

    # ----- drawing
    def show_message(self, text: str | None) -> None:
        """A short message in the middle of the view (why a tool refused, ...); None clears it."""
        self.message = text
        self.overlays.set_notice(text)
        self.render()

    def render(self) -> None:
        if self.volume is None:
            self.render_window.Render()
            return
        self.update_overlays()
        self.render_window.Render()

    def update_overlays(self) -> None:
        self.overlays.set_corners(self.corner_texts())
        self.overlays.set_warnings(self.screen_warnings(), self.viewport_px())
        detector = self.volume is not None and calibration_text(self.volume) == "calibrated to detector"
        self.overlays.set_scale_bar(self.pixel_mm(), self.viewport_px(), self.is_calibrated(),
                                    " (detector)" if detector else "")
        self.tools.update_overlay()

    def screen_warnings(self) -> list[str]:
        """The amber lines over the image: the loader's ``Volume.warnings`` (and, for a radiograph, missing
        orientation); an empty list shows none."""
        return list(getattr(self.volume, "warnings", None) or [])

    def grab_rgb(self) -> np.ndarray:
        """The current frame as an (H, W, 3) uint8 array, row 0 at the top (as on screen)."""
        self.render()
        return window_rgb(self.render_window)

    def save_png(self, path) -> None:
        self.render()
        write_window_png(self.render_window, path)

    # ----- gestures
    def set_tool(self, name: str) -> None:
        """Left-button tool: scroll, pan, zoom, wl, crosshair, or a measurement tool (see viewer.qt.tools)."""
        self.tools.cancel()
        self.tool = name

    def _mouse_press(self, ev) -> None:
        x, y = self.qt_to_display(ev.position())
        btn = ev.button()
        mode = None
        if btn == Qt.RightButton:
            mode = "zoom" if ev.modifiers() & Qt.ControlModifier else "wl"
        elif btn == Qt.MiddleButton:
            mode = "pan"
        elif btn == Qt.LeftButton:
            if ev.modifiers() & Qt.ShiftModifier:
                mode = "pan"
            elif self.tool in ("scroll", "pan", "zoom", "wl"):
                mode = self.tool
            elif self.tool == "crosshair":
                mode = "crosshair"
                self.cursorPicked.emit(self.display_to_patient(x, y))
            else:
                mode = "tool"
                self.tools.press(x, y)
        self._drag = {"mode": mode, "x": x, "y": y, "acc": 0.0}

    def _mouse_move(self, ev) -> None:
        x, y = self.qt_to_display(ev.position())
        d = self._drag
        if d is None:
            if self.tool not in ("scroll", "pan", "zoom", "wl", "crosshair"):
                self.tools.hover(x, y)
            return
        dx, dy = x - d["x"], y - d["y"]
        d["x"], d["y"] = x, y
        mode = d["mode"]
        if mode == "wl":
            self.drag_window_level(dx, -dy)
        elif mode == "pan":
            self.pan(dx, dy)
        elif mode == "zoom":
            self.zoom_by(1.01 ** dy)
        elif mode == "scroll":
            d["acc"] += -dy / 4.0  # drag down = next slice, 4 px per slice
            steps = int(d["acc"])
            if steps:
                d["acc"] -= steps
                self.scroll(steps)
        elif mode == "crosshair":
            self.cursorPicked.emit(self.display_to_patient(x, y))
        elif mode == "tool":
            self.tools.drag(x, y)

    def _mouse_release(self, ev) -> None:
        x, y = self.qt_to_display(ev.position())
        if self._drag and self._drag["mode"] == "tool":
            self.tools.release(x, y)
        self._drag = None

    def _mouse_double_click(self, ev) -> None:
        x, y = self.qt_to_display(ev.position())
        if self.tool not in ("scroll", "pan", "zoom", "wl", "crosshair"):
            self.tools.double_click(x, y)
        else:
            self.fit()

    def _wheel(self, ev) -> None:
        steps = ev.angleDelta().y() // 120 or (1 if ev.angleDelta().y() > 0 else -1 if ev.angleDelta().y() else 0)
        if ev.modifiers() & Qt.ControlModifier:
            self.zoom_by(1.1 ** steps)
        else:
            self.scroll(-steps)  # wheel towards the user = next slice

    def page_size(self) -> int:
        return 10

    def _key(self, ev) -> None:
        k = ev.key()
        if k in (Qt.Key_Down, Qt.Key_Right):
            self.scroll(1)
        elif k in (Qt.Key_Up, Qt.Key_Left):
            self.scroll(-1)
        elif k == Qt.Key_PageDown:
            self.scroll(self.page_size())
        elif k == Qt.Key_PageUp:
            self.scroll(-self.page_size())
        elif k == Qt.Key_Home:
            self.scroll(-10 ** 9)
        elif k == Qt.Key_End:
            self.scroll(10 ** 9)
        elif k == Qt.Key_I:
            self.set_inverted(not self.inverted)
        elif k == Qt.Key_O and hasattr(self, "set_overlays_visible"):
            self.set_overlays_visible(not self.show_overlays)
        elif k == Qt.Key_F:
            self.fit()
        elif k == Qt.Key_L and self.volume is not None:
            self.cycle_header_voi()
        elif k == Qt.Key_0:
            self.one_to_one()
        elif k == Qt.Key_R:
            self.rotate(1)
        elif k == Qt.Key_H:
            self.flip(True)
        elif k == Qt.Key_V:
            self.flip(False)
        elif k == Qt.Key_Escape:
            self.tools.cancel()
            self.render()
        elif Qt.Key_1 <= k <= Qt.Key_9:
            from viewer.presets import builtin_presets

            for p in builtin_presets():
                if p.key == chr(k):
                    self.set_window_level(p.width, p.center)


class StackViewport(ImageView):
    """Native slices of a Volume, straight from its numpy buffer; stack scroll, cine, progressive display."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mapper = vtkImageSliceMapper()
        self.mapper.SetOrientationToZ()
        self.image_slice.SetMapper(self.mapper)
        self.k = 0
        self.arrived: set[int] | None = None   # None = every slice present
        self._w2p = np.eye(4)
        self._cine = QTimer(self)
        self._cine.timeout.connect(self._cine_step)
        self.fps = 10.0
        self.key_images: dict[int, object] = {}   # slice index -> viewer.measurements.KeyImage
        self.show_overlays = True                  # DICOM overlay planes (60xx); key O
        self._overlay_slice = None
        self._overlay_image = None
        self._overlay_key = None

    # ----- volume
    def set_volume(self, volume, arrived: set[int] | None = None, shared: SharedImage | None = None) -> None:
        """Show ``volume``. ``arrived``: indices already filled (progressive loading); None = all of them.

        The numpy buffer is shared with VTK (see ``viewer.qt.vtk_bridge``); later writes into
        ``volume.voxels`` show after :meth:`slice_arrived`.
        """
        self.volume = volume
        self.shared = shared or volume_to_vtk_image(volume)
        if not self.shared.zero_copy:
            log.warning("voxel array is not contiguous: the viewer made one copy of it")
        self.arrived = None if arrived is None else set(arrived)
        self._w2p = data_to_patient(volume)
        self.mapper.SetInputData(self.shared.image)
        self.renderer.AddViewProp(self.image_slice)
        nk = volume.shape[0]
        self.k = nk // 2 if self.arrived is None else (min(self.arrived) if self.arrived else 0)
        self.mapper.SetSliceNumber(self.k)
        self.tools.clear_scene()
        self.key_images = {}
        if self.shared.components > 1:
            self.image_property.SetLookupTable(None)
            self.set_window_level(255.0, 127.5, emit=False)
        else:
            self.image_property.SetLookupTable(self.lut)
            if self.arrived is None or self.arrived:
                wl = default_window_level(volume)
            else:  # nothing arrived yet: header/CT window if known, else wait for the first slice
                wl = header_window(volume) or (default_window_level(volume) if _is_ct(volume) else (1.0, 0.5))
            self.set_window_level(*wl, emit=False)
        md = volume.metadata or {}
        self.set_inverted(bool(md.get("invert", False)))
        if self.shared.components == 1:
            header = list(md.get("window_presets") or [])
            if header and str(header[0].function).upper() != "LINEAR":
                self.apply_voi(header[0])          # e.g. mammography SIGMOID windows
            elif not header and md.get("voi_luts"):
                self.apply_voi(md["voi_luts"][0])  # only a VOI LUT Sequence
        if md.get("fps"):
            self.fps = float(md["fps"])
        elif md.get("frame_time_ms"):
            self.fps = 1000.0 / float(md["frame_time_ms"])
        self.rotation, self.flip_h, self.flip_v = 0, False, False
        self.fit()
        self.sliceChanged.emit(self.k)

    def slice_arrived(self, k: int) -> None:
        """Slice ``k`` of the shared buffer has been filled: show it if it is the one on screen."""
        if self.arrived is None or self.volume is None:
            return
        first = not self.arrived
        self.arrived.add(int(k))
        if len(self.arrived) == self.volume.shape[0]:
            self.arrived = None
        self.shared.image.GetPointData().GetScalars().Modified()
        if first:
            if header_window(self.volume) is None and not _is_ct(self.volume):
                from viewer.presets import auto_preset

                p = auto_preset(self.volume.voxels[int(k)])
                self.set_window_level(p.width, p.center, emit=False)
            self.set_slice(int(k))  # the first slice that arrives is shown at once
        elif int(k) == self.k:
            self.render()

    def has_slice(self, k: int) -> bool:
        return self.arrived is None or k in self.arrived

    # ----- geometry
    def world_to_patient(self) -> np.ndarray:
        return self._w2p

    def letter_matrix(self) -> np.ndarray | None:
        md = self.volume.metadata or {} if self.volume is not None else {}
        if md.get("kind", "stack") == "stack":
            return self._w2p[:3, :3]
        po = md.get("patient_orientation")  # radiographs: Patient Orientation (0020,0020) letters
        if po and len(po) == 2:
            vecs = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "H": (0, 0, 1),
                    "S": (0, 0, 1), "F": (0, 0, -1), "I": (0, 0, -1)}
            cols = []
            for letters in po:
                v = sum((np.array(vecs[c], float) for c in str(letters).upper() if c in vecs), np.zeros(3))
                if not np.any(v):
                    return None
                cols.append(v / np.linalg.norm(v))
            m = np.eye(3)
            m[:, 0], m[:, 1] = cols
            m[:, 2] = np.cross(cols[0], cols[1])
            return m
        return None

    def plane_z(self) -> float:
        return self.k * (self.shared.image.GetSpacing()[2] if self.shared else 1.0)

    def image_bounds(self):
        if self.shared is None:
            return (0.0,) * 6
        return self.shared.image.GetBounds()

    def native_pixel_mm(self) -> float:
        return float(self.shared.image.GetSpacing()[1]) if self.shared else 1.0

    def slice_position(self, k: int | None = None) -> np.ndarray:
        """Patient position (LPS mm) of the centre of slice ``k``."""
        k = self.k if k is None else k
        _nk, nj, ni = self.volume.shape[:3]
        return self.volume.index_to_patient(k, (nj - 1) / 2.0, (ni - 1) / 2.0)

    def slice_normal(self) -> np.ndarray:
        n = np.cross(np.asarray(self.volume.row_direction, float), np.asarray(self.volume.column_direction, float))
        return n / np.linalg.norm(n)

    def slice_for_position(self, p) -> int:
        """Index of the slice nearest to patient point ``p`` along this stack's normal."""
        nk = self.volume.shape[0]
        locs = np.array([self.slice_position(k) @ self.slice_normal() for k in (0, nk - 1)])
        if nk == 1 or locs[1] == locs[0]:
            return 0
        t = (np.asarray(p, float) @ self.slice_normal() - locs[0]) / (locs[1] - locs[0]) * (nk - 1)
        return int(np.clip(round(t), 0, nk - 1))

    # ----- stack
    def set_slice(self, k: int) -> None:
        if self.volume is None:
            return
        k = int(np.clip(k, 0, self.volume.shape[0] - 1))
        changed = k != self.k
        self.k = k
        self.mapper.SetSliceNumber(k)
        fp = np.array(self.camera.GetFocalPoint())
        pos = np.array(self.camera.GetPosition())
        dz = self.plane_z() - fp[2]
        self.camera.SetFocalPoint(fp[0], fp[1], fp[2] + dz)
        self.camera.SetPosition(pos[0], pos[1], pos[2] + dz)  # camera moves with the slice: clipping stays valid
        self.render()
        if changed:
            self.sliceChanged.emit(k)

    def scroll(self, delta: int) -> None:
        self.set_slice(self.k + int(delta))

    def page_size(self) -> int:
        return max(1, self.volume.shape[0] // 10) if self.volume is not None else 10

    def toggle_key_image(self, k: int | None = None) -> bool:
        """Mark/unmark slice ``k`` (default: the shown one) as a key image; returns the new state.

        Marking emits ``measurementAdded`` with a ``viewer.measurements.KeyImage`` (refused with the core's
        MeasurementError, in words, for a slice that was not acquired).
        """
        from viewer.measurements import KeyImage

        k = self.k if k is None else k
        if k in self.key_images:
            self.key_images.pop(k)
            state = False
        else:
            mark = KeyImage.from_volume(self.volume, k)
            self.key_images[k] = mark
            self.measurementAdded.emit(mark)
            state = True
        self.render()
        return state

    def _key(self, ev) -> None:
        if ev.key() == Qt.Key_K:
            from viewer.measurements import MeasurementError

            try:
                self.toggle_key_image()
            except MeasurementError as exc:  # e.g. an interpolated slice: say so on screen
                self.show_message(str(exc))
        elif ev.key() == Qt.Key_Space:
            self.stop() if self._cine.isActive() else self.play()
        else:
            super()._key(ev)

    # ----- cine
    def play(self, fps: float | None = None) -> None:
        if fps:
            self.fps = float(fps)
        self._cine.start(max(1, round(1000.0 / max(self.fps, 0.1))))

    def set_frame_rate(self, fps: float) -> None:
        self.fps = max(0.1, float(fps))
        if self._cine.isActive():
            self._cine.setInterval(max(1, round(1000.0 / self.fps)))

    def stop(self) -> None:
        self._cine.stop()

    @property
    def playing(self) -> bool:
        return self._cine.isActive()

    def _cine_step(self) -> None:
        if self.volume is None:
            return
        nk = self.volume.shape[0]
        self.set_slice((self.k + 1) % nk)

    # ----- overlays
    def is_calibrated(self) -> bool:
        return calibration_text(self.volume) != "UNCALIBRATED" if self.volume is not None else True

    def render(self) -> None:
        if self.volume is not None:
            self.overlays.set_notice(self.message if self.has_slice(self.k) else f"loading slice {self.k + 1} ...")
            self.image_slice.SetVisibility(self.has_slice(self.k))
            self._sync_overlay_planes()
        super().render()

    # ----- DICOM overlay planes (60xx): drawn over the image in one colour, independent of window/level
    OVERLAY_RGBA = (255, 214, 0, 255)

    def set_overlays_visible(self, on: bool) -> None:
        self.show_overlays = bool(on)
        self.render()

    def shown_overlay_planes(self) -> list:
        if self.volume is None or not self.show_overlays or not self.has_slice(self.k):
            return []
        return list(self.volume.overlays.get(self.k, ()))

    def _sync_overlay_planes(self) -> None:
        planes = self.shown_overlay_planes()
        fp, pos = np.array(self.camera.GetFocalPoint()), np.array(self.camera.GetPosition())
        side = 1.0 if pos[2] >= fp[2] else -1.0          # the overlay sits just in front of the image
        key = (id(self.volume), self.k, tuple(id(p) for p in planes), side)
        if key == self._overlay_key:
            return
        self._overlay_key = key
        if not planes:
            if self._overlay_slice is not None:
                self._overlay_slice.SetVisibility(False)
            return
        rows, cols = self.volume.shape[1], self.volume.shape[2]
        mask = np.logical_or.reduce([p.full_mask(rows, cols) for p in planes])
        rgba = np.zeros((rows, cols, 4), np.uint8)
        rgba[mask] = self.OVERLAY_RGBA
        sx, sy, sz = self.shared.image.GetSpacing()
        img = vtkImageData()
        img.SetDimensions(cols, rows, 1)
        img.SetSpacing(sx, sy, 1.0)
        img.SetOrigin(0.0, 0.0, self.plane_z() + side * 0.02 * max(float(sz), 1e-3))
        scalars = numpy_support.numpy_to_vtk(rgba.reshape(-1, 4), deep=True, array_type=VTK_UNSIGNED_CHAR)
        scalars.SetNumberOfComponents(4)
        img.GetPointData().SetScalars(scalars)
        if self._overlay_slice is None:
            mapper = vtkImageSliceMapper()
            mapper.SetOrientationToZ()
            prop = vtkImageProperty()
            prop.SetInterpolationTypeToNearest()
            prop.SetColorWindow(255.0)
            prop.SetColorLevel(127.5)
            self._overlay_slice = vtkImageSlice()
            self._overlay_slice.SetMapper(mapper)
            self._overlay_slice.SetProperty(prop)
            self._overlay_slice.PickableOff()
            self.renderer.AddViewProp(self._overlay_slice)
        self._overlay_slice.GetMapper().SetInputData(img)
        self._overlay_image = img
        self._overlay_slice.SetVisibility(True)

    def screen_warnings(self) -> list[str]:
        out = super().screen_warnings()
        md = (self.volume.metadata or {}) if self.volume is not None else {}
        if (md.get("kind") == "projection" and str(md.get("modality", "")).upper() in PROJECTION_MODALITIES
                and self.letter_matrix() is None):
            out.append("no Patient Orientation (0020,0020): orientation unknown, no side letters shown")
        return out

    def corner_texts(self) -> dict[int, str]:
        v = self.volume
        md = v.metadata or {}
        top_left = []
        if self.show_patient_text:  # on screen only, never logged
            top_left += [str(md.get(key, "")) for key in ("patient_name", "patient_id") if md.get(key)]
        top_left += [str(md.get(key, "")) for key in ("study_description", "study_date") if md.get(key)]
        top_right = [str(md.get(key, "")) for key in ("institution", "modality", "series_description") if md.get(key)]
        side = str(md.get("laterality") or "").strip().upper()
        if side and side != "U":  # Image Laterality (0020,0062) / Laterality (0020,0060); U = unpaired: not shown
            top_right.append(f"Laterality {side}")
        if self.label:
            top_right.insert(0, self.label)
        nk = v.shape[0]
        bottom_left = [f"Im {self.k + 1}/{nk}" + ("  KEY" if self.k in self.key_images else "")]
        if v.overlays.get(self.k):
            bottom_left.append("Overlay" if self.show_overlays else "Overlay hidden (O)")
        acquired = md.get("acquired")
        if acquired and 0 <= self.k < len(acquired) and not acquired[self.k]:
            bottom_left.append("NOT ACQUIRED")  # a blank missing-slice gap or an interpolated (resampled) slice
        if md.get("kind", "stack") == "stack":
            bottom_left.append(f"Loc {position_text(self.slice_position(), self.slice_normal())}")
        th = md.get("slice_thickness")
        if th:
            bottom_left.append(f"Th {float(th):.1f} mm")
        cal = calibration_text(v)
        wl = self.voi_name if self.voi_name and self.voi_name.startswith("VOI LUT") else \
            f"W {self.window:.0f} L {self.level:.0f}" + (f" {self.voi_name.split()[-1]}" if self.voi_name else "")
        bottom_right = [wl + (" INV" if self.inverted else ""), f"Zoom {self.zoom:.2f}"]
        if self.playing:
            bottom_right.append(f"Cine {self.fps:.0f} fps")
        if cal:
            bottom_right.append(cal)
        return {0: "\n".join(bottom_left), 1: "\n".join(bottom_right), 2: "\n".join(top_left),
                3: "\n".join(top_right)}
