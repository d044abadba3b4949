"""`render`: how fast the viewer draws, against a bare VTK pipeline doing the same on the same data.

Owns the rendering measurements (run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1200x24" readroom-bench render``):

* window/level drag and stack scrolling on a 512x512x300 CT: seconds per frame of our ``StackViewport`` (overlays,
  corner text, scale bar, tools layer included) vs a bare ``vtkImageSliceMapper`` + ``vtkImageProperty`` pipeline
  in the same kind of Qt VTK widget, same size, same numpy-backed image. Target: ours <= 1.2x bare.
* oblique MPR: seconds per frame of our ``MprViewport`` turning an oblique plane vs a bare ``vtkImageReslice``
  + ``vtkImageSliceMapper`` pipeline doing the same reslice.
* memory: peak resident memory added while a 512x512x300 CT is open and being scrolled (measured in a fresh
  subprocess: VmHWM minus the RSS before the volume existed) vs the raw voxel bytes. Target: at most 1.5x.
  For this row ``ours_s``/``comparison_s`` hold gigabytes, not seconds (the ratio is what counts).

The CT is the synthetic phantom of ``viewer.qt.phantom`` (int16 HU) unless ``READROOM_BENCH_CT_FROM_DICOM=1``, which
writes ``cloud.demo_data.write_ct_series`` files and opens them with ``viewer.volume.load_series`` for the memory row.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from bench.harness import Context, Result


def _interleaved(ours, bare, repeat: int) -> tuple[float, float]:
    """Median seconds per frame of ``ours`` and ``bare``, run alternately so that load from other processes on
    the machine hits both alike (the ratio is what we track)."""
    import statistics
    import time

    ours()
    bare()  # warm-up: texture upload, shader compile
    t_o, t_b = [], []
    for _ in range(max(3, repeat)):
        for fn, acc in ((ours, t_o), (bare, t_b)):
            t0 = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t0) / FRAMES)
    return statistics.median(t_o), statistics.median(t_b)


def _close(*widgets) -> None:
    """Finalize every VTK canvas (also those inside composite widgets such as the MPR) and delete the widgets
    while Qt and VTK are both alive; a canvas left to the garbage collector fails in its closeEvent at exit."""
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

    for w in widgets:
        canvases = [w] if isinstance(w, QVTKRenderWindowInteractor) else w.findChildren(QVTKRenderWindowInteractor)
        w.close()
        for canvas in canvases:
            canvas.Finalize()
        w.deleteLater()
    _app().processEvents()

NAME = "render"
SHAPE = (300, 512, 512)
FRAMES = 40
VIEW_PX = 512


def _app():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication(sys.argv[:1])


def _bare_stack(shared, window_level):
    """The least a VTK programmer would write to show one slice with a window: mapper, property, renderer."""
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
    from vtkmodules.vtkCommonCore import vtkLookupTable
    from vtkmodules.vtkRenderingCore import vtkImageProperty, vtkImageSlice, vtkImageSliceMapper, vtkRenderer

    w = QVTKRenderWindowInteractor()
    w.resize(VIEW_PX, VIEW_PX)
    w.move(VIEW_PX + 40, 0)  # beside ours, not on top of it
    w.show()
    w.Initialize()
    ren = vtkRenderer()
    w.GetRenderWindow().AddRenderer(ren)
    mapper = vtkImageSliceMapper()
    mapper.SetInputData(shared.image)
    mapper.SetSliceNumber(SHAPE[0] // 2)
    lut = vtkLookupTable()
    lut.SetSaturationRange(0, 0)
    lut.SetHueRange(0, 0)
    lut.SetValueRange(0, 1)
    lut.Build()
    prop = vtkImageProperty()
    prop.SetLookupTable(lut)
    prop.UseLookupTableScalarRangeOff()
    prop.SetInterpolationTypeToLinear()
    prop.SetColorWindow(window_level[0])
    prop.SetColorLevel(window_level[1])
    actor = vtkImageSlice()
    actor.SetMapper(mapper)
    actor.SetProperty(prop)
    ren.AddViewProp(actor)
    ren.GetActiveCamera().ParallelProjectionOn()
    ren.ResetCamera()
    b = shared.image.GetBounds()
    # the same framing as ours after "fit": the image fills the view (llvmpipe's cost grows with covered pixels)
    ren.GetActiveCamera().SetParallelScale(max(b[3] - b[2], b[1] - b[0]) / 2 * 1.02)
    w.GetRenderWindow().Render()
    return w, mapper, prop


def _bare_oblique(shared, volume):
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
    from vtkmodules.vtkImagingCore import vtkImageReslice
    from vtkmodules.vtkRenderingCore import vtkImageSlice, vtkImageSliceMapper, vtkRenderer

    w = QVTKRenderWindowInteractor()
    w.resize(VIEW_PX, VIEW_PX)
    w.move(VIEW_PX + 40, 0)  # beside ours, not on top of it
    w.show()
    w.Initialize()
    ren = vtkRenderer()
    w.GetRenderWindow().AddRenderer(ren)
    rs = vtkImageReslice()
    rs.SetInputData(shared.image)
    rs.SetOutputDimensionality(2)
    rs.SetInterpolationModeToLinear()
    rs.AutoCropOutputOn()  # the whole oblique plane through the volume, as ours shows
    b = shared.image.GetBounds()
    centre = ((b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2)
    rs.SetResliceAxesOrigin(*centre)
    mapper = vtkImageSliceMapper()
    mapper.SetInputConnection(rs.GetOutputPort())
    actor = vtkImageSlice()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColorWindow(400)
    actor.GetProperty().SetColorLevel(40)
    ren.AddViewProp(actor)
    ren.GetActiveCamera().ParallelProjectionOn()
    w.GetRenderWindow().Render()
    ren.ResetCamera()
    ob = rs.GetOutput().GetBounds()
    ren.GetActiveCamera().SetParallelScale(max(ob[3] - ob[2], ob[1] - ob[0]) / 2 * 1.02)  # fit, as ours
    return w, rs


def _oblique_axes(angle_deg: float):
    import numpy as np

    from viewer.qt.mpr import rotation_matrix

    r = rotation_matrix((0, 0, 1), angle_deg) @ rotation_matrix((1, 0, 0), 20.0)
    return r @ np.array([1.0, 0, 0]), r @ np.array([0, 0, -1.0])


def _frames_stack(ctx, volume, shared):
    from viewer.qt.viewport import StackViewport

    app = _app()
    ours = StackViewport()
    ours.resize(VIEW_PX, VIEW_PX)
    ours.show()
    app.processEvents()
    ours.set_volume(volume, shared=shared)
    ours.set_window_level(400, 40)
    bare, mapper, prop = _bare_stack(shared, (400, 40))
    app.processEvents()
    rw_bare = bare.GetRenderWindow()

    def ours_wl():
        for i in range(FRAMES):
            ours.set_window_level(400 + 5 * i, 40 + i)

    def bare_wl():
        for i in range(FRAMES):
            prop.SetColorWindow(400 + 5 * i)
            prop.SetColorLevel(40 + i)
            rw_bare.Render()

    def ours_scroll():
        for i in range(FRAMES):
            ours.set_slice(100 + i)

    def bare_scroll():
        for i in range(FRAMES):
            mapper.SetSliceNumber(100 + i)
            rw_bare.Render()

    out = []
    for label, a, b in (("W/L drag", ours_wl, bare_wl), ("stack scroll", ours_scroll, bare_scroll)):
        t_ours, t_bare = _interleaved(a, b, ctx.repeat)
        out.append(Result(name=f"render: {label} 512x512x300 CT (s/frame)", ours_s=t_ours,
                          comparison="bare VTK slice mapper", comparison_s=t_bare,
                          note=f"ours {1 / t_ours:.0f} fps, bare {1 / t_bare:.0f} fps, {VIEW_PX}px view, "
                               "target ratio <= 1.2"))
    _close(ours, bare)
    return out


def _frames_oblique(ctx, volume, shared):
    from viewer.qt.mpr import MprViewport

    app = _app()
    ours = MprViewport(orientation="axial")
    ours.resize(VIEW_PX, VIEW_PX)
    ours.show()
    app.processEvents()
    ours.set_volume(volume, shared=shared)
    ours.set_window_level(400, 40)
    bare, rs = _bare_oblique(shared, volume)
    app.processEvents()
    rw = bare.GetRenderWindow()
    import numpy as np

    from viewer.qt.vtk_bridge import to_vtk_matrix

    def ours_obl():
        for i in range(FRAMES):
            ex, ey = _oblique_axes(i * 2.0)
            ours.set_plane(ex=ex, ey=ey)

    b = shared.image.GetBounds()
    centre = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2])

    def bare_obl():
        for i in range(FRAMES):
            ex, ey = _oblique_axes(i * 2.0)
            m = np.eye(4)
            m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = ex, ey, np.cross(ex, ey), centre
            rs.SetResliceAxes(to_vtk_matrix(m))
            rw.Render()

    t_ours, t_bare = _interleaved(ours_obl, bare_obl, ctx.repeat)
    _close(ours, bare)
    return [Result(name="render: oblique MPR reslice 512x512x300 CT (s/frame)", ours_s=t_ours,
                   comparison="bare vtkImageReslice + slice mapper", comparison_s=t_bare,
                   note=f"ours {1 / t_ours:.0f} fps, bare {1 / t_bare:.0f} fps, plane turning 2 deg per frame")]


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, os, sys
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    from PySide6.QtWidgets import QApplication
    app = QApplication(sys.argv[:1])
    from viewer.qt.viewport import StackViewport
    from viewer.qt.phantom import ct_phantom, empty_volume
    v = StackViewport(); v.resize(512, 512); v.show(); app.processEvents()
    v.render()
    files = sys.argv[1:]
    if files:
        from viewer.volume import load_series
        import pydicom
        pydicom.dcmread(files[0])  # import the decoders before the baseline
    base = status("VmRSS")
    # reset the high-water mark so the peak is measured from here (Linux >= 4.0)
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass
    if files:
        vol = load_series(files)
    else:  # filled slice by slice into one preallocated array, as the streaming loader does
        template = ct_phantom(shape=(3, 512, 512), spacing=(0.6, 0.47, 0.47)).voxels[1].copy()
        vol = empty_volume(shape=(300, 512, 512), spacing=(0.6, 0.47, 0.47))
        for k in range(300):
            vol.voxels[k] = template
    v.set_volume(vol)
    for k in range(0, 300, 10):
        v.set_slice(k)
    for i in range(20):
        v.set_window_level(400 + 10 * i, 40)
    peak = status("VmHWM")
    v.close(); v.canvas.Finalize()
    print(json.dumps({"base": base, "peak": peak, "raw": int(vol.voxels.nbytes),
                      "dtype": str(vol.voxels.dtype), "shape": list(vol.voxels.shape)}))
""")


