"""Documentation screenshots of the viewer on the demo CT head: stack view, MPR, 3D.

Owns only producing ``docs/screenshots/viewer-ct-head.png``, ``viewer-mpr.png`` and ``viewer-3d.png``:
``xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python -m viewer.qt.screenshots docs/screenshots``.
The demo study is synthetic (``cloud.demo_data``); if that module is missing the viewer's own phantom is used.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def demo_ct_head(workdir: Path):
    """(Volume, known objects) of the demo CT head, loaded with the real loader from the written DICOM files."""
    from cloud.demo_data import write_demo_studies
    from viewer.volume import load_series

    study = write_demo_studies(workdir, only={"ct-head"})[0]
    series = study.series_uids[0]
    files = [f for f in study.files]
    vol = load_series(files)
    return vol, [k for k in study.known_objects if k.series_uid == series] or study.known_objects


def _stitch(images: list[np.ndarray], path: Path) -> None:
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkIOImage import vtkPNGWriter

    h = max(i.shape[0] for i in images)
    padded = [np.pad(i, ((0, h - i.shape[0]), (0, 0), (0, 0))) for i in images]
    sep = np.full((h, 4, 3), 40, np.uint8)
    parts = []
    for n, p in enumerate(padded):
        parts += [p] + ([sep] if n < len(padded) - 1 else [])
    rgb = np.ascontiguousarray(np.concatenate(parts, axis=1)[::-1])
    img = vtkImageData()
    img.SetDimensions(rgb.shape[1], rgb.shape[0], 1)
    img.GetPointData().SetScalars(numpy_support.numpy_to_vtk(rgb.reshape(-1, 3)))
    w = vtkPNGWriter()
    w.SetFileName(str(path))
    w.SetInputData(img)
    w.Write()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from viewer.qt.mpr import MprWidget
    from viewer.qt.viewport import StackViewport
    from viewer.qt.volume3d import VolumeView

    with tempfile.TemporaryDirectory() as tmp:
        try:
            vol, known = demo_ct_head(Path(tmp))
        except ImportError:
            from viewer.qt.phantom import ct_phantom

            vol, known = ct_phantom(), []
    # 1. stack view, brain window, with a length across a known object and an ROI
    v = StackViewport()
    v.resize(800, 800)
    v.show()
    app.processEvents()
    v.set_volume(vol)
    v.apply_preset("ct_brain")
    if known:
        obj = known[0]
        c = np.asarray(obj.center, float)
        v.set_slice(round(vol.patient_to_index(*c)[0]))
        r = obj.diameter_mm / 2
        row = np.asarray(vol.row_direction, float)
        col = np.asarray(vol.column_direction, float)
        from viewer.qt.tools import Annotation, make_measurement

        for kind, pts in (("length", [c - row * r, c + row * r]),
                          ("ellipse", [c + col * (r + 12), c + col * (r + 12) + row * 6, c + col * (r + 18)])):
            v.tool = kind
            m = make_measurement(kind, pts, v)
            shown = pts if kind != "ellipse" else [pts[0], pts[1], pts[2]]
            v.tools.annotations.append(Annotation(kind, [np.asarray(p) for p in shown], m, m.label(), v.k))
        v.tool = "scroll"
    v.save_png(out / "viewer-ct-head.png")
    # 2. MPR with the crosshair on the known object
    w = MprWidget()
    w.resize(1204, 1204)
    w.show()
    app.processEvents()
    w.set_volume(vol)
    if known:
        w.set_crosshair(np.asarray(known[0].center, float))
    for view in w.views.values():
        view.apply_preset("ct_brain")
    _stitch([w.views[n].grab_rgb() for n in ("axial", "coronal", "sagittal")], out / "viewer-mpr.png")
    # 3. 3D, bone preset, and the renderer that ran
    d = VolumeView()
    d.resize(700, 700)
    d.show()
    app.processEvents()
    d.set_volume(vol, preset="bone")
    cam = d.renderer.GetActiveCamera()
    cam.Azimuth(35)
    cam.Elevation(15)
    cam.OrthogonalizeViewUp()
    d.renderer.ResetCameraClippingRange()
    d.save_png(out / "viewer-3d.png")
    print(f"3D renderer: {d.backend}")
    for widget in (v, w, d):
        widget.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
