"""Interactive measurement and annotation tools on an ImageView: gestures -> patient points -> measurement objects.

Owns the interaction (which clicks/drags make which tool), the conversion of screen pixels to patient LPS mm
through the view's camera and geometry (``ImageView.display_to_patient``), and drawing finished and in-progress
annotations as screen overlays. The measurement values (length, angles, ROI statistics in patient mm) are
computed by ``viewer.measurements`` - this module only collects the points.

Tools (``view.set_tool(name)``):
  length, arrow        press-drag-release (2 points)
  angle                3 clicks (arm end, vertex, arm end)
  cobb                 two lines, each press-drag-release
  ellipse              press at the centre, drag to a corner of the bounding box
  freehand             press-drag-release along the outline (closed on release)
  probe                click
  text                 click; the text comes from ``controller.ask_text`` (a dialog by default)
Key images are marked on the stack view (``StackViewport.toggle_key_image``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkRenderingCore import vtkActor2D, vtkCoordinate, vtkPolyDataMapper2D, vtkTextActor

TOOLS = ("length", "arrow", "angle", "cobb", "ellipse", "freehand", "probe", "text")


@dataclasses.dataclass
class Annotation:
    """One finished tool result on a view: its kind, patient points and the measurement object it produced."""

    kind: str
    points: list[np.ndarray]          # patient LPS mm
    measurement: object               # a viewer.measurements object
    label: str = ""
    slice_index: int | None = None    # stack index it was made on (None for MPR/oblique planes)


def make_measurement(kind: str, points: list[np.ndarray], view, text: str = ""):
    """Build the ``viewer.measurements`` object for ``kind`` from patient points picked on ``view``'s volume.

    ``ellipse`` points are [centre, end of one semi-axis, end of the other] (screen-aligned); they are turned into
    the DICOM ELLIPSE form (both ends of the major axis, then of the minor axis).
    """
    from viewer import measurements as m

    vol = view.volume
    pts = [tuple(float(c) for c in p) for p in points]
    if kind == "probe":
        return m.PixelProbe.at(vol, pts[0])
    if kind == "ellipse":
        c, a, b = (np.asarray(p, float) for p in points)
        if np.linalg.norm(a - c) < np.linalg.norm(b - c):
            a, b = b, a
        pts = [tuple(c - (a - c)), tuple(a), tuple(c - (b - c)), tuple(b)]
    cls = m.MEASUREMENT_TYPES[kind]
    fields = {"text": text} if text else {}
    return cls.from_volume(vol, pts, **fields)


def describe(measurement) -> str:
    """Short on-screen label of a measurement object (value and unit)."""
    for attr in ("label", "display_text", "text_label"):
        fn = getattr(measurement, attr, None)
        if callable(fn):
            return str(fn())
        if isinstance(fn, str):
            return fn
    return ""


class ToolController:
    """State machine for the active tool of one view, and the overlay drawing of its annotations."""

    def __init__(self, view) -> None:
        self.view = view
        self.annotations: list[Annotation] = []
        self._pending: list[np.ndarray] = []      # patient points of the tool in progress
        self._hover: np.ndarray | None = None
        self._dragging = False
        self.ask_text = self._ask_text_dialog
        r = view.renderer
        self._pts = vtkPoints()
        self._lines = vtkCellArray()
        self._poly = vtkPolyData()
        self._poly.SetPoints(self._pts)
        self._poly.SetLines(self._lines)
        mapper = vtkPolyDataMapper2D()
        mapper.SetInputData(self._poly)
        c = vtkCoordinate()
        c.SetCoordinateSystemToDisplay()
        mapper.SetTransformCoordinate(c)
        self._actor = vtkActor2D()
        self._actor.SetMapper(mapper)
        self._actor.GetProperty().SetColor(0.2, 1.0, 0.3)
        self._actor.GetProperty().SetLineWidth(2)
        r.AddViewProp(self._actor)
        self._texts: list[vtkTextActor] = []

    # ----- lifecycle
    def clear_scene(self) -> None:
        self.annotations.clear()
        self.cancel()

    def cancel(self) -> None:
        self._pending = []
        self._hover = None
        self._dragging = False

    def remove(self, annotation: Annotation) -> None:
        self.annotations.remove(annotation)
        self.view.render()

    # ----- gestures (display coordinates, origin bottom-left)
    def press(self, x: float, y: float) -> None:
        tool = self.view.tool
        p = self.view.display_to_patient(x, y)
        if tool in ("length", "arrow", "ellipse", "freehand"):
            self._pending = [p, p.copy()] if tool != "freehand" else [p]
            self._dragging = True
        elif tool == "cobb":
            self._pending.append(p)
            self._pending.append(p.copy())
            self._dragging = True
        elif tool == "angle":
            self._pending.append(p)
            if len(self._pending) == 3:
                self._finish()
        elif tool == "probe":
            self._pending = [p]
            self._finish()
        elif tool == "text":
            text = self.ask_text()
            if text:
                self._pending = [p]
                self._finish(text=text)
        self.view.render()

    def drag(self, x: float, y: float) -> None:
        if not self._dragging:
            self.hover(x, y)
            return
        p = self.view.display_to_patient(x, y)
        if self.view.tool == "freehand":
            last = self.view.patient_to_display(self._pending[-1])
            if np.hypot(*(last - (x, y))) >= 2.0:
                self._pending.append(p)
        else:
            self._pending[-1] = p
        self.view.render()

    def release(self, x: float, y: float) -> None:
        if not self._dragging:
            return
        self.drag(x, y) if self.view.tool != "freehand" else None
        self._dragging = False
        tool = self.view.tool
        if tool == "freehand":
            self._pending.append(self.view.display_to_patient(x, y))
        if tool in ("length", "arrow", "ellipse"):
            if np.linalg.norm(self._pending[1] - self._pending[0]) > 1e-6:
                self._finish()
            else:
                self.cancel()
        elif tool == "freehand":
            self._finish() if len(self._pending) >= 3 else self.cancel()
        elif tool == "cobb" and len(self._pending) == 4:
            self._finish()
        self.view.render()

    def hover(self, x: float, y: float) -> None:
        if self.view.tool == "angle" and self._pending:
            self._hover = self.view.display_to_patient(x, y)
            self.view.render()

    def double_click(self, x: float, y: float) -> None:
        pass

    def _finish(self, text: str = "") -> None:
        kind = self.view.tool
        pts = [np.asarray(p, float) for p in self._pending]
        if kind == "ellipse":  # centre + corner of the bounding box -> centre + the two semi-axis end points
            pts = self._ellipse_axes(pts[0], pts[1])
        from viewer.measurements import MeasurementError

        try:
            m = make_measurement(kind, pts, self.view, text=text)
        except MeasurementError as exc:   # e.g. a region with no pixel inside: say why, on screen
            self.cancel()
            self.view.show_message(str(exc))
            return
        if self.view.message:
            self.view.message = None
            self.view.overlays.set_notice(None)
        k = getattr(self.view, "k", None) if hasattr(self.view, "toggle_key_image") else None
        ann = Annotation(kind=kind, points=pts, measurement=m, label=text or describe(m), slice_index=k)
        self.annotations.append(ann)
        self.cancel()
        self.view.measurementAdded.emit(m)

    def _ellipse_axes(self, centre: np.ndarray, corner: np.ndarray) -> list[np.ndarray]:
        """Centre and the ends of the two semi-axes, aligned with the screen axes of the view."""
        v = self.view
        c_d = v.patient_to_display(centre)
        k_d = v.patient_to_display(corner)
        a = v.display_to_patient(k_d[0], c_d[1])
        b = v.display_to_patient(c_d[0], k_d[1])
        return [centre, a, b]

    def _ask_text_dialog(self) -> str:
        from PySide6.QtWidgets import QInputDialog

        text, ok = QInputDialog.getText(self.view, "Annotation", "Text:")
        return text if ok else ""

    # ----- drawing
    def _visible(self, ann: Annotation) -> bool:
        if ann.slice_index is not None and hasattr(self.view, "k"):
            return ann.slice_index == self.view.k
        tol = 0.5 * max(getattr(self.view, "slab_mm", 0.0) or 0.0, self.view.native_pixel_mm())
        return all(self.view.distance_from_plane(p) <= tol + 1e-6 for p in ann.points)

    def _shape(self, kind: str, pts: list[np.ndarray], closed_ellipse: bool = True) -> list[list[np.ndarray]]:
        """Display-coordinate polylines for a tool's points."""
        d = [self.view.patient_to_display(p) for p in pts]
        if kind in ("length",):
            return [d[:2]]
        if kind == "arrow":
            tip, tail = d[0], d[1]
            v = tail - tip
            n = np.linalg.norm(v) or 1.0
            u = v / n
            w = np.array([-u[1], u[0]])
            head = 12.0
            return [[tail, tip], [tip + u * head + w * head * 0.5, tip, tip + u * head - w * head * 0.5]]
        if kind == "angle":
            return [d[:3]]
        if kind == "cobb":
            return [d[0:2]] + ([d[2:4]] if len(d) >= 4 else [])
        if kind == "ellipse" and len(d) == 3:
            c, a, b = d
            t = np.linspace(0, 2 * math.pi, 65)
            return [[c + (a - c) * math.cos(s) + (b - c) * math.sin(s) for s in t]]
        if kind == "freehand":
            return [d + [d[0]]] if closed_ellipse else [d]
        if kind in ("probe", "text"):
            p = d[0]
            return [[p + (-5, 0), p + (5, 0)], [p + (0, -5), p + (0, 5)]]
        return [d]

    def update_overlay(self) -> None:
        if not self.annotations and not self._pending and self._pts.GetNumberOfPoints() == 0:
            return  # nothing drawn before or now: leave the (empty) layer alone
        self._pts.Reset()
        self._lines.Reset()
        labels: list[tuple[np.ndarray, str]] = []
        if self.view.volume is not None:
            for ann in self.annotations:
                if not self._visible(ann):
                    continue
                for line in self._shape(ann.kind, ann.points):
                    self._add_line(line)
                anchor = self.view.patient_to_display(ann.points[-1 if ann.kind != "text" else 0])
                if ann.label:
                    labels.append((anchor + (8, 8), ann.label))
            if self._pending:
                pend = list(self._pending) + ([self._hover] if self._hover is not None else [])
                kind = self.view.tool
                if kind == "ellipse" and len(pend) == 2:
                    pend = self._ellipse_axes(pend[0], pend[1])
                for line in self._shape(kind, pend, closed_ellipse=False):
                    self._add_line(line)
        self._pts.Modified()
        self._lines.Modified()
        self._poly.Modified()
        while len(self._texts) < len(labels):
            t = vtkTextActor()
            t.GetTextProperty().SetFontSize(13)
            t.GetTextProperty().SetColor(0.3, 1.0, 0.4)
            self.view.renderer.AddViewProp(t)
            self._texts.append(t)
        for i, t in enumerate(self._texts):
            if i < len(labels):
                t.SetInput(labels[i][1])
                t.SetPosition(*labels[i][0])
                t.SetVisibility(True)
            else:
                t.SetVisibility(False)

    def _add_line(self, pts: list[np.ndarray]) -> None:
        if len(pts) < 2:
            return
        ids = [self._pts.InsertNextPoint(float(p[0]), float(p[1]), 0.0) for p in pts]
        self._lines.InsertNextCell(len(ids))
        for i in ids:
            self._lines.InsertCellPoint(i)
