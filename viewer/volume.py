"""Volume: voxels in modality units plus the geometry that places them in the patient.

Owns the contract shared by the loader, the renderers, the measurement tools and the QA suite:

* ``Volume.voxels`` - numpy array indexed ``[k, j, i]`` = [slice, row, column], modality units (rescale
  slope/intercept or Modality LUT applied; HU for CT), slices in spatial order along the slice normal.
* ``Volume.index_to_patient(k, j, i)`` - the DICOM patient coordinate (mm, LPS) of that voxel centre;
  ``Volume.patient_to_index(x, y, z)`` its inverse. Keep these signatures: the QA suite uses them.

The loader (``load_series``) fills this from DICOM; see its docstring for what it handles and refuses.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Overlay:
    """One DICOM overlay plane (60xx) of one slice, clipped to the image: its set pixels, bit-packed (an overlay
    on every frame of a long cine stays small), starting at image row ``row0``, column ``col0``. ``kind`` is
    "G" (graphics) or "R" (ROI). :meth:`full_mask` gives it on the whole image grid (``[j, i]``)."""

    group: int
    bits: np.ndarray               # np.packbits of the clipped boolean mask
    shape: tuple[int, int]         # (rows, columns) of the clipped mask
    row0: int = 0
    col0: int = 0
    kind: str = "G"
    label: str = ""

    @classmethod
    def from_mask(cls, group: int, mask: np.ndarray, row0: int, col0: int, kind: str = "G", label: str = ""):
        return cls(group, np.packbits(mask, axis=None), (int(mask.shape[0]), int(mask.shape[1])), row0, col0,
                   kind, label)

    @property
    def mask(self) -> np.ndarray:
        h, w = self.shape
        return np.unpackbits(self.bits, count=h * w).reshape(h, w).astype(bool)

    def full_mask(self, rows: int, cols: int) -> np.ndarray:
        out = np.zeros((rows, cols), dtype=bool)
        h, w = self.shape
        out[self.row0:self.row0 + h, self.col0:self.col0 + w] = self.mask
        return out


@dataclasses.dataclass
class Volume:
    voxels: np.ndarray                 # [k, j, i] (or [frame, row, col, 3] for colour cine), modality units
    origin: np.ndarray                 # LPS mm of voxel (0, 0, 0) centre
    row_direction: np.ndarray          # unit vector along increasing i (DICOM IOP first triplet)
    column_direction: np.ndarray       # unit vector along increasing j (DICOM IOP second triplet)
    slice_direction: np.ndarray        # unit vector from slice k to k+1 (may be non-orthogonal: gantry tilt)
    spacing: tuple[float, float, float]  # (slice step, row spacing, column spacing) in mm: (dk, dj, di)
    metadata: dict = dataclasses.field(default_factory=dict)  # plain values only (modality, UIDs, window ...)
    warnings: list[str] = dataclasses.field(default_factory=list)  # shown on screen (e.g. missing spacing)
    overlays: dict[int, list[Overlay]] = dataclasses.field(default_factory=dict)  # slice k -> its overlay planes

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) -> (x, y, z, 1) in LPS mm."""
        m = np.eye(4)
        dk, dj, di = self.spacing
        m[:3, 0] = np.asarray(self.row_direction, float) * di
        m[:3, 1] = np.asarray(self.column_direction, float) * dj
        m[:3, 2] = np.asarray(self.slice_direction, float) * dk
        m[:3, 3] = self.origin
        return m

    def index_to_patient(self, k: float, j: float, i: float) -> np.ndarray:
        return (self.affine @ np.array([i, j, k, 1.0]))[:3]

    def patient_to_index(self, x: float, y: float, z: float) -> np.ndarray:
        """Inverse of :meth:`index_to_patient`: returns (k, j, i) as floats."""
        i, j, k, _ = np.linalg.solve(self.affine, np.array([x, y, z, 1.0]))
        return np.array([k, j, i])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.voxels.shape)


# The loader lives in viewer/loader.py; re-exported here (lazily, so either module can be imported first) so
# `from viewer.volume import load_series, SeriesError, VolumeBuilder` works.
_LOADER_NAMES = ("load_series", "SeriesError", "VolumeBuilder")


def __getattr__(name: str):
    if name in _LOADER_NAMES:
        from viewer import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
