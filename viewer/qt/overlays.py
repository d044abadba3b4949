"""On-screen overlays of an image view: orientation letters, corner text, scale bar, calibration state, notices.

Owns how these look and where they sit. What they say comes from the geometry (orientation letters are
computed from the camera's screen axes mapped into patient LPS) and from ``Volume.metadata``. Patient text
is drawn on screen only; nothing here logs it.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkRenderingCore import vtkActor2D, vtkCoordinate, vtkPolyDataMapper2D, vtkTextActor

from viewer.orientation import direction_label


def direction_letters(v) -> str:
    """Orientation letters for a patient-space (LPS) direction, strongest component first ("L", "AS", ...)."""
    return direction_label(v)


def position_text(point, normal) -> str:
    """Slice location as radiologists read it: the patient coordinate along the axis closest to the slice
    normal, with its direction letter ("S 12.5 mm", "R 31.5 mm", "A 24.0 mm")."""
    n = np.asarray(normal, float)
    axis = int(np.argmax(np.abs(n)))
    v = float(np.asarray(point, float)[axis])
    letters = (("R", "L"), ("A", "P"), ("I", "S"))[axis]
    return f"{letters[1] if v >= 0 else letters[0]} {abs(v):.1f} mm"


def nice_length(max_mm: float) -> float:
    """Largest 1/2/5 x 10^n not above ``max_mm`` (scale bar length)."""
    if max_mm <= 0:
        return 0.0
    exp = math.floor(math.log10(max_mm))
    for m in (5, 2, 1):
        if m * 10 ** exp <= max_mm:
            return m * 10 ** exp
    return 10 ** exp


class Overlays:
    """The 2D actors drawn over one renderer; ``update`` positions them for the current camera."""

    def __init__(self, renderer) -> None:
        self.renderer = renderer
        # corner texts: plain text actors with a fixed font (vtkCornerAnnotation re-fits its font every frame,
        # which cost more than the image itself); a text is re-rasterised only when it changes
        self.corners: dict[int, vtkTextActor] = {}
        places = {0: (0.005, 0.005, "left", "bottom"), 1: (0.995, 0.005, "right", "bottom"),
                  2: (0.005, 0.995, "left", "top"), 3: (0.995, 0.995, "right", "top")}
        for idx, (x, y, hj, vj) in places.items():
            t = vtkTextActor()
            tp = t.GetTextProperty()
            tp.SetFontSize(14)
            tp.SetFontFamilyToCourier()
            tp.SetColor(0.95, 0.95, 0.7)
            tp.SetJustificationToLeft() if hj == "left" else tp.SetJustificationToRight()
            tp.SetVerticalJustificationToBottom() if vj == "bottom" else tp.SetVerticalJustificationToTop()
            t.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
            t.SetPosition(x, y)
            renderer.AddViewProp(t)
            self.corners[idx] = t
        self._corner_text: dict[int, str] = {}
        self.letters: dict[str, vtkTextActor] = {}
        for side in ("left", "right", "top", "bottom"):
            t = vtkTextActor()
            tp = t.GetTextProperty()
            tp.SetFontSize(18)
            tp.SetBold(True)
            tp.SetColor(1.0, 0.85, 0.2)
            tp.SetJustificationToCentered()
            tp.SetVerticalJustificationToCentered()
            t.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
            pos = {"left": (0.02, 0.5), "right": (0.98, 0.5), "top": (0.5, 0.97), "bottom": (0.5, 0.03)}[side]
            t.SetPosition(*pos)
            renderer.AddViewProp(t)
            self.letters[side] = t
        # scale bar: a polyline in display coordinates plus its label
        self._bar_pts = vtkPoints()
        self._bar_pts.SetNumberOfPoints(4)
        lines = vtkCellArray()
        lines.InsertNextCell(4)
        for i in range(4):
            lines.InsertCellPoint(i)
        self._bar_poly = vtkPolyData()
        self._bar_poly.SetPoints(self._bar_pts)
        self._bar_poly.SetLines(lines)
        m = vtkPolyDataMapper2D()
        m.SetInputData(self._bar_poly)
        c = vtkCoordinate()
        c.SetCoordinateSystemToDisplay()
        m.SetTransformCoordinate(c)
        self.bar = vtkActor2D()
        self.bar.SetMapper(m)
        self.bar.GetProperty().SetColor(0.9, 0.9, 0.9)
        self.bar.GetProperty().SetLineWidth(2)
        renderer.AddViewProp(self.bar)
        self.bar_label = vtkTextActor()
        self.bar_label.GetTextProperty().SetFontSize(12)
        self.bar_label.GetTextProperty().SetColor(0.9, 0.9, 0.9)
        self.bar_label.GetTextProperty().SetJustificationToCentered()
        renderer.AddViewProp(self.bar_label)
        self.bar_mm = 0.0
        self.notice = vtkTextActor()  # centre notice ("loading slice ...")
        self.notice.GetTextProperty().SetFontSize(20)
        self.notice.GetTextProperty().SetColor(1.0, 0.6, 0.2)
        self.notice.GetTextProperty().SetJustificationToCentered()
        self.notice.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        self.notice.SetPosition(0.5, 0.5)
        self.notice.SetVisibility(False)
        renderer.AddViewProp(self.notice)
        # loader warnings (missing spacing, missing slices, gantry tilt, ...): amber, top centre, under the top
        # orientation letter, always on while the series is shown (house rule: when unsure, say so on screen)
        self.warning = vtkTextActor()
        wp = self.warning.GetTextProperty()
        wp.SetFontSize(13)
        wp.SetBold(True)
        wp.SetColor(1.0, 0.7, 0.0)
        wp.SetJustificationToCentered()
        wp.SetVerticalJustificationToTop()
        self.warning.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        self.warning.SetPosition(0.5, 0.93)
        self.warning.SetVisibility(False)
        renderer.AddViewProp(self.warning)
        self._warning_text = ""

    def set_letters(self, right_lps, down_lps) -> dict[str, str]:
        """Letters at the four edges for the patient directions of screen right and screen down (None: none)."""
        if right_lps is None:
            for t in self.letters.values():
                t.SetInput("")
            return {"left": "", "right": "", "top": "", "bottom": ""}
        right = direction_letters(right_lps)
        left = direction_letters(-np.asarray(right_lps, float))
        down = direction_letters(down_lps)
        up = direction_letters(-np.asarray(down_lps, float))
        out = {"left": left, "right": right, "top": up, "bottom": down}
        for side, text in out.items():
            self.letters[side].SetInput(text)
        return out

    def set_corners(self, texts: dict[int, str]) -> None:
        """Corner texts: 0 lower-left, 1 lower-right, 2 upper-left, 3 upper-right (only changed ones are redone)."""
        for idx in range(4):
            text = texts.get(idx, "")
            if self._corner_text.get(idx) != text:
                self._corner_text[idx] = text
                self.corners[idx].SetInput(text or " ")

    def corner_text(self, idx: int) -> str:
        return self._corner_text.get(idx, "")

    def set_scale_bar(self, mm_per_pixel: float | None, viewport_px: tuple[int, int], calibrated: bool = True,
                      suffix: str = "") -> None:
        """Horizontal scale bar at the bottom centre, about a fifth of the width, with its length in mm
        (``suffix`` e.g. " (detector)" says what the mm are calibrated to)."""
        w, h = viewport_px
        if not mm_per_pixel or w < 20 or not calibrated:
            self.bar.SetVisibility(False)
            self.bar_label.SetVisibility(False)
            self.bar_mm = 0.0
            return
        key = (mm_per_pixel, w, h, suffix)
        if key == getattr(self, "_bar_key", None) and self.bar.GetVisibility():
            return
        self._bar_key = key
        mm = nice_length(w * 0.2 * mm_per_pixel)
        px = mm / mm_per_pixel
        x0, y0 = (w - px) / 2.0, 0.08 * h
        tick = 6
        for i, (x, y) in enumerate(((x0, y0 + tick), (x0, y0), (x0 + px, y0), (x0 + px, y0 + tick))):
            self._bar_pts.SetPoint(i, x, y, 0)
        self._bar_pts.Modified()
        self.bar_label.SetInput(f"{mm:g} mm{suffix}")
        self.bar_label.SetPosition(w / 2.0, y0 + 4)
        self.bar.SetVisibility(True)
        self.bar_label.SetVisibility(True)
        self.bar_mm = mm

    def set_warnings(self, warnings, viewport_px: tuple[int, int] | None = None) -> None:
        """The series' loader warnings, one "! " line each (wrapped), in amber; empty hides them. With the
        viewport size, the block sits just below the taller of the two top corner texts (never over them)."""
        if viewport_px is not None:
            h = max(int(viewport_px[1]), 1)
            top_lines = max(len(self._corner_text.get(i, "").splitlines()) for i in (2, 3))
            self.warning.SetPosition(0.5, 1.0 - max(32.0, 6.0 + 17.0 * top_lines) / h)
        lines = []
        for w in warnings or ():
            lines += textwrap.wrap(f"! {w}", 56, subsequent_indent="  ") or []
        text = "\n".join(lines)
        if text != self._warning_text:
            self._warning_text = text
            self.warning.SetInput(text or " ")
            self.warning.SetVisibility(bool(text))

    def warning_text(self) -> str:
        return self._warning_text if self.warning.GetVisibility() else ""

    def set_notice(self, text: str | None) -> None:
        self.notice.SetVisibility(bool(text))
        self.notice.SetInput(text or "")
