"""Bridge between a numpy-backed :class:`viewer.volume.Volume` and VTK image data, without copying voxels.

Owns: registering VTK's OpenGL and interaction factories once, wrapping ``Volume.voxels`` as ``vtkImageData``
that points at the same memory (the numpy array is kept alive by the returned object and by the VTK buffer),
and the 4x4 matrices between VTK "data" coordinates (index x spacing, no direction) and patient LPS mm.

VTK's x/y/z axes of the image are the volume's column index i, row index j and slice index k, so the
C-ordered numpy array ``voxels[k, j, i]`` is exactly VTK's x-fastest memory layout.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import vtkmodules.vtkInteractionStyle
import vtkmodules.vtkRenderingOpenGL2
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401  (registers the GPU volume mapper)
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData


@dataclasses.dataclass
class SharedImage:
    """A ``vtkImageData`` whose scalars are the volume's own numpy buffer (``zero_copy``) or a copy."""

    image: vtkImageData
    array: np.ndarray          # the array VTK points at; keep this alive as long as ``image``
    zero_copy: bool            # False only when voxels were not C-contiguous / of a VTK-unknown dtype
    components: int


def buffer_address(image: vtkImageData) -> int:
    """Address of the first scalar of ``image`` (for checking that no copy was made)."""
    ptr = image.GetPointData().GetScalars().GetVoidPointer(0)
    # SWIG-style pointer string: "_00007f..._p_void"
    return int(ptr[1:].split("_", 1)[0], 16)


def volume_to_vtk_image(volume) -> SharedImage:
    """Wrap ``volume.voxels`` ([k, j, i] or [k, j, i, c] colour) as VTK image data sharing its memory.

    The image's origin is 0 and its spacing (di, dj, dk): VTK world coordinates of this image are "data
    coordinates"; use :func:`data_to_patient` to place them in the patient.
    """
    vox = volume.voxels
    components = 1 if vox.ndim == 3 else int(vox.shape[3])
    zero_copy = True
    arr = vox
    if not arr.flags.c_contiguous or arr.dtype == np.bool_ or arr.dtype.byteorder == ">":
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=") if arr.dtype != np.bool_ else np.uint8)
        zero_copy = False
    nk, nj, ni = arr.shape[:3]
    flat = arr.reshape(-1, components) if components > 1 else arr.reshape(-1)
    if not np.shares_memory(flat, arr):  # reshape of a contiguous array is always a view; keep the check honest
        zero_copy = False
    vtk_arr = numpy_support.numpy_to_vtk(flat, deep=False)
    vtk_arr.SetName("voxels")
    img = vtkImageData()
    img.SetDimensions(ni, nj, nk)
    dk, dj, di = (float(s) if s else 1.0 for s in volume.spacing)
    img.SetSpacing(di, dj, dk)
    img.SetOrigin(0.0, 0.0, 0.0)
    img.GetPointData().SetScalars(vtk_arr)
    shared = SharedImage(image=img, array=arr, zero_copy=zero_copy, components=components)
    # The VTK buffer also holds the numpy reference (numpy_support does it); we keep a second one here.
    if buffer_address(img) != arr.ctypes.data:
        shared.zero_copy = False
    return shared


def data_to_patient(volume) -> np.ndarray:
    """4x4 matrix mapping VTK data coordinates (i*di, j*dj, k*dk, 1) to patient LPS mm.

    Columns are the unit direction vectors (the slice direction may be non-orthogonal: gantry tilt), so
    the matrix equals ``volume.affine`` with the spacing divided out.
    """
    m = np.eye(4)
    m[:3, 0] = np.asarray(volume.row_direction, float)
    m[:3, 1] = np.asarray(volume.column_direction, float)
    m[:3, 2] = np.asarray(volume.slice_direction, float)
    m[:3, 3] = np.asarray(volume.origin, float)
    return m


def to_vtk_matrix(m: np.ndarray):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    vm = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r, c]))
    return vm


def scalar_range(volume, sample: int = 200_000) -> tuple[float, float]:
    """Approximate (min, max) of the voxels from an evenly spread sample (cheap on 150 MB volumes)."""
    flat = volume.voxels.reshape(-1)
    step = max(1, flat.size // sample)
    s = flat[::step]
    return float(s.min()), float(s.max())


def _frame(render_window):
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    f = vtkWindowToImageFilter()
    f.SetInput(render_window)
    f.SetInputBufferTypeToRGB()
    f.ReadFrontBufferOff()
    f.Update()
    return f


def window_rgb(render_window) -> np.ndarray:
    """The render window's current frame as an (H, W, 3) uint8 array, row 0 at the top (as on screen)."""
    f = _frame(render_window)          # kept alive while its output is read
    img = f.GetOutput()
    w, h, _ = img.GetDimensions()
    return numpy_support.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, 3)[::-1].copy()


def write_window_png(render_window, path) -> None:
    """Save the render window's current frame as a PNG."""
    from vtkmodules.vtkIOImage import vtkPNGWriter

    f = _frame(render_window)          # kept alive until the writer has run
    w = vtkPNGWriter()
    w.SetFileName(str(path))
    w.SetInputConnection(f.GetOutputPort())
    w.Write()