def _memory(ctx) -> list[Result]:
    args = []
    source = "numpy phantom"
    if os.environ.get("READROOM_BENCH_CT_FROM_DICOM") == "1":
        from cloud.demo_data import write_ct_series

        files = write_ct_series(ctx.workdir / "render-ct", n_slices=SHAPE[0], rows=SHAPE[1], cols=SHAPE[2])
        args = [str(p) for p in files]
        source = "write_ct_series + load_series"
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, *args], check=False, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {proc.stderr[-2000:]}")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = m["peak"] - m["base"]
    return [Result(name="render: peak memory, 512x512x300 CT open (GB, not s)", ours_s=extra / 1e9,
                   comparison="raw voxel bytes", comparison_s=m["raw"] / 1e9,
                   note=f"{source}, {m['dtype']} {m['shape']}; peak RSS above the pre-volume baseline; "
                        "target ratio <= 1.5")]


def run(ctx: Context) -> list[Result]:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print("render: no display - run under xvfb-run; skipped", file=sys.stderr)
        return []
    from viewer.qt.phantom import ct_phantom
    from viewer.qt.vtk_bridge import volume_to_vtk_image

    volume = ct_phantom(shape=SHAPE, spacing=(0.6, 0.47, 0.47))
    shared = volume_to_vtk_image(volume)
    results = []
    results += _frames_stack(ctx, volume, shared)
    results += _frames_oblique(ctx, volume, shared)
    results += _memory(ctx)
    return results
