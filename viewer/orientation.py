"""Orientation labels: which way the patient lies at each screen edge (L/R/A/P/S/I), from the geometry.

Owns the mapping from a patient direction (DICOM LPS: +x = patient Left, +y = Posterior, +z = Superior) to its
letters, the four screen-edge labels of an image whose rows run along ``row_direction`` (left -> right on
screen) and whose columns run along ``column_direction`` (top -> bottom), and the plane name. Obliques get
several letters, strongest first ("LA", "RPS"); a component counts when it is at least ``threshold`` of the unit
vector (default 0.25, i.e. about 14.5 degrees out of the plane). No Qt, no VTK.
Radiographs without Image Orientation (Patient) use Patient Orientation (0020,0020) (letters A/P/L/R/H/F).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))      # per LPS axis: (negative, positive)
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S", "H": "F", "F": "H"}
DEFAULT_THRESHOLD = 0.25


@dataclasses.dataclass(frozen=True)
class ScreenLabels:
    left: str
    right: str
    top: str
    bottom: str


def direction_label(vector: Sequence[float], threshold: float = DEFAULT_THRESHOLD, max_letters: int = 3) -> str:
    """Letters for the patient direction ``vector`` (LPS), strongest component first: (1,0,0) -> "L",
    (0.7,-0.7,0) -> "LA" or "AL" by magnitude, (-0.6,0.5,0.6) -> "RSP"-style. Empty for a zero vector."""
    v = np.asarray(vector, dtype=float)
    n = float(np.linalg.norm(v))
    if n == 0 or not np.isfinite(n):
        return ""
    v = v / n
    out = []
    for axis in sorted(range(3), key=lambda a: (-abs(v[a]), a)):
        if abs(v[axis]) >= threshold and len(out) < max_letters:
            out.append(_LETTERS[axis][1 if v[axis] > 0 else 0])
    return "".join(out)


def opposite(label: str) -> str:
    return "".join(_OPPOSITE.get(c, c) for c in label)


def screen_labels(row_direction: Sequence[float], column_direction: Sequence[float],
                  threshold: float = DEFAULT_THRESHOLD) -> ScreenLabels:
    """Labels for the four screen edges of an image displayed unrotated (rows left->right, columns top->down)."""
    row = np.asarray(row_direction, dtype=float)
    col = np.asarray(column_direction, dtype=float)
    return ScreenLabels(left=direction_label(-row, threshold), right=direction_label(row, threshold),
                        top=direction_label(-col, threshold), bottom=direction_label(col, threshold))


def labels_from_patient_orientation(values: Sequence[str]) -> ScreenLabels | None:
    """Screen labels from Patient Orientation (0020,0020), e.g. ["P", "F"] -> right "P", bottom "I"."""
    if not values or len(values) != 2:
        return None
    conv = str.maketrans({"H": "S", "F": "I"})
    row, col = (str(v).upper().translate(conv) for v in values)
    if not row or not col:
        return None
    return ScreenLabels(left=opposite(row), right=row, top=opposite(col), bottom=col)


def plane_name(row_direction: Sequence[float], column_direction: Sequence[float],
               max_obliquity_deg: float = 10.0) -> str:
    """"axial" | "coronal" | "sagittal" when the image normal is within ``max_obliquity_deg`` of an axis,
    else "oblique"."""
    normal = np.cross(np.asarray(row_direction, float), np.asarray(column_direction, float))
    n = float(np.linalg.norm(normal))
    if n == 0:
        return "oblique"
    normal = np.abs(normal / n)
    axis = int(np.argmax(normal))
    if normal[axis] < np.cos(np.radians(max_obliquity_deg)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def volume_screen_labels(volume, threshold: float = DEFAULT_THRESHOLD) -> ScreenLabels | None:
    """Screen labels for slices of a :class:`viewer.volume.Volume` shown in acquisition orientation; None when
    the volume has no patient geometry (projection images without orientation, cine, uncalibrated)."""
    md = getattr(volume, "metadata", {}) or {}
    if md.get("kind") == "stack":
        return screen_labels(volume.row_direction, volume.column_direction, threshold)
    po = md.get("patient_orientation")
    if po:
        return labels_from_patient_orientation(po)
    return None
