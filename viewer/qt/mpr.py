"""Multiplanar reformatting: axial, coronal, sagittal and oblique planes in patient space, with slab MIP/MinIP/average.

Owns the reslice geometry. A plane is a centre point ``c`` and two in-plane unit vectors (screen right ``ex``,
screen down ``ey``) in patient LPS mm; the view's world coordinates are plane coordinates (u, v, w), so
``world_to_patient = [ex ey n c]``. vtkImageReslice maps them into the volume's data coordinates through the
inverse of the volume's direction matrix, which is exact for sheared (gantry-tilted) stacks too. The reslice
reads the volume's shared numpy buffer (``vtk_bridge``); only the 2D output plane is allocated.

``MprViewport`` is one plane view; ``MprWidget`` holds the three standard views with a linked crosshair
(one patient point shared by all three), oblique rotation about a view's normal, and slab thickness/mode.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QGridLayout, QWidget
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkImagingCore import vtkImageReslice
from vtkmodules.vtkRenderingCore import vtkActor2D, vtkCoordinate, vtkImageSliceMapper, vtkPolyDataMapper2D

from viewer.orientation import plane_name
from viewer.qt.events import event
from viewer.qt.overlays import position_text
from viewer.qt.viewport import ImageView, calibration_text, default_window_level
from viewer.qt.vtk_bridge import SharedImage, data_to_patient, to_vtk_matrix, volume_to_vtk_image

# screen right, screen down (LPS) of the standard planes, radiological convention
STANDARD_PLANES = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),       # patient left on screen right, posterior down
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),    # patient left on screen right, inferior down
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),   # posterior on screen right, inferior down
}
SLAB_MODES = ("mip", "minip", "average")


class NotReformattable(ValueError):
    """This series cannot be shown as MPR (said in words for the reader)."""


def check_reformattable(volume) -> None:
    """Refuse series that have no 3D geometry: colour cine, projection images, single slices."""
    md = volume.metadata or {}
    if volume.voxels.ndim != 3:
        raise NotReformattable("MPR needs a grey-scale cross-sectional series; this one is colour")
    if md.get("kind", "stack") != "stack":
        raise NotReformattable("MPR needs a cross-sectional series (CT, MR ...); this one is a projection or cine")
    if volume.voxels.shape[0] < 2:
        raise NotReformattable("MPR needs more than one slice")


def rotation_matrix(axis, angle_deg: float) -> np.ndarray:
    """Rotation by ``angle_deg`` about unit ``axis`` (right-hand rule)."""
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    t = np.radians(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


class MprViewport(ImageView):
    """One reformatted plane of a Volume."""

    planeChanged = event()
    rotateRequested = event()   # degrees: ctrl+drag around the crosshair turns the other planes (oblique)
    slabRequested = event()     # (thickness_mm, mode) from the keyboard: [ ] thinner/thicker, M cycles the mode

    def __init__(self, parent: QWidget | None = None, orientation: str = "axial") -> None:
        super().__init__(parent)
        self.orientation = orientation
        self.reslice = vtkImageReslice()
        self.reslice.SetOutputDimensionality(2)
        self.reslice.SetInterpolationModeToLinear()
        self.reslice.SetBackgroundLevel(-1024.0)
        self.reslice.AutoCropOutputOff()
        self.mapper = vtkImageSliceMapper()
        self.mapper.SetInputConnection(self.reslice.GetOutputPort())
        self.image_slice.SetMapper(self.mapper)
        self.ex = np.array(STANDARD_PLANES[orientation][0])
        self.ey = np.array(STANDARD_PLANES[orientation][1])
        self.centre = np.zeros(3)
        self.slab_mm = 0.0
        self.slab_mode = "mip"
        self.out_spacing = 1.0
        self._d2p_inv = np.eye(4)
        self._bounds = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0)
        self.crosshair_point: np.ndarray | None = None
        self.crosshair_dirs: list[np.ndarray] = []   # in-plane directions (LPS) of the other planes' traces
        self._xh_pts = vtkPoints()
        self._xh_lines = vtkCellArray()
        poly = vtkPolyData()
        poly.SetPoints(self._xh_pts)
        poly.SetLines(self._xh_lines)
        self._xh_poly = poly
        m = vtkPolyDataMapper2D()
        m.SetInputData(poly)
        c = vtkCoordinate()
        c.SetCoordinateSystemToDisplay()
        m.SetTransformCoordinate(c)
        self._xh_actor = vtkActor2D()
        self._xh_actor.SetMapper(m)
        self._xh_actor.GetProperty().SetColor(0.3, 0.7, 1.0)
        self._xh_actor.GetProperty().SetLineWidth(1)
        self.renderer.AddViewProp(self._xh_actor)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.ex, self.ey)
        return n / np.linalg.norm(n)

    def set_volume(self, volume, shared: SharedImage | None = None, centre=None) -> None:
        check_reformattable(volume)
        self.volume = volume
        self.shared = shared or volume_to_vtk_image(volume)
        self.reslice.SetInputData(self.shared.image)
        md = volume.metadata or {}
        fill = md.get("fill_value")
        if fill is None:
            fill = -1024.0 if str(md.get("modality", "")).upper() == "CT" else float(volume.voxels.reshape(-1)[::997].min())
        self.reslice.SetBackgroundLevel(float(fill))
        self._d2p_inv = np.linalg.inv(data_to_patient(volume))
        dk, dj, di = (float(s) for s in volume.spacing)
        self.out_spacing = min(di, dj, dk)
        nk, nj, ni = volume.shape[:3]
        if centre is None:
            centre = volume.index_to_patient((nk - 1) / 2, (nj - 1) / 2, (ni - 1) / 2)
        self.centre = np.asarray(centre, float)
        self.renderer.AddViewProp(self.image_slice)
        self.tools.clear_scene()
        self.set_window_level(*default_window_level(volume), emit=False)
        self.set_inverted(bool((volume.metadata or {}).get("invert", False)))
        self._update_reslice()
        self.fit()

    # ----- plane
    def set_plane(self, ex=None, ey=None, centre=None, refit: bool = False) -> None:
        if ex is not None:
            self.ex = np.asarray(ex, float) / np.linalg.norm(ex)
        if ey is not None:
            ey = np.asarray(ey, float)
            ey = ey - (ey @ self.ex) * self.ex
            self.ey = ey / np.linalg.norm(ey)
        if centre is not None:
            self.centre = np.asarray(centre, float)
        self.orientation = plane_name(self.ex, self.ey)
        self._update_reslice()
        if refit:
            self.fit()
        else:
            self._apply_camera_orientation()
            self.render()
        self.planeChanged.emit()

    def set_slab(self, thickness_mm: float, mode: str = "mip") -> None:
        """Slab thickness in mm (0 = thin plane) and its projection: mip, minip or average."""
        if mode not in SLAB_MODES:
            raise ValueError(f"slab mode must be one of {SLAB_MODES}")
        self.slab_mm = max(0.0, float(thickness_mm))
        self.slab_mode = mode
        self._update_reslice()
        self.render()

    def _update_reslice(self) -> None:
        if self.volume is None:
            return
        w2p = self.world_to_patient()
        axes = self._d2p_inv @ w2p    # plane coords -> data coords
        self.reslice.SetResliceAxes(to_vtk_matrix(axes))
        # output extent: the volume's corners projected on the plane axes
        nk, nj, ni = self.volume.shape[:3]
        corners = np.array([self.volume.index_to_patient(k, j, i)
                            for k in (0, nk - 1) for j in (0, nj - 1) for i in (0, ni - 1)])
        rel = corners - self.centre
        u, v = rel @ self.ex, rel @ self.ey
        s = self.out_spacing
        u0, u1 = np.floor(u.min() / s), np.ceil(u.max() / s)
        v0, v1 = np.floor(v.min() / s), np.ceil(v.max() / s)
        self.reslice.SetOutputSpacing(s, s, s)
        self.reslice.SetOutputOrigin(0.0, 0.0, 0.0)
        self.reslice.SetOutputExtent(int(u0), int(u1), int(v0), int(v1), 0, 0)
        self._bounds = (u0 * s, u1 * s, v0 * s, v1 * s, 0.0, 0.0)
        if self.slab_mm > s:
            self.reslice.SetSlabNumberOfSlices(max(1, round(self.slab_mm / s)))
            {"mip": self.reslice.SetSlabModeToMax, "minip": self.reslice.SetSlabModeToMin,
             "average": self.reslice.SetSlabModeToMean}[self.slab_mode]()
        else:
            self.reslice.SetSlabNumberOfSlices(1)
        self.reslice.Modified()

    def world_to_patient(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = self.ex, self.ey, self.normal, self.centre
        return m

    def image_bounds(self):
        return self._bounds

    def native_pixel_mm(self) -> float:
        return self.out_spacing

    def scroll(self, delta: int) -> None:
        """Move the plane along its normal by ``delta`` steps of the finest voxel spacing."""
        self.set_plane(centre=self.centre + self.normal * self.out_spacing * delta)

    def page_size(self) -> int:
        return 10

    def is_calibrated(self) -> bool:
        return calibration_text(self.volume) != "UNCALIBRATED" if self.volume is not None else True

    def slice_location(self) -> float:
        return float(self.centre @ self.normal)

    # ----- gestures specific to MPR
    def _mouse_press(self, ev) -> None:
        from PySide6.QtCore import Qt

        if ev.button() == Qt.LeftButton and ev.modifiers() & Qt.ControlModifier and self.crosshair_point is not None:
            x, y = self.qt_to_display(ev.position())
            self._drag = {"mode": "rotate", "x": x, "y": y, "acc": 0.0}
            return
        super()._mouse_press(ev)

    def _mouse_move(self, ev) -> None:
        if self._drag and self._drag["mode"] == "rotate":
            x, y = self.qt_to_display(ev.position())
            c = self.patient_to_display(self.crosshair_point)
            a0 = np.degrees(np.arctan2(self._drag["y"] - c[1], self._drag["x"] - c[0]))
            a1 = np.degrees(np.arctan2(y - c[1], x - c[0]))
            self._drag["x"], self._drag["y"] = x, y
            delta = (a1 - a0 + 180.0) % 360.0 - 180.0
            if delta:
                self.rotateRequested.emit(float(delta))
            return
        super()._mouse_move(ev)

    def _key(self, ev) -> None:
        from PySide6.QtCore import Qt

        k = ev.key()
        if k in (Qt.Key_BracketRight, Qt.Key_BracketLeft):
            step = 2.0 if k == Qt.Key_BracketRight else -2.0
            self.slabRequested.emit(max(0.0, self.slab_mm + step), self.slab_mode)
        elif k == Qt.Key_M:
            mode = SLAB_MODES[(SLAB_MODES.index(self.slab_mode) + 1) % len(SLAB_MODES)]
            self.slabRequested.emit(self.slab_mm, mode)
        else:
            super()._key(ev)

    # ----- overlays
    def update_overlays(self) -> None:
        super().update_overlays()
        self._xh_pts.Reset()
        self._xh_lines.Reset()
        if self.crosshair_point is not None:
            c = self.patient_to_display(self.crosshair_point)
            w, h = self.viewport_px()
            span = float(w + h)
            for d in self.crosshair_dirs:
                d2 = self.patient_to_display(self.crosshair_point + d * 10.0) - c
                nrm = np.linalg.norm(d2)
                if nrm < 1e-6:
                    continue
                d2 = d2 / nrm
                gap = 12.0
                for sgn in (1, -1):
                    a = c + sgn * d2 * gap
                    b = c + sgn * d2 * span
                    i0 = self._xh_pts.InsertNextPoint(a[0], a[1], 0)
                    i1 = self._xh_pts.InsertNextPoint(b[0], b[1], 0)
                    self._xh_lines.InsertNextCell(2)
                    self._xh_lines.InsertCellPoint(i0)
                    self._xh_lines.InsertCellPoint(i1)
        self._xh_pts.Modified()
        self._xh_lines.Modified()
        self._xh_poly.Modified()

    def corner_texts(self) -> dict[int, str]:
        md = self.volume.metadata or {}
        name = self.orientation if self.orientation in STANDARD_PLANES else "oblique"
        bottom_left = [f"{name.capitalize()}  Loc {position_text(self.centre, self.normal)}"]
        if self.slab_mm > self.out_spacing:
            bottom_left.append(f"Slab {self.slab_mm:.1f} mm {self.slab_mode.upper()}")
        top_left = []
        if self.show_patient_text:
            top_left = [str(md[k]) for k in ("patient_name", "patient_id") if md.get(k)]
        bottom_right = [f"W {self.window:.0f} L {self.level:.0f}" + (" INV" if self.inverted else ""),
                        f"Zoom {self.zoom:.2f}"]
        cal = calibration_text(self.volume)
        if cal:
            bottom_right.append(cal)
        top_right = "\n".join(t for t in (self.label, str(md.get("series_description", ""))) if t)
        return {0: "\n".join(bottom_left), 1: "\n".join(bottom_right), 2: "\n".join(top_left), 3: top_right}


class MprWidget(QWidget):
    """Axial, coronal and sagittal views of one Volume sharing a crosshair point and window/level."""

    def __init__(self, parent: QWidget | None = None, with_3d: bool = False) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        self.views = {name: MprViewport(self, name) for name in STANDARD_PLANES}
        grid.addWidget(self.views["axial"], 0, 0)
        grid.addWidget(self.views["coronal"], 0, 1)
        grid.addWidget(self.views["sagittal"], 1, 0)
        self.view3d = None
        if with_3d:
            from viewer.qt.volume3d import VolumeView

            self.view3d = VolumeView(self)
            grid.addWidget(self.view3d, 1, 1)
        self.point = np.zeros(3)
        self._linking = False
        for name, v in self.views.items():
            v.cursorPicked.connect(self.set_crosshair)
            v.windowLevelChanged.connect(self._link_wl)
            v.rotateRequested.connect(lambda deg, n=name: self.rotate_oblique(n, deg))
            v.slabRequested.connect(self.set_slab)
            v.set_tool("crosshair")

    def set_volume(self, volume, shared: SharedImage | None = None) -> None:
        check_reformattable(volume)
        shared = shared or volume_to_vtk_image(volume)
        self.volume = volume
        nk, nj, ni = volume.shape[:3]
        centre = volume.index_to_patient((nk - 1) / 2, (nj - 1) / 2, (ni - 1) / 2)
        for name, v in self.views.items():
            v.ex, v.ey = (np.array(a) for a in STANDARD_PLANES[name])
            v.set_volume(volume, shared=shared, centre=centre)
        if self.view3d is not None:
            self.view3d.set_volume(volume, shared=shared)
        self.set_crosshair(centre)

    def set_crosshair(self, p) -> None:
        """Move all three planes through patient point ``p`` and draw the other planes' traces."""
        self.point = np.asarray(p, float)
        for name, v in self.views.items():
            v.crosshair_point = self.point
            v.crosshair_dirs = [np.cross(v.normal, o.normal) for n2, o in self.views.items() if n2 != name]
            # move only along the normal: the in-plane frame (and the image on screen) stays put
            v.set_plane(centre=v.centre + ((self.point - v.centre) @ v.normal) * v.normal)

    def rotate_oblique(self, about: str, angle_deg: float) -> None:
        """Rotate the other two planes by ``angle_deg`` about the normal of view ``about`` (through the
        crosshair point): the oblique MPR of the crosshair's rotation handle."""
        r = rotation_matrix(self.views[about].normal, angle_deg)
        for name, v in self.views.items():
            if name != about:
                before = v.patient_to_display(self.point)
                v.set_plane(ex=r @ v.ex, ey=r @ v.ey, centre=self.point)
                after = v.patient_to_display(self.point)
                v.pan(*(before - after))            # the crosshair stays where it was on screen
        self.set_crosshair(self.point)

    def set_slab(self, thickness_mm: float, mode: str = "mip") -> None:
        for v in self.views.values():
            v.set_slab(thickness_mm, mode)

    def _link_wl(self, w: float, lv: float) -> None:
        if self._linking:
            return
        self._linking = True
        try:
            for v in self.views.values():
                if (v.window, v.level) != (w, lv):
                    v.set_window_level(w, lv)
        finally:
            self._linking = False
