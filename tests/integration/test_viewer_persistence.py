"""Saved measurement SR, GSPS and KOS are accepted by the real reference cloud (Orthanc behind nginx) via STOW-RS,
come back through WADO-RS, and restore into the same measurements (viewer.persistence)."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

from viewer import measurements as M
from viewer.persistence import restore, save_all
from viewer.volume import load_series

pytestmark = pytest.mark.integration


def _client(cloud, user):
    return DICOMwebClient(url=cloud.base_url, session=create_session_from_user_pass(*cloud.auth(user)))


def test_saved_objects_are_stored_and_restore_identically(cloud):
    study = next((s for s in cloud.seeded if s.modality == "CT"), None)
    if study is None:
        pytest.skip("the demo cloud has no CT study")
    files = sorted(study.files)
    datasets = [pydicom.dcmread(f) for f in files]
    series_uid = datasets[0].SeriesInstanceUID
    series = [d for d in datasets if d.SeriesInstanceUID == series_uid]
    vol = load_series(series)
    k = vol.shape[0] // 2
    p = vol.index_to_patient
    rows, cols = vol.shape[1], vol.shape[2]
    items = [M.Length.from_volume(vol, [p(k, rows // 4, cols // 4), p(k, rows // 2, cols // 2)], text="integration"),
             M.EllipseROI.from_volume(vol, [p(k, rows // 3, cols // 3), p(k, rows // 2, cols // 2)]),
             M.Arrow.from_volume(vol, [p(k, 10, 10), p(k, 30, 40)], text="here")]
    keys = [M.KeyImage.from_volume(vol, k, note="integration key")]
    saved = save_all(items, keys, series, observer_name="Reader^One")
    client = _client(cloud, "reader1")
    client.store_instances(saved.datasets)

    # what Orthanc now holds, fetched back through the front door
    back = []
    for ds in saved.datasets:
        got = client.retrieve_instance(study_instance_uid=ds.StudyInstanceUID,
                                       series_instance_uid=ds.SeriesInstanceUID,
                                       sop_instance_uid=ds.SOPInstanceUID)
        assert got.SOPClassUID == ds.SOPClassUID
        back.append(got)
    found = client.search_for_instances(study_instance_uid=study.study_uid,
                                        search_filters={"SOPInstanceUID": saved.sr.SOPInstanceUID})
    assert len(found) == 1

    restored = restore(back, vol)
    by_uid = {m.uid: m for m in restored.all}
    assert set(by_uid) == {m.uid for m in items}
    for m in items:
        r = by_uid[m.uid]
        assert type(r) is type(m) and r.text == m.text and r.sop_instance_uid == m.sop_instance_uid
        np.testing.assert_allclose(r.points, m.points, atol=1e-4)
    assert [k.sop_instance_uid for k in restored.key_images] == [keys[0].sop_instance_uid]
