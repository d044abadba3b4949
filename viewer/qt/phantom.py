"""Synthetic CT-like phantoms with exactly known geometry, for rendering tests, screenshots and benches.

Owns only test/bench data generation (numpy; no Qt, no VTK): a Volume in any of the three standard
orientations containing air, a soft-tissue cylinder, a bone block of known size and a bright marker sphere at
a known patient position.
"""
from __future__ import annotations

import numpy as np

from viewer.volume import Volume

ORIENTATIONS = {  # row direction, column direction (LPS) of the stored slices
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}


def empty_volume(shape=(300, 512, 512), spacing=(1.0, 0.7, 0.7), orientation="axial", dtype=np.int16,
                 origin=(-180.0, -180.0, -150.0), fill=-1000, metadata=None) -> Volume:
    row, col = (np.array(v) for v in ORIENTATIONS[orientation])
    normal = np.cross(row, col)
    vox = np.full(shape, fill, dtype=dtype)
    md = {"modality": "CT", "units": "HU", "calibration": "patient", "slice_thickness": spacing[0],
          "patient_name": "SYNTHETIC^PHANTOM", "patient_id": "PHANTOM-1", "study_description": "Phantom",
          "series_description": f"{orientation} phantom"}
    md["series_uid"] = "2.25.1000"
    md["slice_refs"] = [(f"2.25.{1001 + k}", None) for k in range(shape[0])]  # synthetic SOP Instance UIDs
    md.update(metadata or {})
    return Volume(voxels=vox, origin=np.array(origin, float), row_direction=row, column_direction=col,
                  slice_direction=normal, spacing=tuple(float(s) for s in spacing), metadata=md)


def ct_phantom(shape=(64, 256, 256), spacing=(2.0, 0.7, 0.7), orientation="axial",
               marker_patient=None, block_mm=(40.0, 30.0, 20.0), dtype=np.int16) -> Volume:
    """Air (-1000) with a soft-tissue cylinder (40 HU) and a bone block (1000 HU) of ``block_mm`` size
    (along row, column and slice directions) centred in the volume, plus a 3 mm marker sphere (2000 HU).

    ``marker_patient``: LPS position of the marker; default: a point off-centre in all three axes.
    Metadata ``block_mm`` and ``marker`` record the truth.
    """
    nk, nj, ni = shape
    dk, dj, di = spacing
    row, col = (np.array(v) for v in ORIENTATIONS[orientation])
    normal = np.cross(row, col)
    centre = np.zeros(3)
    origin = centre - row * di * (ni - 1) / 2 - col * dj * (nj - 1) / 2 - normal * dk * (nk - 1) / 2
    vol = empty_volume(shape, spacing, orientation, dtype, origin=origin)
    k, j, i = np.ogrid[:nk, :nj, :ni]
    x = (i - (ni - 1) / 2) * di
    y = (j - (nj - 1) / 2) * dj
    z = (k - (nk - 1) / 2) * dk
    r = min(ni * di, nj * dj) * 0.42
    vol.voxels[np.broadcast_to(x ** 2 + y ** 2 <= r ** 2, shape)] = 40
    bx, by, bz = block_mm
    # block edges fall half-way between voxel centres so its extent is exactly block_mm
    ib = np.abs(x) < bx / 2
    jb = np.abs(y) < by / 2
    kb = np.abs(z) < bz / 2
    vol.voxels[np.broadcast_to(ib & jb & kb, shape)] = 1000
    if marker_patient is None:
        marker_patient = centre + row * 0.25 * ni * di + col * -0.2 * nj * dj + normal * 0.2 * nk * dk
    mk = np.asarray(marker_patient, float)
    d = vol.index_to_patient(0, 0, 0)
    rel = mk - d
    pi, pj, pk = rel @ row / di, rel @ col / dj, rel @ normal / dk
    dist2 = ((i - pi) * di) ** 2 + ((j - pj) * dj) ** 2 + ((k - pk) * dk) ** 2
    vol.voxels[dist2 <= 3.0 ** 2] = 2000
    # real sizes: a block voxel set spans whole voxels
    n_i = int(ib.sum())
    n_j = int(jb.sum())
    n_k = int(kb.sum())
    vol.metadata["block_mm"] = (n_i * di, n_j * dj, n_k * dk)
    vol.metadata["marker"] = tuple(mk)
    return vol
