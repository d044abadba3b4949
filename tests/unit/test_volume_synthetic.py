"""Loader geometry and values on synthetic series with known answers (viewer.loader / viewer.volume)."""
from __future__ import annotations

import random

import numpy as np
import pytest
from pydicom.dataset import Dataset

from viewer.synthetic import axial_positions, make_slice_series
from viewer.volume import SeriesError, VolumeBuilder, load_series


def _ipp(ds) -> np.ndarray:
    return np.array([float(v) for v in ds.ImagePositionPatient])


def _check_every_slice(vol, datasets, *, ps=(0.5, 0.5)):
    """Each acquired slice sits exactly where its file says and holds its file's modality values."""
    by_sop = {ds.SOPInstanceUID: ds for ds in datasets}
    iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    seen = 0
    for k, ref in enumerate(vol.metadata["slice_refs"]):
        if ref is None:
            continue
        ds = by_sop[ref[0]]
        seen += 1
        np.testing.assert_allclose(vol.index_to_patient(k, 0, 0), _ipp(ds), atol=1e-6)
        # pixel (j, i) = IPP + i * col_spacing * row_dir + j * row_spacing * col_dir   (PS3.3 C.7.6.2.1.1)
        expect = _ipp(ds) + 7 * ps[1] * iop[:3] + 5 * ps[0] * iop[3:]
        np.testing.assert_allclose(vol.index_to_patient(k, 5, 7), expect, atol=1e-5)
        stored = ds.pixel_array.astype(np.float64)
        np.testing.assert_array_equal(vol.voxels[k], stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    assert seen == len(datasets)


def test_axial_stack_in_any_order_is_sorted_along_the_normal():
    series = make_slice_series(axial_positions(12, step=2.5, start=(-10, 20, -50)))
    shuffled = series[:]
    random.Random(4).shuffle(shuffled)
    vol = load_series(shuffled)
    assert vol.shape == (12, 16, 16)
    assert vol.voxels.dtype == np.int16
    np.testing.assert_allclose(vol.slice_direction, [0, 0, 1], atol=1e-9)
    assert vol.spacing == pytest.approx((2.5, 0.5, 0.5))
    zs = [vol.index_to_patient(k, 0, 0)[2] for k in range(12)]
    assert zs == sorted(zs)
    _check_every_slice(vol, series)
    assert vol.warnings == []
    # inverse mapping
    p = vol.index_to_patient(3.5, 2.25, 9.0)
    np.testing.assert_allclose(vol.patient_to_index(*p), [3.5, 2.25, 9.0], atol=1e-9)
    assert vol.metadata["units"] == "HU"
    assert vol.metadata["calibration"] == "patient"


def test_feet_first_stack():
    # feet-first supine: row direction points to patient left? no - to the patient's right-to-left mirrored,
    # IOP (-1,0,0 / 0,1,0) and positions written head-to-feet with decreasing z.
    positions = [(0.0, 0.0, -k * 3.0) for k in range(8)]
    series = make_slice_series(positions, iop=(-1, 0, 0, 0, 1, 0), patient_position="FFS")
    vol = load_series(list(reversed(series)))
    normal = np.cross([-1, 0, 0], [0, 1, 0])          # (0, 0, -1)
    np.testing.assert_allclose(vol.slice_direction, normal, atol=1e-9)
    along = [float(np.dot(vol.index_to_patient(k, 0, 0), normal)) for k in range(8)]
    assert along == sorted(along)
    _check_every_slice(vol, series)
    np.testing.assert_allclose(vol.row_direction, [-1, 0, 0])


def test_oblique_stack_geometry_round_trips():
    a = np.radians(30.0)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([0.0, 0.0, -1.0])
    normal = np.cross(row, col)
    positions = [tuple(np.array([5.0, -3.0, 7.0]) + k * 1.5 * normal) for k in range(6)]
    series = make_slice_series(positions, iop=tuple(row) + tuple(col), pixel_spacing=(0.8, 0.6))
    random.Random(1).shuffle(series)
    vol = load_series(series)
    np.testing.assert_allclose(vol.slice_direction, normal, atol=1e-6)
    assert vol.spacing[0] == pytest.approx(1.5, abs=1e-5)
    _check_every_slice(vol, series, ps=(0.8, 0.6))
    for kji in [(0, 0, 0), (5, 15, 15), (2.3, 7.7, 1.1)]:
        np.testing.assert_allclose(vol.patient_to_index(*vol.index_to_patient(*kji)), kji, atol=1e-6)
    assert vol.warnings == []


def test_gantry_tilt_keeps_the_shear_exact():
    tilt = np.radians(20.0)
    row = (1.0, 0.0, 0.0)
    col = (0.0, np.cos(tilt), -np.sin(tilt))            # image plane tilted about x
    positions = [(0.0, 0.0, 5.0 * k) for k in range(10)]   # table moves along z: slices are sheared
    series = make_slice_series(positions, iop=row + col)
    vol = load_series(series[::-1])
    np.testing.assert_allclose(vol.slice_direction, [0, 0, 1], atol=1e-6)
    assert vol.spacing[0] == pytest.approx(5.0, abs=1e-5)
    normal = np.cross(row, col)
    assert abs(float(np.dot(vol.slice_direction, normal))) == pytest.approx(np.cos(tilt), abs=1e-6)
    assert vol.metadata["tilt_deg"] == pytest.approx(20.0, abs=0.01)
    assert any("tilt" in w for w in vol.warnings)
    _check_every_slice(vol, series)
    # a point in the 4th slice, 3 rows down, lies 3*0.5 mm along the tilted column direction
    np.testing.assert_allclose(vol.index_to_patient(4, 3, 0), np.array([0, 0, 20.0]) + 1.5 * np.array(col),
                               atol=1e-6)


def test_missing_slice_is_blank_and_reported():
    positions = [p for k, p in enumerate(axial_positions(8, step=2.0)) if k != 5]
    series = make_slice_series(positions)
    vol = load_series(series)
    assert vol.shape[0] == 8
    assert vol.metadata["acquired"] == [True] * 5 + [False] + [True] * 2
    assert vol.metadata["slice_refs"][5] is None
    assert np.all(vol.voxels[5] == vol.metadata["fill_value"])
    assert vol.metadata["fill_value"] == -1024
    assert any("1 slice(s) missing" in w for w in vol.warnings)
    _check_every_slice(vol, series)
    with pytest.raises(SeriesError) as err:
        load_series(series, irregular="refuse")
    assert "(0020,0032)" in str(err.value)


def test_irregular_spacing_is_resampled_not_stretched():
    zs = [0.0, 2.0, 4.0, 5.5, 7.5, 9.5, 11.5]
    series = make_slice_series([(0.0, 0.0, z) for z in zs], intercept=0.0,
                               values=lambda n, jj, ii: np.full(jj.shape, int(zs[n] * 100)))
    vol = load_series(series)
    assert any("irregular slice spacing" in w for w in vol.warnings)
    assert vol.voxels.dtype == np.float32
    # the resampled grid runs from the first to the last acquired slice: nothing stretched
    np.testing.assert_allclose(vol.index_to_patient(0, 0, 0)[2], 0.0)
    np.testing.assert_allclose(vol.index_to_patient(vol.shape[0] - 1, 0, 0)[2], 11.5, atol=1e-9)
    # values are a linear function of z, so linear interpolation reproduces them exactly at every grid slice
    for k in range(vol.shape[0]):
        z = vol.index_to_patient(k, 0, 0)[2]
        assert vol.voxels[k, 3, 3] == pytest.approx(100 * z, abs=0.05)
    with pytest.raises(SeriesError, match="not regular"):
        load_series(series, irregular="refuse")


def test_pixel_padding_and_rescale():
    series = make_slice_series(axial_positions(3), slope=2.0, intercept=-100.0, modality="MR",
                               values=lambda n, jj, ii: np.where(ii < 2, -2000, 10 * n + ii),
                               extra={"PixelPaddingValue": -2000})
    vol = load_series(series)
    assert vol.voxels[1, 0, 5] == 2 * (10 + 5) - 100
    assert np.all(vol.voxels[:, :, :2] == vol.metadata["fill_value"])


def test_mixed_orientations_are_refused_with_the_tag():
    a = make_slice_series(axial_positions(3))
    b = make_slice_series([(0.0, 0.0, 10.0)], iop=(1, 0, 0, 0, 0, -1), series_uid=a[0].SeriesInstanceUID)
    b[0].StudyInstanceUID = a[0].StudyInstanceUID
    with pytest.raises(SeriesError) as err:
        load_series(a + b)
    assert "(0020,0037)" in str(err.value)
    assert "SYNTHETIC" not in str(err.value) and "SYN-0001" not in str(err.value)


def test_different_matrix_sizes_are_refused():
    a = make_slice_series(axial_positions(2))
    b = make_slice_series([(0.0, 0.0, 9.0)], rows=8, series_uid=a[0].SeriesInstanceUID)
    with pytest.raises(SeriesError, match=r"\(0028,0010\)"):
        load_series(a + b)


def test_progressive_builder_from_json_metadata_matches_load_series():
    series = make_slice_series(axial_positions(10, step=1.25))
    # WADO-RS metadata: the same attributes as DICOM JSON, no pixel data
    metadata = []
    for ds in series:
        meta = Dataset.from_json({k: v for k, v in ds.to_json_dict().items() if k != "7FE00010"})
        metadata.append(meta)
    builder = VolumeBuilder(metadata)
    vol = builder.volume
    assert vol.shape == (10, 16, 16)
    assert not builder.complete
    before = vol.voxels                                    # the renderer holds this array from the start
    order = list(range(10))
    random.Random(7).shuffle(order)
    finished = []
    for n in order:
        finished += builder.add_instance(series[n])
    assert builder.complete and sorted(finished) == list(range(10))
    assert builder.volume.voxels is before                 # filled in place: one copy of the pixels
    np.testing.assert_array_equal(before, load_series(series).voxels)
    assert builder.add_instance(series[0]) == []           # duplicates are ignored


def test_builder_refuses_images_whose_positions_the_metadata_lacked():
    series = make_slice_series(axial_positions(4))
    metadata = []
    for ds in series:
        meta = Dataset.from_json({k: v for k, v in ds.to_json_dict().items()
                                  if k not in ("7FE00010", "00200032", "00200037")})
        metadata.append(meta)
    builder = VolumeBuilder(metadata)
    assert builder.volume.metadata["kind"] == "cine"
    with pytest.raises(SeriesError, match=r"lacked slice positions.*\(0020,0032\)"):
        builder.add_instance(series[0])


def test_single_frame_cine_at_one_position_is_frames_in_instance_order():
    # e.g. an MR cardiac cine stored as single-frame instances, all at the same slice position
    series = make_slice_series([(0.0, 0.0, 5.0)] * 6, modality="MR", intercept=0.0,
                               values=lambda n, jj, ii: np.full(jj.shape, n))
    shuffled = series[:]
    random.Random(2).shuffle(shuffled)
    vol = load_series(shuffled)
    assert vol.metadata["kind"] == "cine" and vol.shape == (6, 16, 16)
    assert [int(vol.voxels[k, 0, 0]) for k in range(6)] == list(range(6))
    np.testing.assert_allclose(vol.origin, [0, 0, 5.0])


def test_progressive_irregular_slice_completes_when_both_neighbours_arrived():
    zs = [0.0, 2.0, 4.0, 5.5, 7.5]
    series = make_slice_series([(0.0, 0.0, z) for z in zs], intercept=0.0,
                               values=lambda n, jj, ii: np.full(jj.shape, int(zs[n] * 100)))
    builder = VolumeBuilder(series)
    vol = builder.volume
    interpolated = [k for k, acq in enumerate(vol.metadata["acquired"]) if not acq]
    assert interpolated
    k = interpolated[0]
    z = vol.index_to_patient(k, 0, 0)[2]
    lower = max(n for n, zz in enumerate(zs) if zz < z)
    done = builder.add_instance(series[lower])
    assert k not in done and not builder.ready[k]
    done = builder.add_instance(series[lower + 1])
    assert k in done and builder.ready[k]
    assert vol.voxels[k, 0, 0] == pytest.approx(100 * z, abs=0.05)


def test_pixel_padding_range_limit():
    series = make_slice_series(axial_positions(2), values=lambda n, jj, ii: np.where(ii < 3, -3000 + ii, 50),
                               extra={"PixelPaddingValue": -3000, "PixelPaddingRangeLimit": -2990})
    vol = load_series(series)
    assert np.all(vol.voxels[:, :, :3] == -1024) and np.all(vol.voxels[:, :, 3:] == 50 - 1024)


def test_loader_and_volume_import_in_either_order():
    import subprocess
    import sys
    for first in ("viewer.loader", "viewer.volume"):
        code = f"import {first}; from viewer.volume import load_series, SeriesError, VolumeBuilder; print('ok')"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
        assert out.stdout.strip() == "ok", out.stderr


def test_an_instance_decoded_upstream_is_not_decoded_again(monkeypatch):
    """The retriever hands over datasets it already decoded; the loader uses that array instead of decoding twice."""
    from viewer import loader

    series = make_slice_series(axial_positions(4, step=2.0))
    for ds in series:
        ds.pixel_array  # noqa: B018 - decoded upstream, as the retriever does
    calls = []
    real = loader.pixel_array
    monkeypatch.setattr(loader, "pixel_array", lambda ds, *a, **k: calls.append(1) or real(ds, *a, **k))
    vol = load_series(series)
    assert calls == [] and vol.shape == (4, 16, 16)
    _check_every_slice(vol, series)
    fresh = make_slice_series(axial_positions(2, step=2.0))
    load_series(fresh)
    assert len(calls) == 2  # not decoded before: decoded here, once each
