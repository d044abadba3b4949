"""Qt + VTK side of the viewer: image viewports, MPR, 3D volume rendering, interactive tools, layouts.

Owns everything that draws pixels. The core (``viewer.volume``, ``viewer.orientation``, ``viewer.presets``,
``viewer.measurements``) stays free of Qt and VTK; this package renders a :class:`viewer.volume.Volume`
without copying its voxels (``vtk_bridge``) and turns mouse gestures into ``viewer.measurements`` objects.

Modules: ``vtk_bridge`` (numpy <-> VTK, geometry matrices), ``overlays`` (orientation letters, corner text,
scale bar, calibration label), ``viewport`` (2D stack view), ``mpr`` (axial/coronal/sagittal/oblique with slab),
``volume3d`` (ray-cast rendering), ``tools`` (measurement and annotation tools), ``layout`` (1x1/1x2/2x2),
``compare`` (current vs prior with linked scrolling and window/level), ``cine`` (frame-rate playback).
"""
