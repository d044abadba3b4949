"""The image viewer.

Core (no Qt, no VTK): series -> :class:`viewer.volume.Volume` with geometry in patient millimetres (LPS),
window presets, measurement math, hanging-protocol matching, DICOM persistence of measurements/annotations.
``viewer.qt``: the VTK pipelines and Qt widgets (2D stack, MPR, 3D, tools). Only ``viewer.qt`` imports Qt/VTK.
"""
