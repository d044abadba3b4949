"""Tests for cloud/demo_data.py: the demo studies are valid DICOM with the right content and geometry.

Generation runs once per test session (it writes a few hundred files; test_demo_geometry.py shares it
through :func:`generated_demo`); each test then reads what it needs and must not modify the files.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from cloud import demo_data
from cloud.demo_data import DemoStudy, write_ct_series, write_demo_studies

NIGHT = dt.date(2026, 3, 1)  # the shift ends on 1 March: its prior falls on 1 March two years before


_GENERATED: dict[int, tuple[object, tuple[DemoStudy, ...]]] = {}


def generated_demo(tmp_path_factory) -> tuple[DemoStudy, ...]:
    """The whole demo, written once per session (keyed by the session's tmp_path_factory)."""
    key = id(tmp_path_factory)
    if key not in _GENERATED:  # the factory is kept alive with the result, so its id stays unique
        studies = tuple(write_demo_studies(tmp_path_factory.mktemp("demo"), night=NIGHT))
        _GENERATED[key] = (tmp_path_factory, studies)
    return _GENERATED[key][1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> list[DemoStudy]:
    return list(generated_demo(tmp_path_factory))


def _by_desc(demo: list[DemoStudy], word: str) -> DemoStudy:
    hits = [s for s in demo if word in s.description]
    assert len(hits) == 1, f"expected one study with {word!r}, got {[s.description for s in demo]}"
    return hits[0]


def _read_sorted(study: DemoStudy) -> list[pydicom.Dataset]:
    """Read a single-series study, sorted along the slice normal."""
    dss = [pydicom.dcmread(f) for f in study.files]
    normal = np.cross(*np.reshape(np.asarray(dss[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(dss, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _pixel_of(ds: pydicom.Dataset, lps) -> tuple[int, int]:
    """(row, col) of the pixel whose centre is nearest to a patient point lying in the slice plane."""
    ipp = np.asarray(ds.ImagePositionPatient, float)
    row_dir, col_dir = np.reshape(np.asarray(ds.ImageOrientationPatient, float), (2, 3))
    dr, dc = (float(v) for v in ds.PixelSpacing)  # row spacing, column spacing
    d = np.asarray(lps, float) - ipp
    return round(np.dot(d, col_dir) / dr), round(np.dot(d, row_dir) / dc)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_every_object_passes_dciodvfy(demo):
    iod = {"CT": "CTImage", "DX": "DXImageForPresentation", "US": "USMultiFrameImage"}
    files = [(f, s.modality) for s in demo for f in s.files]
    assert files
    failures = {}
    for f, modality in files:
        res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=60, check=False)
        lines = (res.stdout + res.stderr).splitlines()
        errors = [ln for ln in lines if ln.startswith("Error")]
        if iod[modality] not in lines:  # it checked the file against the IOD we meant to write
            errors.append(f"dciodvfy did not recognise the file as {iod[modality]}")
        if errors:
            failures["/".join(f.parts[-3:])] = errors[:5]
    assert not failures, f"{len(failures)} of {len(files)} objects have dciodvfy errors: {failures}"


def test_every_object_decodes_and_matches_its_study(demo):
    for study in demo:
        assert study.files, study.description
        for f in study.files:
            ds = pydicom.dcmread(f)
            assert ds.StudyInstanceUID == study.study_uid
            assert ds.SeriesInstanceUID in study.series_uids
            assert ds.PatientID == study.patient_id
            assert ds.IssuerOfPatientID == "READROOM-DEMO"
            assert "SYNTHETIC" in str(ds.PatientName)
            assert ds.file_meta.TransferSyntaxUID == study.transfer_syntax
            assert ds.RequestedProcedurePriority == study.priority
            arr = ds.pixel_array
            assert arr.shape[-2:] == (ds.Rows, ds.Columns)


def test_exactly_one_stat_study_and_it_is_the_head_ct(demo):
    stat = [s for s in demo if s.priority == "STAT"]
    assert len(stat) == 1
    assert stat[0].modality == "CT" and stat[0].body_part == "HEAD"
    assert all(s.priority == "ROUTINE" for s in demo if s is not stat[0])


def test_ct_head_phantom_values_and_size(demo):
    head = _by_desc(demo, "CT HEAD")
    dss = _read_sorted(head)
    assert len(dss) >= 150
    assert (dss[0].Rows, dss[0].Columns) == (512, 512)
    bleed_center = demo_data.HEAD_BLEED_CENTER_LPS
    ds = next(d for d in dss if abs(float(d.ImagePositionPatient[2]) - bleed_center[2]) < 1e-3)
    hu = _hu(ds)
    r, c = _pixel_of(ds, bleed_center)
    bleed = hu[r - 4 : r + 5, c - 4 : c + 5].mean()
    assert 60 < bleed < 85, bleed  # acute blood
    # brain on the mirror side (patient left = +x in LPS) is normal parenchyma, darker than the bleed
    r2, c2 = _pixel_of(ds, (-bleed_center[0] + 3.0, bleed_center[1], bleed_center[2]))
    brain = hu[r2 - 4 : r2 + 5, c2 - 4 : c2 + 5].mean()
    assert 20 < brain < 45 and bleed - brain > 25
    # the skull is bone: walk from the image centre to the right edge along the row
    row = hu[r, :]
    assert row.max() > 1000
    assert hu[0, 0] < -900  # air outside the head


def _runs(classes: list[str]) -> list[str]:
    """Collapse a sequence of labels into its runs ("a a b b a" -> ["a", "b", "a"])."""
    return [c for i, c in enumerate(classes) if i == 0 or c != classes[i - 1]]


def test_ct_head_layers_from_brain_to_air(demo):
    """Along rows through the head, outward from the middle: brain, then skull (bone HU), scalp, air."""
    head = _by_desc(demo, "CT HEAD")
    dss = _read_sorted(head)
    ds = dss[len(dss) * 2 // 3]  # above the skull base
    hu = _hu(ds)
    r, c = _pixel_of(ds, (0.0, 0.0, float(ds.ImagePositionPatient[2])))

    def label(v: float) -> str:
        return "air" if v < -500 else "bone" if v > 600 else "soft" if -150 < v < 100 else "edge"

    for step in (1, -1):  # towards patient left, towards patient right
        values = hu[r - 1 : r + 2, :].mean(axis=0)[c::step]
        seq = [x for x in _runs([label(v) for v in values]) if x != "edge"]
        assert _runs(seq) == ["soft", "bone", "soft", "air"], _runs(seq)
        bone = values[[label(v) == "bone" for v in values]]
        assert bone.max() > 1200  # cortical skull


def test_ct_head_cortex_has_sulci(demo):
    """Just inside the skull the brain is interrupted by CSF-density sulci, not a smooth shell."""
    head = _by_desc(demo, "CT HEAD")
    ds = _read_sorted(head)[120]
    hu = _hu(ds)
    r0, c0 = _pixel_of(ds, (1.5, -4.0, float(ds.ImagePositionPatient[2])))  # about the head's centre
    ps = float(ds.PixelSpacing[0])
    cortex = []
    for theta in np.linspace(0, 2 * np.pi, 720, endpoint=False):
        dr, dc = np.sin(theta), np.cos(theta)
        k = 10.0
        while hu[round(r0 + k * dr), round(c0 + k * dc)] < 600:  # out to the inner table
            k += 0.5
        k -= 4.0 / ps  # 4 mm inside it: the cortical ribbon
        cortex.append(hu[round(r0 + k * dr) - 1 : round(r0 + k * dr) + 2, round(c0 + k * dc)].mean())
    cleft = np.asarray(cortex) < 20
    n_sulci = int(np.sum(cleft & ~np.roll(cleft, 1)))
    assert 10 <= n_sulci <= 60, n_sulci
    assert np.median(cortex) > 25  # mostly grey matter between them


def test_ct_abdomen_organs_enhance_like_portal_venous_phase(demo):
    abd = _by_desc(demo, "CT ABDOMEN")
    dss = _read_sorted(abd)
    by_z = {round(float(d.ImagePositionPatient[2]), 3): d for d in dss}
    top = demo_data.ABDOMEN_TOP_Z

    def hu_at(x: float, y: float, z: float) -> float:
        d = by_z[round(z, 3)]
        r, c = _pixel_of(d, (x, y, z))
        return float(_hu(d)[r - 3 : r + 4, c - 3 : c + 4].mean())

    assert 90 < hu_at(-100.0, -10.0, top - 60) < 130  # liver
    assert 150 < hu_at(-88.0, 45.0, top - 150) < 200  # right kidney cortex
    assert 180 < hu_at(0.0, 52.0, top - 14) < 260  # vertebral body (cancellous)
    assert hu_at(-98.0, 8.0, top - 220) < -700  # gas in the ascending colon
    assert -140 < hu_at(0.0, -107.0, top - 200) < -60  # subcutaneous fat
    ax, ay, az = demo_data.ABDOMEN_APPENDIX_CENTER_LPS
    assert hu_at(ax, ay, az) < 60  # appendix lumen (fluid) ...
    assert -60 < hu_at(ax + 10.0, ay, az) < 10  # ... in stranded fat


def test_ct_abdomen_is_rle_and_has_contrast_filled_aorta(demo):
    abd = _by_desc(demo, "CT ABDOMEN")
    assert abd.transfer_syntax == pydicom.uid.RLELossless
    dss = _read_sorted(abd)
    assert len(dss) >= 200
    known = next(k for k in abd.known_objects if k.name == "aorta")
    ds = next(d for d in dss if d.SOPInstanceUID == known.sop_instance_uid)
    hu = _hu(ds)
    r, c = _pixel_of(ds, known.center)
    assert 160 < hu[r - 3 : r + 4, c - 3 : c + 4].mean() < 210


def test_write_ct_series_for_benches(tmp_path):
    files = write_ct_series(tmp_path, n_slices=12, rows=128, cols=96)
    assert len(files) == 12
    ds = pydicom.dcmread(files[0])
    assert ds.pixel_array.shape == (128, 96)
    zs = sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files)
    assert np.allclose(np.diff(zs), float(ds.SliceThickness))
    # the benches' 300 slices: spacing 190/300 mm is written as a valid (<= 16 character) decimal string
    many = write_ct_series(tmp_path / "many", n_slices=300, rows=16, cols=16)
    dss = [pydicom.dcmread(f) for f in many]
    zs = sorted(float(d.ImagePositionPatient[2]) for d in dss)
    assert np.allclose(np.diff(zs), float(dss[0].SliceThickness), atol=1e-6)
    for d in dss[:20]:
        assert all(len(str(v)) <= 16 for v in (*d.ImagePositionPatient, d.SliceThickness, *d.PixelSpacing))


def test_ct_series_geometry_is_consistent(demo):
    for study in (s for s in demo if s.modality == "CT"):
        dss = _read_sorted(study)
        first = dss[0]
        iop = np.asarray(first.ImageOrientationPatient, float)
        assert np.allclose(iop, [1, 0, 0, 0, 1, 0])  # axial, head-first supine
        ipps = np.array([np.asarray(d.ImagePositionPatient, float) for d in dss])
        assert np.allclose(ipps[:, :2], ipps[0, :2])  # no drift in x/y
        gaps = np.diff(ipps[:, 2])
        assert np.allclose(gaps, gaps[0]) and gaps[0] > 0
        assert np.isclose(gaps[0], float(first.SliceThickness))
        for d in dss:
            assert d.PatientPosition == "HFS"
            assert d.FrameOfReferenceUID == first.FrameOfReferenceUID
            assert [float(v) for v in d.PixelSpacing] == [float(v) for v in first.PixelSpacing]
            assert np.isclose(float(d.SliceLocation), float(d.ImagePositionPatient[2]))
        assert len({d.InstanceNumber for d in dss}) == len(dss)
    head = _by_desc(demo, "CT HEAD")
    assert np.isclose(float(_read_sorted(head)[0].SliceThickness), 1.0)


def test_chest_pa_and_lateral(demo):
    chest = _by_desc(demo, "CHEST")
    assert chest.modality == "DX" and chest.body_part == "CHEST"
    dss = [pydicom.dcmread(f) for f in chest.files]
    assert sorted(d.ViewPosition for d in dss) == ["LL", "PA"]
    assert sorted(d.PhotometricInterpretation for d in dss) == ["MONOCHROME1", "MONOCHROME2"]
    for d in dss:
        assert 1800 <= d.Columns <= 2600 and 2000 <= d.Rows <= 3000
        assert all(0.1 < float(v) < 0.2 for v in d.ImagerPixelSpacing)
        assert float(d.WindowWidth) > 0 and 0 < float(d.WindowCenter) < 4096
        arr = d.pixel_array.astype(np.float64)
        if d.PhotometricInterpretation == "MONOCHROME1":
            # stored values grow with beam intensity: air and lung are high, shown dark by the inversion
            assert (d.PresentationLUTShape, d.PixelIntensityRelationshipSign) == ("INVERSE", 1)
            arr = 4095 - arr  # brightness: high = dense
        else:
            assert (d.PresentationLUTShape, d.PixelIntensityRelationshipSign) == ("IDENTITY", -1)
        rows, cols = arr.shape

        def box(fr: float, fc: float, arr=arr, rows=rows, cols=cols) -> float:
            r, c = int(rows * fr), int(cols * fc)
            return float(arr[r - 50 : r + 50, c - 50 : c + 50].mean())

        air = box(0.02, 0.03)
        if d.ViewPosition == "PA":
            # lungs (upper third, beside the midline) are darker than the mediastinum and spine
            lung, dense = box(0.33, 0.28), box(0.33, 0.5)
        else:
            # superimposed lungs in the middle are darker than the abdomen below the diaphragm
            lung, dense = box(0.4, 0.5), box(0.92, 0.5)
        assert air < lung < dense, (d.ViewPosition, air, lung, dense)


def _wrist(demo) -> tuple[DemoStudy, DemoStudy]:
    wrists = sorted((s for s in demo if "WRIST" in s.description), key=lambda s: s.study_date)
    assert len(wrists) == 2
    return wrists[1], wrists[0]


def test_wrist_prior_two_years_earlier_same_patient(demo):
    current, prior = _wrist(demo)
    assert current.patient_id == prior.patient_id
    assert current.patient_birth_date == prior.patient_birth_date
    assert current.study_uid != prior.study_uid
    d_now = dt.datetime.strptime(current.study_date, "%Y%m%d").date()
    d_prior = dt.datetime.strptime(prior.study_date, "%Y%m%d").date()
    assert d_prior.replace(year=d_prior.year + 2) == d_now
    for s in (current, prior):  # PA and lateral, as the description says
        assert [pydicom.dcmread(f).ViewPosition for f in s.files] == ["PA", "LL"]
    a, b = pydicom.dcmread(current.files[0]), pydicom.dcmread(prior.files[0])
    assert a.PatientID == b.PatientID and a.PatientBirthDate == b.PatientBirthDate
    assert int(a.PatientAge[:3]) == int(b.PatientAge[:3]) + 2
    assert a.ImageLaterality == b.ImageLaterality == "R"


def _profile_dip(arr: np.ndarray, p0, p1, frac: float = 0.5, reach_px: float = 14.0) -> float:
    """Mean brightness 2 mm either side of a line (at a point along it) minus the brightness on it."""
    (r0, c0), (r1, c1) = p0, p1
    pr, pc = r0 + frac * (r1 - r0), c0 + frac * (c1 - c0)
    n = np.array([-(c1 - c0), r1 - r0], float)  # a perpendicular, in (row, col)
    n /= np.linalg.norm(n)

    def at(k: float) -> float:
        rr, cc = round(pr + k * n[0]), round(pc + k * n[1])
        return float(arr[rr - 1 : rr + 2, cc - 1 : cc + 2].mean())

    return (at(-reach_px) + at(reach_px)) / 2 - at(0.0)


def test_wrist_fracture_line_is_visible_and_absent_on_the_prior(demo):
    current, prior = _wrist(demo)
    assert current.transfer_syntax == pydicom.uid.JPEG2000Lossless
    now = pydicom.dcmread(current.files[0]).pixel_array.astype(np.float64)
    before = pydicom.dcmread(prior.files[0]).pixel_array.astype(np.float64)
    p0, p1 = demo_data.WRIST_FRACTURE_LINE_PX
    for frac in (0.35, 0.5, 0.65):  # along the line, inside the radius
        assert _profile_dip(now, p0, p1, frac) > 150
        # the prior is positioned 3 mm / -5 mm differently and has no fracture: no dip at the same place
        shift = (-5.0 / 0.15, 3.0 / 0.15)
        q0 = (p0[0] + shift[0], p0[1] + shift[1])
        q1 = (p1[0] + shift[0], p1[1] + shift[1])
        assert abs(_profile_dip(before, q0, q1, frac)) < 60


def test_compressed_series_decode_to_exactly_the_generated_pixels(demo):
    current, _ = _wrist(demo)
    expected = demo_data._wrist_pa(
        demo_data.WRIST_ROWS,
        demo_data.WRIST_COLS,
        demo_data.WRIST_SPACING,
        demo_data._WristPose(ball=demo_data.WRIST_BALL_CENTER),
        seed=31,
    )
    assert np.array_equal(pydicom.dcmread(current.files[0]).pixel_array, expected)
    # independent decoders agree bit for bit, so the encoded streams are standard, not one library's dialect
    from pydicom.pixels import pixel_array

    abd = _by_desc(demo, "CT ABDOMEN")
    for f in (abd.files[0], abd.files[len(abd.files) // 2]):
        a = pixel_array(f, decoding_plugin="pydicom")
        b = pixel_array(f, decoding_plugin="pylibjpeg")
        assert a.dtype == np.uint16 and np.array_equal(a, b)
    for f in current.files:
        a = pixel_array(f, decoding_plugin="pylibjpeg")  # OpenJPEG
        b = pixel_array(f, decoding_plugin="gdcm")  # python-gdcm is a project dependency
        assert np.array_equal(a, b)


def test_ultrasound_cine(demo):
    us = _by_desc(demo, "US ABDOMEN")
    assert us.modality == "US" and us.body_part == "ABDOMEN"
    ds = pydicom.dcmread(us.files[0])
    assert int(ds.NumberOfFrames) >= 30
    assert float(ds.FrameTime) > 0 and ds.FrameIncrementPointer == 0x00181063
    frames = ds.pixel_array
    assert frames.shape == (int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    assert not np.array_equal(frames[0], frames[len(frames) // 4])  # it moves (breathing)
    region = ds.SequenceOfUltrasoundRegions[0]
    assert region.PhysicalUnitsXDirection == 3 and float(region.PhysicalDeltaX) > 0
    # the gallstone is bright, the bile around it dark
    r, c = demo_data.US_STONE_CENTER_FRAME1
    stone = frames[0, r - 5 : r + 6, c - 5 : c + 6].mean()
    bile = frames[0, r - 60 : r - 45, c - 5 : c + 6].mean()
    assert stone > 150 and bile < 40


def test_study_headers_look_like_a_night_shift(demo):
    assert len({s.study_uid for s in demo}) == len(demo)
    assert len({s.accession_number for s in demo}) == len(demo)
    night = [s for s in demo if s.study_date >= (NIGHT - dt.timedelta(days=1)).strftime("%Y%m%d")]
    assert len(night) == len(demo) - 1  # all but the wrist prior
    for s in night:
        hour = int(s.study_time[:2])
        assert hour >= 22 or hour < 6, s.study_time
    for s in demo:
        ds = pydicom.dcmread(s.files[0])
        assert ds.InstitutionName and ds.ReferringPhysicianName and ds.AccessionNumber
        assert ds.PatientSex in ("M", "F", "O") and ds.PatientAge.endswith("Y")
        assert len(ds.PatientBirthDate) == 8
        assert s.clinical_history and ds.AdditionalPatientHistory == s.clinical_history
        assert ds.RequestAttributesSequence[0].AccessionNumber == s.accession_number
    bodies = {(s.modality, s.body_part) for s in demo}
    assert {("CT", "HEAD"), ("CT", "ABDOMEN"), ("DX", "CHEST"), ("DX", "WRIST"), ("US", "ABDOMEN")} <= bodies


def test_uids_are_deterministic(tmp_path):
    again = write_ct_series(tmp_path / "a", n_slices=2, rows=32, cols=32, key="same")
    twice = write_ct_series(tmp_path / "b", n_slices=2, rows=32, cols=32, key="same")
    other = write_ct_series(tmp_path / "c", n_slices=2, rows=32, cols=32, key="other")
    uid = [pydicom.dcmread(f[0]).SOPInstanceUID for f in (again, twice, other)]
    assert uid[0] == uid[1] != uid[2]
    for u in uid:
        assert u.startswith("2.25.") and len(u) <= 64


def test_demo_study_round_trips_through_json(demo):
    """The cloud writes seeded.json with dataclasses.asdict and the launcher rebuilds DemoStudy(**d)."""
    import dataclasses
    import json

    for s in demo:
        d = json.loads(json.dumps(dataclasses.asdict(s), default=str))
        back = DemoStudy(**d)
        assert back == s


def test_write_ct_series_headers_can_be_chosen(tmp_path):
    files = write_ct_series(
        tmp_path,
        n_slices=2,
        rows=32,
        cols=32,
        key="chest-stat",
        description="CT CHEST",
        body_part="CHEST",
        priority="STAT",
        acquired=dt.datetime(2026, 5, 4, 23, 15),
        patient_name="SYNTHETIC^OTHER",
        patient_id="RRDEMO-X",
    )
    ds = pydicom.dcmread(files[0])
    assert (ds.StudyDescription, ds.BodyPartExamined, ds.RequestedProcedurePriority) == (
        "CT CHEST",
        "CHEST",
        "STAT",
    )
    assert (ds.StudyDate, ds.StudyTime) == ("20260504", "231500")
    assert (str(ds.PatientName), ds.PatientID) == ("SYNTHETIC^OTHER", "RRDEMO-X")
    other = pydicom.dcmread(write_ct_series(tmp_path / "b", n_slices=1, rows=32, cols=32, key="b")[0])
    assert other.AccessionNumber != ds.AccessionNumber
    with pytest.raises(ValueError, match="priority"):
        write_ct_series(tmp_path / "c", n_slices=1, rows=32, cols=32, priority="URGENT")
