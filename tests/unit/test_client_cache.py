"""The encrypted instance cache: round trip, no plaintext on disk, LRU with pins, crash leftovers."""
from __future__ import annotations

import io
import time

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from cloud_client.cache import InstanceCache


def make_instance(study: str, series: str, number: int, rows: int = 32, name: str = "SECRET^PATIENT") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID, ds.Modality, ds.InstanceNumber = name, "PID-4711", "CT", number
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = (np.arange(rows * rows, dtype=np.int16) * number).tobytes()
    return ds


def part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_round_trip_ordered_and_encrypted(tmp_path):
    cache = InstanceCache(tmp_path / "c")
    study, series = generate_uid(), generate_uid()
    dss = [make_instance(study, series, n) for n in (3, 1, 2)]
    for ds in dss:
        cache.put(ds.SOPInstanceUID, study, series, part10(ds), int(ds.InstanceNumber))
    got = cache.series_datasets(study, series)
    assert [int(d.InstanceNumber) for d in got] == [1, 2, 3]
    for d in got:
        src = next(s for s in dss if s.SOPInstanceUID == d.SOPInstanceUID)
        assert np.array_equal(d.pixel_array, src.pixel_array)
    assert cache.has(dss[0].SOPInstanceUID)
    assert cache.cached_sop_uids(study) == {d.SOPInstanceUID for d in dss}
    with pytest.raises(KeyError):
        cache.get_dataset("1.2.3.4")
    for f in (tmp_path / "c").rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert b"DICM\x02\x00" not in blob and b"SECRET" not in blob and b"PID-4711" not in blob, f
            assert dss[0].SOPInstanceUID.encode() not in blob or f.name.startswith("index")


def test_lru_eviction_spares_pinned_studies(tmp_path):
    cache = InstanceCache(tmp_path / "c", max_bytes=0)  # 0 = no automatic eviction
    a, b, c = generate_uid(), generate_uid(), generate_uid()
    sizes = {}
    for study in (a, b, c):
        series = generate_uid()
        for n in range(3):
            ds = make_instance(study, series, n)
            data = part10(ds)
            sizes[study] = sizes.get(study, 0) + len(data)
            cache.put(ds.SOPInstanceUID, study, series, data, n)
            time.sleep(0.002)
    cache.pin(a, "reading")
    # touch b so that c is the least recently used unpinned study
    for inst in cache.instances(b):
        cache.get_bytes(inst.sop_uid)
    cap = sizes[a] + sizes[b]
    freed = cache.evict(cap)
    assert freed == sizes[c]
    assert cache.instances(c) == []
    assert len(cache.instances(a)) == 3 and len(cache.instances(b)) == 3
    # even a cap of zero never removes the pinned study
    cache.evict(0)
    assert len(cache.instances(a)) == 3 and cache.instances(b) == []
    cache.unpin(a)
    cache.evict(0)
    assert cache.total_bytes() == 0


def test_size_cap_applies_on_put(tmp_path):
    study = generate_uid()
    one = len(part10(make_instance(study, "1.2", 1)))
    cache = InstanceCache(tmp_path / "c", max_bytes=int(one * 2.5))
    for n in range(5):
        ds = make_instance(study, "1.2", n)
        cache.put(ds.SOPInstanceUID, study, "1.2", part10(ds), n)
        time.sleep(0.002)
    assert cache.total_bytes() <= one * 2.5
    assert [i.instance_number for i in cache.instances(study)] == [3, 4]


def test_damaged_or_missing_file_is_a_miss_not_bad_data(tmp_path):
    cache = InstanceCache(tmp_path / "c")
    study = generate_uid()
    d1, d2 = make_instance(study, "1.2", 1), make_instance(study, "1.2", 2)
    cache.put(d1.SOPInstanceUID, study, "1.2", part10(d1), 1)
    cache.put(d2.SOPInstanceUID, study, "1.2", part10(d2), 2)
    torn = tmp_path / "c" / "objects" / cache._relpath(d1.SOPInstanceUID)
    torn.write_bytes(torn.read_bytes()[:100])  # a torn write after a power loss
    gone = tmp_path / "c" / "objects" / cache._relpath(d2.SOPInstanceUID)
    gone.unlink()
    assert cache.get_bytes(d1.SOPInstanceUID) is None
    assert cache.get_bytes(d2.SOPInstanceUID) is None
    assert not cache.has(d1.SOPInstanceUID) and not cache.has(d2.SOPInstanceUID)


