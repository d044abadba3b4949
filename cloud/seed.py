"""Storing DICOM files into the reference cloud through its front door with STOW-RS, as a clinic gateway would.

Owns the upload used by ``--seed-demo`` (and handy for tests/benches): files are sent in batches with
dicomweb-client's ``store_instances`` so a 300-slice CT does not sit in memory at once.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass


def store_files(base_url: str, auth: tuple[str, str], files: Iterable[Path], batch: int = 40,
                verify: bool | str = True) -> int:
    session = create_session_from_user_pass(*auth)
    session.verify = verify
    if verify is not True:
        session.trust_env = False     # else REQUESTS_CA_BUNDLE from the environment overrides ``verify``
    client = DICOMwebClient(url=base_url, session=session)
    files = list(files)
    stored = 0
    for i in range(0, len(files), batch):
        datasets = [pydicom.dcmread(str(f)) for f in files[i:i + batch]]
        client.store_instances(datasets)
        stored += len(datasets)
    return stored


def seed_studies(base_url: str, auth: tuple[str, str], studies, verify: bool | str = True) -> int:
    return sum(store_files(base_url, auth, s.files, verify=verify) for s in studies)
