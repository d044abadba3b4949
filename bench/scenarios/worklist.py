"""Scenario ``worklist``: search 1,000 workitems through the front door vs a QIDO-RS study search for 1,000.

What is compared: 1,000 tiny one-image CT studies are stored through STOW-RS (nginx -> Orthanc) and routed by
the worklist service's change follower, so the cloud holds >= 1,000 studies and >= 1,000 workitems. Then,
all through the same nginx front door with the same user and a warm keep-alive session:

* ours: ``GET /dicom-web/workitems?limit=1000`` (UPS-RS search: SQLite + the stored DICOM JSON), JSON decoded;
* comparison: ``GET /dicom-web/studies?limit=1000`` (Orthanc's QIDO-RS study search, its own index), JSON
  decoded - the plain archive query a worklist-less client would run for the same number of rows;
* floor: ``curl`` fetching the same workitem search to /dev/null (no Python client, no JSON decode).
Both answers have exactly 1,000 entries (asserted). A workitem carries ~35 attributes, a QIDO study row ~15,
so the payloads differ; the note gives both sizes.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from bench.harness import Context, Result, median_time

NAME = "worklist"
N = 1000


def _tiny_ct(i: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = f"SYNTHETIC^BENCH{i:04d}", f"BENCH-{i:04d}", "READROOM-BENCH"
    ds.PatientSex, ds.PatientBirthDate = "O", "19700101"
    ds.StudyDate = dt.date.today().strftime("%Y%m%d")
    ds.StudyTime, ds.AccessionNumber, ds.StudyID = "120000", f"B{i:06d}", str(i)
    ds.StudyDescription = "BENCH CT HEAD"
    ds.Modality, ds.BodyPartExamined, ds.SeriesNumber, ds.InstanceNumber = "CT", "HEAD", 1, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = np.zeros((8, 8), dtype=np.uint16).tobytes()
    return ds


def _count(cloud, session, path: str) -> int:
    return len(session.get(f"{cloud.base_url}/{path}", params={"limit": N}, timeout=120).json())


def _fill(cloud, session) -> float:
    """Store studies until >= N are in Orthanc and have workitems; returns the seconds that took."""
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    t0 = time.perf_counter()
    missing = N - _count(cloud, session, "studies")
    client = DICOMwebClient(url=cloud.base_url, session=create_session_from_user_pass("clinic", "clinic"))
    for start in range(0, max(missing, 0), 100):
        client.store_instances([_tiny_ct(start + k) for k in range(min(100, missing - start))])
    deadline = time.monotonic() + 900
    while _count(cloud, session, "workitems") < N:
        if time.monotonic() > deadline:
            raise RuntimeError("the worklist service did not route 1,000 studies within 15 minutes")
        time.sleep(1)
    return time.perf_counter() - t0


def run(ctx: Context) -> list[Result]:
    cloud = ctx.cloud()
    s = requests.Session()
    s.auth = ("reader1", "reader1")
    fill_s = _fill(cloud, s)
    wl_url, qido_url = f"{cloud.base_url}/workitems", f"{cloud.base_url}/studies"
    sizes = {}

    def ours():
        r = s.get(wl_url, params={"limit": N}, timeout=120)
        sizes["wl"] = len(r.content)
        assert len(r.json()) == N

    def comparison():
        r = s.get(qido_url, params={"limit": N}, headers={"Accept": "application/dicom+json"}, timeout=120)
        sizes["qido"] = len(r.content)
        assert len(r.json()) == N

    ours()
    comparison()          # warm both paths once
    ours_s = median_time(ours, ctx.repeat)
    comp_s = median_time(comparison, ctx.repeat)
    floor_s = None
    curl = shutil.which("curl")
    if curl:
        cmd = [curl, "-sf", "-o", "/dev/null", "-u", "reader1:reader1", f"{wl_url}?limit={N}"]
        floor_s = median_time(lambda: subprocess.run(cmd, check=True), ctx.repeat)
    note = (f"{N} items; worklist {sizes['wl'] / 1e6:.2f} MB vs QIDO {sizes['qido'] / 1e6:.2f} MB of JSON; "
            f"storing+routing {N} studies took {fill_s:.1f} s")
    return [Result(name="worklist search 1,000 (nginx -> UPS-RS)", ours_s=ours_s,
                   comparison="QIDO-RS /studies 1,000 (nginx -> Orthanc)", comparison_s=comp_s,
                   floor="curl workitems search" if curl else None, floor_s=floor_s, note=note)]


if __name__ == "__main__":  # quick manual run: python -m bench.scenarios.worklist
    ctx = Context(Path("/tmp/readroom-bench-worklist"), repeat=5)
    try:
        for r in run(ctx):
            print(r.as_json())
    finally:
        ctx.close()