def test_repair_removes_crash_leftovers(tmp_path):
    cache = InstanceCache(tmp_path / "c")
    study = generate_uid()
    d1 = make_instance(study, "1.2", 1)
    cache.put(d1.SOPInstanceUID, study, "1.2", part10(d1), 1)
    cache.close()
    sub = tmp_path / "c" / "objects" / "ab"
    sub.mkdir(exist_ok=True)
    stray = sub / ".tmp-123-abc.rrc"
    stray.write_bytes(b"half a file")
    orphan = sub / ("ab" + "0" * 62 + ".rrc")
    orphan.write_bytes(b"written but never indexed")
    import os
    old = time.time() - 3600
    os.utime(stray, (old, old))
    os.utime(orphan, (old, old))
    cache2 = InstanceCache(tmp_path / "c")
    assert not stray.exists() and not orphan.exists()
    assert np.array_equal(cache2.get_dataset(d1.SOPInstanceUID).pixel_array, d1.pixel_array)


def test_other_key_cannot_read(tmp_path):
    from cloud_client.vault import Vault

    cache = InstanceCache(tmp_path / "c", vault=Vault(b"k" * 32))
    study = generate_uid()
    d1 = make_instance(study, "1.2", 1)
    cache.put(d1.SOPInstanceUID, study, "1.2", part10(d1), 1)
    cache.close()
    other = InstanceCache(tmp_path / "c", vault=Vault(b"x" * 32))
    assert other.get_bytes(d1.SOPInstanceUID) is None  # dropped as a miss, never served


def test_prefetch_pin_never_downgrades_a_reading_pin(tmp_path):
    cache = InstanceCache(tmp_path / "c")
    cache.pin("1.2.3", "prefetch")
    assert cache.pinned("prefetch") == {"1.2.3"}
    cache.pin("1.2.3", "reading")  # the reader opened it
    cache.pin("1.2.3", "prefetch")  # a later prefetch round must not weaken that
    assert cache.pin_reason("1.2.3") == "reading" and cache.pinned("prefetch") == set()
    cache.unpin("1.2.3")
    assert cache.pinned() == set() and cache.pin_reason("1.2.3") is None


def test_entry_that_is_not_dicom_is_dropped_as_a_miss(tmp_path, caplog):
    """Decrypts fine but is no readable DICOM (a bug or bad bytes cached): a miss that is fetched again, a
    log line without patient data, never a parser traceback for the reader."""
    cache = InstanceCache(tmp_path / "c")
    study = generate_uid()
    d1, d2 = make_instance(study, "1.2", 1), make_instance(study, "1.2", 2)
    d2.PatientName, d2.PatientID = "SYNTHETIC^CACHELEAK", "RR-CACHE-LEAK"
    cache.put(d1.SOPInstanceUID, study, "1.2", b"PatientName=SYNTHETIC^CACHELEAK not dicom", 1)
    cache.put(d2.SOPInstanceUID, study, "1.2", part10(d2), 2)
    with caplog.at_level("DEBUG"):
        with pytest.raises(KeyError):
            cache.get_dataset(d1.SOPInstanceUID)
        assert [d.SOPInstanceUID for d in cache.series_datasets(study, "1.2")] == [d2.SOPInstanceUID]
    assert not cache.has(d1.SOPInstanceUID) and cache.has(d2.SOPInstanceUID)
    assert "not readable DICOM" in caplog.text
    assert "CACHELEAK" not in caplog.text and "RR-CACHE-LEAK" not in caplog.text
