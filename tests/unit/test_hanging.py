"""Hanging-protocol matching (viewer.hanging) on study descriptions built from the protocol data files."""
from __future__ import annotations

import pytest

from viewer.hanging import SeriesInfo, StudyInfo, choose_protocol, load_protocols
from viewer.presets import builtin_preset
from viewer.synthetic import axial_positions, make_slice_series


def _chest_xr():
    return StudyInfo(study_uid="1.1", modalities=["CR"], body_part="CHEST", description="XR CHEST 2 VIEWS", series=[
        SeriesInfo("s-lat", "CR", "CHEST LAT", "CHEST", "LL", n_images=1),
        SeriesInfo("s-pa", "CR", "CHEST PA", "CHEST", "PA", n_images=1)])


def test_protocol_files_are_valid_and_windows_exist():
    protos = load_protocols()
    ids = {p["id"] for p in protos}
    assert {"chest_pa_lateral", "ct_head_brain_bone", "ct_body_axial_coronal", "compare_with_prior",
            "default_single"} <= ids
    for p in protos:
        for vp in p["viewports"]:
            if vp.get("window"):
                builtin_preset(vp["window"])          # every window named in a protocol is a real preset


def test_chest_pa_left_lateral_right():
    plan = choose_protocol(_chest_xr())
    assert plan.protocol_id == "chest_pa_lateral" and (plan.rows, plan.cols) == (1, 2)
    assert [v.series_uid for v in plan.viewports] == ["s-pa", "s-lat"]


def test_chest_by_description_when_view_position_missing():
    study = StudyInfo("1.2", ["DX"], "", "Chest radiograph", series=[
        SeriesInfo("a", "DX", "Lateral"), SeriesInfo("b", "DX", "PA frontal")])
    plan = choose_protocol(study)
    assert plan.protocol_id == "chest_pa_lateral"
    assert [v.series_uid for v in plan.viewports] == ["b", "a"]


def test_ct_head_brain_and_bone_windows_on_the_axial_series():
    study = StudyInfo("2.1", ["CT"], "HEAD", "CT HEAD WO CONTRAST", series=[
        SeriesInfo("scout", "CT", "Scout", plane="sagittal", n_images=2),
        SeriesInfo("ax", "CT", "Head 5mm", plane="axial", n_images=32),
        SeriesInfo("thin", "CT", "Head 0.625", plane="axial", n_images=250)])
    plan = choose_protocol(study)
    assert plan.protocol_id == "ct_head_brain_bone"
    assert [v.series_uid for v in plan.viewports] == ["thin", "thin"]
    assert [v.window for v in plan.viewports] == ["ct_brain", "ct_bone"]
    assert plan.link_scroll


def test_ct_body_axial_and_coronal_reformat():
    study = StudyInfo("3.1", ["CT"], "ABDOMEN", "CT ABDOMEN PELVIS W CONTRAST", series=[
        SeriesInfo("ax", "CT", "Portal venous 3mm", plane="axial", n_images=150),
        SeriesInfo("cor", "CT", "Coronal MPR", plane="coronal", n_images=80)])
    plan = choose_protocol(study)
    assert plan.protocol_id == "ct_body_axial_coronal"
    assert [(v.series_uid, v.reformat) for v in plan.viewports] == [("ax", None), ("ax", "coronal")]


def test_with_prior_current_left_prior_right_matching_series():
    current = StudyInfo("4.1", ["CT"], "CHEST", "CT CHEST", study_date="20260101", series=[
        SeriesInfo("c-lung", "CT", "Lung 1mm", plane="axial", n_images=300),
        SeriesInfo("c-med", "CT", "Mediastinum 5mm", plane="axial", n_images=60)])
    prior = StudyInfo("4.0", ["CT"], "CHEST", "CT CHEST", study_date="20250101", series=[
        SeriesInfo("p-med", "CT", "Mediastinum 5mm", plane="axial", n_images=60),
        SeriesInfo("p-lung", "CT", "Lung 1mm", plane="axial", n_images=280)])
    plan = choose_protocol(current, [prior])
    assert plan.protocol_id == "compare_with_prior"
    left, right = plan.viewports
    assert (left.study_uid, left.series_uid) == ("4.1", "c-lung")
    assert (right.study_uid, right.series_uid) == ("4.0", "p-lung")
    assert plan.link_scroll and plan.link_window


def test_unknown_study_gets_the_default_layout():
    plan = choose_protocol(StudyInfo("5.1", ["US"], "", "Echo", series=[SeriesInfo("u", "US", n_images=65)]))
    assert plan.protocol_id == "default_single" and plan.viewports[0].series_uid == "u"


def test_ct_chest_without_axial_series_uses_what_exists():
    study = StudyInfo("6.1", ["CT"], "", "CT THORAX", series=[SeriesInfo("x", "CT", "recon", plane=None)])
    plan = choose_protocol(study)
    assert plan.protocol_id == "ct_body_axial_coronal" and plan.viewports[0].series_uid == "x"


def test_study_info_from_datasets():
    a = make_slice_series(axial_positions(4))
    b = make_slice_series([(0, 0, 0)], iop=(0, 1, 0, 0, 0, -1), study_uid=a[0].StudyInstanceUID)
    for ds in a + b:
        ds.StudyDescription = "CT HEAD"
    info = StudyInfo.from_datasets(a + b)
    assert info.modalities == ["CT"] and len(info.series) == 2
    planes = {s.series_uid: (s.plane, s.n_images) for s in info.series}
    assert planes[a[0].SeriesInstanceUID] == ("axial", 4)
    assert planes[b[0].SeriesInstanceUID] == ("sagittal", 1)
    assert choose_protocol(info).protocol_id == "ct_head_brain_bone"


def test_bad_protocol_is_rejected():
    from viewer.hanging import _validate
    with pytest.raises(ValueError, match="more viewports"):
        _validate({"id": "x", "name": "x", "layout": [1, 1], "viewports": [{}, {}]}, "x.json")


def test_series_info_plane_from_enhanced_per_frame_groups(real_data):
    import pydicom
    ds = pydicom.dcmread(real_data / "03_mr_enhanced_epi_sagittal_xa30" / "5_Product_EPI_Sag_Ascending_0063.dcm",
                         stop_before_pixels=True)
    info = SeriesInfo.from_dataset(ds)
    assert info.plane == "sagittal" and info.n_images == 63 and info.modality == "MR"


def test_two_radiograph_views_side_by_side_but_one_view_single():
    two = StudyInfo("7.1", ["DX"], "WRIST", "XR WRIST RIGHT 2 VIEWS", series=[
        SeriesInfo("pa", "DX", "PA", view_position="PA", series_number=1),
        SeriesInfo("lat", "DX", "LAT", view_position="LL", series_number=2)])
    plan = choose_protocol(two)
    assert plan.protocol_id == "xr_two_views" and [v.series_uid for v in plan.viewports] == ["pa", "lat"]
    one = StudyInfo("7.2", ["DX"], "WRIST", "XR WRIST", series=[SeriesInfo("pa", "DX", "PA")])
    assert choose_protocol(one).protocol_id == "default_single"
