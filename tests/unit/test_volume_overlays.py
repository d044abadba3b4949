"""DICOM overlay planes (60xx) in the volume core, no screen: Overlay Origin (1-based, clipped to the image), the
slice an overlay belongs to after sorting, and multi-frame overlays (Image Frame Origin, Number of Frames)."""
from __future__ import annotations

import numpy as np

from viewer.volume import load_series


def _mr_slice(z: float, overlay: np.ndarray | None, origin=(1, 1), number=1):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "MR"
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0, 0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.full((32, 32), 100, np.uint16).tobytes()
    if overlay is not None:
        ds.add_new(0x60000010, "US", overlay.shape[0])
        ds.add_new(0x60000011, "US", overlay.shape[1])
        ds.add_new(0x60000040, "CS", "G")
        ds.add_new(0x60000050, "SS", list(origin))
        ds.add_new(0x60000100, "US", 1)
        ds.add_new(0x60000102, "US", 0)
        bits = np.packbits(overlay.astype(np.uint8).ravel(), bitorder="little").tobytes()
        ds.add_new(0x60003000, "OW", bits + b"\x00" * (len(bits) % 2))
    return ds


def test_overlay_origin_offset_and_slice_order():
    # files given in reverse order; only the middle slice carries an overlay, 4x6 at origin row 11, column 21
    ov = np.ones((4, 6), bool)
    datasets = [_mr_slice(2.0, None, number=3), _mr_slice(1.0, ov, origin=(11, 21), number=2),
                _mr_slice(0.0, None, number=1)]
    vol = load_series(datasets)
    assert set(vol.overlays) == {1}
    plane = vol.overlays[1][0]
    mask = plane.full_mask(32, 32)
    assert mask[10:14, 20:26].all() and mask.sum() == 24 and (plane.row0, plane.col0, plane.shape) == (10, 20, (4, 6))
    # an origin outside the image is clipped, not an error
    vol2 = load_series([_mr_slice(0.0, np.ones((5, 5), bool), origin=(-1, 30))])
    m2 = vol2.overlays[0][0].full_mask(32, 32)
    assert m2.sum() == 3 * 3 and m2[0:3, 29:32].all()


def test_multiframe_overlay_applies_from_its_image_frame_origin():
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"        # XA, a cine without slice positions
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = ds.SeriesInstanceUID = "1.2.3.5"
    ds.Modality = "XA"
    ds.NumberOfFrames = 6
    ds.FrameTime = 66.7
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.zeros((6, 16, 16), np.uint16).tobytes()
    planes = np.zeros((2, 16, 16), bool)
    planes[0, 0, :] = True                                    # overlay frame 1: top row
    planes[1, 15, :] = True                                   # overlay frame 2: bottom row
    for tag, vr, value in ((0x60000010, "US", 16), (0x60000011, "US", 16), (0x60000015, "IS", 2),
                           (0x60000040, "CS", "G"), (0x60000050, "SS", [1, 1]), (0x60000051, "US", 3),
                           (0x60000100, "US", 1), (0x60000102, "US", 0)):
        ds.add_new(tag, vr, value)
    ds.add_new(0x60003000, "OW", np.packbits(planes.astype(np.uint8).ravel(), bitorder="little").tobytes())
    vol = load_series([ds])
    assert sorted(vol.overlays) == [2, 3]                     # image frames 3 and 4 (1-based)
    assert vol.overlays[2][0].full_mask(16, 16)[0].all() and vol.overlays[2][0].full_mask(16, 16).sum() == 16
    assert vol.overlays[3][0].full_mask(16, 16)[15].all() and vol.overlays[3][0].full_mask(16, 16).sum() == 16
