"""Loader on the real public DICOM files in ../shared/data/real (see its README for what each case tests)."""
from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from viewer.volume import SeriesError, load_series


def _ipp(ds):
    return np.array([float(v) for v in ds.ImagePositionPatient])


def _files(folder):
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm")


def test_ct_gantry_tilt_series_is_sheared_and_irregular_spacing_reported(real_data):
    files = _files(real_data / "01_ct_head_gantry_tilt_series")
    random.Random(3).shuffle(files)
    vol = load_series(files)
    datasets = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(f) for f in files)}
    iop = np.array([float(v) for v in next(iter(datasets.values())).ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    # sheared: slice direction is not the image normal; the angle is the scanner's +18.5 degree tilt
    assert vol.metadata["tilt_deg"] == pytest.approx(18.5, abs=0.1)
    assert abs(np.dot(vol.slice_direction, normal)) < 0.99
    assert any("tilt" in w for w in vol.warnings)
    assert any("irregular slice spacing" in w and "1.14" in w and "7.38" in w for w in vol.warnings)
    # every acquired file sits exactly at its own Image Position (Patient) and keeps its HU values
    acquired = [(k, ref) for k, ref in enumerate(vol.metadata["slice_refs"]) if ref is not None]
    assert len(acquired) >= 14
    for k, (sop, _frame) in acquired:
        ds = datasets[sop]
        np.testing.assert_allclose(vol.index_to_patient(k, 0, 0), _ipp(ds), atol=0.02)
        stored = ds.pixel_array
        hu = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        padded = stored == int(ds.PixelPaddingValue)             # -1500: outside the scan field
        assert padded.any()
        np.testing.assert_allclose(vol.voxels[k][~padded], hu[~padded], atol=1e-3)
        assert np.all(vol.voxels[k][padded] == vol.metadata["fill_value"])
    # first and last slices of the grid are the first and last acquired positions (nothing stretched)
    ends = sorted(datasets.values(), key=lambda d: float(np.dot(_ipp(d), normal)))
    np.testing.assert_allclose(vol.index_to_patient(0, 0, 0), _ipp(ends[0]), atol=0.02)
    np.testing.assert_allclose(vol.index_to_patient(vol.shape[0] - 1, 0, 0), _ipp(ends[-1]), atol=0.02)
    assert vol.metadata["window_presets"][0].center == 35 and vol.metadata["window_presets"][0].width == 100


def test_ct_gantry_tilt_series_refused_when_resampling_is_not_wanted(real_data):
    with pytest.raises(SeriesError) as err:
        load_series(real_data / "01_ct_head_gantry_tilt_series", irregular="refuse")
    assert "(0020,0032)" in str(err.value) and ".dcm" in str(err.value)


def test_sagittal_mr_series(real_data):
    files = _files(real_data / "02_mr_brain_t1_sagittal_series")
    vol = load_series(list(reversed(files)))
    assert vol.shape == (35, 256, 256)
    assert vol.spacing == pytest.approx((4.8, 1.016, 1.016), abs=1e-3)
    assert abs(vol.slice_direction[0]) == pytest.approx(1.0)            # sagittal: slices step along x
    np.testing.assert_allclose(vol.row_direction, [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(vol.column_direction, [0, 0, -1], atol=1e-6)
    assert vol.warnings == []
    by_sop = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(f) for f in files)}
    for k, (sop, _) in enumerate(vol.metadata["slice_refs"]):
        np.testing.assert_allclose(vol.index_to_patient(k, 0, 0), _ipp(by_sop[sop]), atol=1e-3)
        np.testing.assert_array_equal(vol.voxels[k], by_sop[sop].pixel_array)


def test_enhanced_mr_uses_per_frame_functional_groups(real_data):
    path = real_data / "03_mr_enhanced_epi_sagittal_xa30" / "5_Product_EPI_Sag_Ascending_0063.dcm"
    ds = pydicom.dcmread(path)
    vol = load_series(path)
    assert vol.shape == (63, 86, 86)
    frames = ds.PerFrameFunctionalGroupsSequence
    pos = {f + 1: np.array([float(v) for v in frames[f].PlanePositionSequence[0].ImagePositionPatient])
           for f in range(len(frames))}
    pixels = ds.pixel_array
    for k, (sop, frame) in enumerate(vol.metadata["slice_refs"]):
        np.testing.assert_allclose(vol.index_to_patient(k, 0, 0), pos[frame], atol=1e-3)
        pvt = frames[frame - 1].PixelValueTransformationSequence[0]
        np.testing.assert_allclose(vol.voxels[k], pixels[frame - 1] * float(pvt.RescaleSlope)
                                   + float(pvt.RescaleIntercept))
    assert abs(vol.slice_direction[0]) > 0.99                       # sagittal
    assert vol.spacing[0] == pytest.approx(2.2, abs=0.01)


def test_enhanced_mr_temporal_dimension_is_cine(real_data):
    vol = load_series(real_data / "04_mr_enhanced_multiframe" / "MOVEKNEE.dcm")
    assert vol.shape == (19, 256, 256)
    assert vol.metadata["kind"] == "cine"
    assert vol.spacing[1:] == pytest.approx((0.625, 0.625))
    assert vol.metadata["calibration"] == "patient"


def test_multiframe_encodings_decode_identical(real_data):
    folder = real_data / "04_mr_enhanced_multiframe"
    ref = load_series(folder / "emri_small.dcm").voxels
    assert ref.shape == (10, 64, 64)
    for name in ("emri_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm"):
        np.testing.assert_array_equal(load_series(folder / name).voxels, ref, err_msg=name)


def test_enhanced_ct_two_frames_and_jpeg_fragmented_copy(real_data):
    folder = real_data / "05_ct_enhanced_multiframe"
    a = load_series(folder / "eCT_Supplemental.dcm")
    b = load_series(folder / "CT0012.fragmented_no_bot_jpeg_baseline.51.dcm")
    assert a.shape == b.shape == (2, 512, 512)
    assert a.spacing == pytest.approx(b.spacing) and a.spacing[0] == pytest.approx(10.0)
    # IOP row is (-1, 0, 0): the normal points to -z, so the frame at z=-149 comes first
    np.testing.assert_allclose(a.slice_direction, [0, 0, -1], atol=1e-9)
    np.testing.assert_allclose(a.index_to_patient(0, 0, 0), [99.5, -301.5, -149.0])
    np.testing.assert_allclose(a.index_to_patient(1, 0, 0), [99.5, -301.5, -159.0])
    assert [ref[1] for ref in a.metadata["slice_refs"]] == [2, 1]
    np.testing.assert_allclose(a.affine, b.affine)
    assert a.metadata["units"] == "HU"
    # rescale from the shared Pixel Value Transformation functional group (intercept -1024)
    for vol, name in ((a, "eCT_Supplemental.dcm"), (b, "CT0012.fragmented_no_bot_jpeg_baseline.51.dcm")):
        px = pydicom.dcmread(folder / name).pixel_array.astype(np.int32) - 1024
        np.testing.assert_array_equal(vol.voxels, px[::-1])


def test_mr_slice_in_nine_transfer_syntaxes_decodes_identically(real_data):
    files = _files(real_data / "06_mr_slice_transfer_syntaxes")
    assert len(files) == 9
    ref = load_series(files[0])
    for f in files[1:]:
        v = load_series(f)
        np.testing.assert_array_equal(v.voxels, ref.voxels, err_msg=f.name)
        np.testing.assert_allclose(v.affine, ref.affine)


LOSSLESS_07 = ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80",
               "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.1.dcm",
               "1.2.840.10008.1.2.dcm", "1.2.840.10008.1.2.5")


def test_ct_slice_lossless_syntaxes_identical_lossy_close(real_data):
    folder = real_data / "07_ct_chest_slice_transfer_syntaxes"
    ref = load_series(folder / "CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm")
    assert ref.voxels.dtype == np.int16 and ref.metadata["units"] == "HU"
    checked = 0
    for f in _files(folder):
        if f.name.endswith(("4.53.dcm", "4.55.dcm")):
            continue
        v = load_series(f)
        if any(f.name.endswith(s if s.endswith(".dcm") else s + ".dcm") for s in LOSSLESS_07):
            np.testing.assert_array_equal(v.voxels, ref.voxels, err_msg=f.name)
        else:   # lossy: .50 (re-quantised 8-bit), .51, .91, .81
            diff = np.abs(v.voxels.astype(float) - ref.voxels.astype(float))
            assert float(np.median(diff)) < 40, f.name
        checked += 1
    assert checked == 13


@pytest.mark.parametrize("name", ["CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm",
                                  "CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm"])
def test_retired_jpeg_processes_are_refused_clearly(real_data, name):
    with pytest.raises(SeriesError) as err:
        load_series(real_data / "07_ct_chest_slice_transfer_syntaxes" / name)
    msg = str(err.value)
    assert name in msg and "(0002,0010)" in msg and "decoder" in msg
    assert "MISTER" not in msg


def test_cr_monochrome1_is_flagged_for_inversion(real_data):
    for path in (real_data / "08_cr_chest_mono1" / "RG1_J2KI.dcm", real_data / "09_cr_extremity_mono1" / "RG3_J2KR.dcm"):
        vol = load_series(path)
        assert vol.metadata["photometric"] == "MONOCHROME1"
        assert vol.metadata["invert"] is True
        assert vol.metadata["kind"] == "projection"
    rg1 = load_series(real_data / "08_cr_chest_mono1" / "RG1_J2KI.dcm")
    assert rg1.metadata["window_presets"][0].center == 15000      # header window kept
    assert rg1.metadata["calibration"] == "uncalibrated"           # Pixel Spacing 0\0 means unknown
    assert any("uncalibrated" in w for w in rg1.warnings)


def test_cr_lossless_and_lossy_j2k_agree(real_data):
    a = load_series(real_data / "09_cr_extremity_mono1" / "RG3_J2KR.dcm").voxels.astype(float)
    b = load_series(real_data / "09_cr_extremity_mono1" / "RG3_J2KI.dcm").voxels.astype(float)
    assert a.shape == b.shape == (1, 1760, 1760)
    assert float(np.mean(np.abs(a - b))) < 10


def test_modality_lut_sequence_is_applied(real_data):
    path = real_data / "10_cr_modality_lut_sequence" / "CR-ModalitySequenceLUT.dcm"
    ds = pydicom.dcmread(path)
    vol = load_series(path)
    np.testing.assert_array_equal(vol.voxels[0], apply_modality_lut(ds.pixel_array, ds))
    assert not np.array_equal(vol.voxels[0], ds.pixel_array)
    assert vol.metadata["calibration"] == "detector"               # Pixel Spacing == Imager Pixel Spacing


def test_dx_presentation_lut_inverse_and_detector_calibration(real_data):
    vol = load_series(real_data / "11_dx_chest_mono1_small" / "dx_image.dcm")
    assert vol.metadata["invert"] is True
    assert vol.metadata["calibration_label"] == "detector (imager)"
    assert vol.spacing[1:] == pytest.approx((1.2, 1.2012), abs=1e-4)


def test_mammo_voi_lut_and_three_window_presets(real_data):
    vol = load_series(real_data / "12_mg_voi_lut_sequence" / "GH133.dcm")
    presets = vol.metadata["window_presets"]
    assert [(p.center, p.width) for p in presets] == [(2653, 900), (2713, 750), (2569, 1050)]
    assert presets[0].name == "NORMAL"
    luts = vol.metadata["voi_luts"]
    assert luts and len(luts[0].data) > 100
    mapped = luts[0].apply(vol.voxels[0, ::64, ::64])
    assert 0.0 <= mapped.min() <= mapped.max() <= 1.0
    assert vol.metadata["calibration"] == "detector"
    assert vol.metadata["fill_value"] == 0          # Pixel Padding Value 0


def test_ultrasound_cine_frame_times_and_colour(real_data):
    vol = load_series(real_data / "13_us_cine_multiframe" / "DIRW0007.dcm")
    assert vol.shape == (65, 456, 576, 3) and vol.voxels.dtype == np.uint8
    assert vol.metadata["kind"] == "cine" and vol.metadata["is_cine"]
    times = vol.metadata["frame_times_ms"]
    assert len(times) == 65 and 50.0 in times
    assert vol.metadata["calibration"] == "patient"
    assert vol.spacing[1] == pytest.approx(0.5248, abs=1e-3)        # 0.05248 cm per pixel
    ybr = load_series(real_data / "13_us_cine_multiframe" / "examples_ybr_color.dcm")
    assert ybr.shape == (30, 240, 320, 3)
    assert ybr.metadata["frame_time_ms"] == pytest.approx(33.333)
    # YBR_FULL_422 converted to RGB: grey pixels have equal channels
    px = ybr.voxels[0].reshape(-1, 3).astype(int)
    grey = px[(np.abs(px[:, 0] - px[:, 1]) < 3) & (px[:, 0] > 30)]
    assert len(grey) > 100


def test_palette_colour_and_rgb_become_rgb(real_data):
    folder = real_data / "14_us_single_frame_color_and_gray"
    pal = load_series(folder / "gdcm-US-ALOKA-16.dcm")
    assert pal.voxels.shape[-1] == 3 and pal.voxels.dtype == np.uint8 and pal.voxels.max() > 0
    rle = load_series(folder / "OBXXXX1A_rle_2frame.dcm")
    assert rle.shape == (2, 600, 800, 3)
    a = load_series(folder / "US1_J2KR.dcm").voxels
    b = load_series(folder / "US1_UNCR.dcm").voxels
    np.testing.assert_array_equal(a, b)                            # YBR_RCT lossless == uncompressed RGB


def test_xa_cine_frame_time(real_data):
    vol = load_series(real_data / "15_xa_cine_jpeg_baseline" / "HasFragmentSequence.dcm")
    assert vol.shape == (96, 512, 512)
    assert vol.metadata["frame_time_ms"] == 33.0
    assert vol.metadata["fps"] == pytest.approx(1000 / 33)


def test_file_without_file_meta_is_read_with_a_warning(real_data):
    vol = load_series(real_data / "21_edge_cases" / "CR-MONO1-10-chest_no_file_meta.dcm")
    assert vol.shape == (1, 440, 440)
    assert any("no DICOM file header" in w for w in vol.warnings)
    assert vol.metadata["invert"] is True
    assert int(vol.voxels.max()) > int(vol.voxels.min())


def test_coronal_and_oblique_single_slices(real_data):
    cor = load_series(real_data / "16_mr_oblique_and_coronal_slices" / "GH1261.dcm")
    np.testing.assert_allclose(cor.column_direction, [0, 0, -1], atol=1e-4)
    obl = load_series(real_data / "16_mr_oblique_and_coronal_slices" / "MR2_J2KR.dcm")
    assert obl.row_direction[0] == pytest.approx(0.569, abs=1e-3)


def test_documents_without_pixels_are_refused(real_data):
    with pytest.raises(SeriesError, match=r"\(0028,0010\)"):
        load_series(real_data / "19_sr_documents" / "sr_document.dcm")
