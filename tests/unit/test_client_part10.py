"""The fetch's fast Part 10 reader must give exactly what pydicom.dcmread gives: the same raw elements (tag, VR,
length, value bytes, offset), the same converted values, the same file meta, preamble and encodings - on
real-world files, on pydicom's own test files, and on re-encodings that exercise implicit VR, undefined-length
sequences, encapsulated pixel data, character sets and truncation. Also its helpers: convert_now (pydicom's
values, converted ahead), pixel_ids (= pydicom's get_image_pixel_ids) and quick_value."""
import copy
import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.pixels.utils import get_image_pixel_ids
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from cloud_client import part10
from cloud_client.part10 import convert_now, pixel_ids, quick_value, read_part10
from cloud_client.retrieve import _QUICK_TAGS, decode_pixels

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
CHARSET_FILES = Path(pydicom.data.__file__).parent / "charset_files"


def _corpus(real_data: Path) -> list[tuple[str, bytes]]:
    files = sorted(real_data.rglob("*.dcm")) + sorted(PYDICOM_FILES.rglob("*.dcm")) \
        + sorted(CHARSET_FILES.glob("*.dcm"))
    return [(f.name, f.read_bytes()) for f in files]


def _reencoded(data: bytes) -> list[tuple[str, bytes]]:
    """The same dataset as implicit VR little endian and with every sequence written with undefined length."""
    out = []
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not every corpus file is readable without force
        return out
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        return out
    for name, syntax, undefined in (("implicit", ImplicitVRLittleEndian, False),
                                    ("undefined-sq", ExplicitVRLittleEndian, True),
                                    ("implicit-undefined-sq", ImplicitVRLittleEndian, True)):
        d = copy.deepcopy(ds)
        if undefined:
            def mark(dataset):
                for elem in dataset:
                    if elem.VR == "SQ":
                        elem.is_undefined_length = True
                        for item in elem.value:
                            item.is_undefined_length_sequence_item = True
                            mark(item)
            mark(d)
        buf = io.BytesIO()
        try:
            d.save_as(buf, implicit_vr=syntax.is_implicit_VR, little_endian=True, enforce_file_format=True)
        except Exception:  # noqa: BLE001, S112 - a dataset pydicom cannot re-encode is not a case for this test
            continue
        blob = bytearray(buf.getvalue())
        # save_as keeps the original file meta: state the syntax the bytes now have
        meta = pydicom.dcmread(io.BytesIO(bytes(blob)), stop_before_pixels=True).file_meta
        if meta.TransferSyntaxUID != syntax:
            d.file_meta.TransferSyntaxUID = syntax
            buf = io.BytesIO()
            d.save_as(buf, implicit_vr=syntax.is_implicit_VR, little_endian=True, enforce_file_format=True)
            blob = bytearray(buf.getvalue())
        out.append((name, bytes(blob)))
    return out


def _converted(ds, tag):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            elem = ds[tag]
            return elem.VR, elem.value
        except Exception as exc:  # noqa: BLE001 - pydicom cannot convert it: the other must fail alike
            return "error", type(exc)


def _same_dataset(mine, ref, where="") -> None:
    assert type(mine) is type(ref), where
    assert list(mine._dict) == list(ref._dict), where  # same tags, same order
    for tag in ref._dict:
        a, b = mine._dict[tag], ref._dict[tag]
        if isinstance(a, RawDataElement) != isinstance(b, RawDataElement):  # one converted already: values
            assert _converted(mine, tag) == _converted(ref, tag), (where, tag)
            continue
        if isinstance(b, RawDataElement):
            assert isinstance(a, RawDataElement), (where, tag)
            assert tuple(a) == tuple(b), (where, tag)  # tag, VR, length, value bytes, value_tell, flags
            assert type(a.value) is type(b.value), (where, tag)
            continue
        assert a.VR == b.VR and a.is_undefined_length == b.is_undefined_length, (where, tag)
        if b.VR == "SQ":
            assert len(a.value) == len(b.value), (where, tag)
            for i, (x, y) in enumerate(zip(a.value, b.value, strict=True)):
                _same_dataset(x, y, f"{where}/{tag}[{i}]")
        else:
            assert a.value == b.value, (where, tag)


def _same_result(data: bytes, name: str, stop_before_pixels: bool = False) -> bool:
    """read_part10 and dcmread agree on these bytes (including failing the same way). True if it took the
    fast path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ref = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)
        except Exception as exc:  # noqa: BLE001
            with pytest.raises(type(exc)):
                read_part10(data, stop_before_pixels=stop_before_pixels)
            return False
        try:
            part10._read(data, stop_before_pixels)
            fast = True
        except part10._Unusual:
            fast = False
        mine = read_part10(data, stop_before_pixels=stop_before_pixels)
    _same_dataset(mine.file_meta, ref.file_meta, f"{name} meta")
    _same_dataset(mine, ref, name)
    assert mine.preamble == ref.preamble, name
    assert (mine.is_implicit_VR, mine.is_little_endian) == (ref.is_implicit_VR, ref.is_little_endian), name
    assert mine.original_encoding == ref.original_encoding, name
    assert mine.original_character_set == ref.original_character_set, name
    assert mine.file_meta.original_encoding == ref.file_meta.original_encoding, name
    assert mine.buffer.tell() == ref.buffer.tell(), name
    # converted values agree too (text in the file's character set, numbers, UIDs, sequences)
    for tag in list(ref._dict):
        got, want = _converted(mine, tag), _converted(ref, tag)
        if want[0] == "SQ":
            assert got[0] == "SQ" and len(got[1]) == len(want[1]), (name, tag)
        else:
            assert got == want or (got[1] != got[1] and want[1] != want[1]), (name, tag)
    return fast


@pytest.mark.parametrize("stop_before_pixels", [False, True])
def test_same_as_dcmread_on_real_and_pydicom_files(real_data, stop_before_pixels):
    corpus = _corpus(real_data)
    fast = sum(_same_result(data, name, stop_before_pixels) for name, data in corpus)
    assert len(corpus) > 150
    assert fast > 0.7 * len(corpus), fast  # the fast path is what most of them take


def test_same_as_dcmread_on_implicit_vr_and_undefined_length_sequences(real_data):
    cases = [(f"{name}:{kind}", blob) for name, data in _corpus(real_data) for kind, blob in _reencoded(data)]
    kinds = {c[0].rsplit(":", 1)[1] for c in cases}
    assert kinds == {"implicit", "undefined-sq", "implicit-undefined-sq"}
    fast = {k: [0, 0] for k in kinds}
    for name, blob in cases:
        counts = fast[name.rsplit(":", 1)[1]]
        counts[0] += _same_result(blob, name)
        counts[1] += 1
    for kind, (took, of) in fast.items():  # each encoding takes the fast path, implicit VR included
        assert of >= 5 and took > 0.8 * of, (kind, took, of)


def test_encapsulated_character_sets_and_the_demo_series_take_the_fast_path(real_data, tmp_path):
    from cloud.demo_data import write_ct_series

    files = write_ct_series(tmp_path, n_slices=3, rows=64, cols=64, key="part10")
    cases = [f.read_bytes() for f in files]
    encapsulated = []
    for p in sorted(real_data.rglob("*.dcm")):
        meta = getattr(pydicom.dcmread(p, stop_before_pixels=True, force=True), "file_meta", None)
        if getattr(meta, "TransferSyntaxUID", ExplicitVRLittleEndian).is_encapsulated:
            encapsulated.append(p.read_bytes())
    cases += encapsulated[:5]
    cases += [p.read_bytes() for p in sorted(CHARSET_FILES.glob("*.dcm"))]
    assert len(cases) > 15
    for i, data in enumerate(cases):
        part10._read(data)  # raises _Unusual if it would fall back
        assert _same_result(data, f"case {i}")


@pytest.mark.parametrize("cut", [1, 7, 100, 1000, 5000])
def test_truncated_and_foreign_bytes_behave_as_dcmread(tmp_path, cut):
    from cloud.demo_data import write_ct_series

    data = write_ct_series(tmp_path, n_slices=1, rows=32, cols=32, key="cut")[0].read_bytes()
    _same_result(data[:-cut], f"cut {cut}")
    _same_result(data[: 140 + cut], f"head {cut}")
    with pytest.raises(pydicom.errors.InvalidDicomError):
        read_part10(b"<html>502 Bad Gateway</html>" * 10)
    big_endian = bytearray(data)
    _same_result(bytes(big_endian).replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.2\0", 1), "big endian")


def _read_both(real_data: Path):
    """(name, dcmread's dataset, read_part10's dataset) for each corpus file pydicom can read."""
    for name, data in _corpus(real_data):
        try:
            ref = pydicom.dcmread(io.BytesIO(data))
        except Exception:  # noqa: BLE001, S112
            continue
        yield name, ref, read_part10(data)


def test_convert_now_gives_pydicom_values_and_pixel_ids_match(real_data):
    checked = 0
    for name, ref, mine in _read_both(real_data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert_now(mine, _QUICK_TAGS)
            assert pixel_ids(mine) == get_image_pixel_ids(mine), name
            for tag in _QUICK_TAGS:
                if tag not in ref:
                    continue
                try:
                    want = ref[tag]
                except Exception:  # noqa: BLE001, S112 - pydicom cannot convert it; left raw for pydicom
                    continue
                got = mine[tag]
                assert (got.VR, type(got.value), got.value) == (want.VR, type(want.value), want.value), (name, tag)
                checked += 1
    assert checked > 500


def test_quick_value_reads_what_pydicom_converts(real_data):
    checked = 0
    for name, ref, mine in _read_both(real_data):
        for tag, kind in ((0x00280010, "US"), (0x00280011, "US"), (0x00280100, "US"), (0x00280101, "US"),
                          (0x00280103, "US"), (0x00280002, "US"), (0x00280004, "CS"), (0x00280008, "IS")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    want = ref[tag].value if tag in ref else None
                except Exception:  # noqa: BLE001, S112
                    continue
                got = quick_value(mine, tag, kind, None)
            if want in (None, "", b""):
                assert got is None, (name, tag)
            else:
                assert got == want, (name, tag, got, want)
            checked += 1
    assert checked > 600


def test_decoded_pixels_are_kept_and_pydicom_sees_them_current(real_data):
    """After the fetch's decode, ds.pixel_array returns the kept array (pydicom's own check passes), and a change
    of Pixel Data makes pydicom decode again."""
    used = 0
    for f in sorted(real_data.rglob("*.dcm")):
        data = f.read_bytes()
        try:
            ref = pydicom.dcmread(io.BytesIO(data))
            want = ref.pixel_array
        except Exception:  # noqa: BLE001, S112 - no pixels, or no decoder for them
            continue
        ds = read_part10(data)
        convert_now(ds, _QUICK_TAGS)
        decode_pixels(ds)
        kept = ds._pixel_array
        got = ds.pixel_array
        assert got is kept and np.array_equal(got, want) and got.dtype == want.dtype, f.name
        used += 1
        if ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and ds.get("BitsAllocated") == 16 \
                and ds.get("SamplesPerPixel", 1) == 1 and int(ds.get("NumberOfFrames") or 1) == 1:
            ds.PixelData = bytes(len(ds.PixelData))
            assert ds.pixel_array is not kept and not ds.pixel_array.any(), f.name
    assert used > 40


# Byte-level cases (a minimal Part 10 file: preamble, DICM, file meta, a few dataset elements).
def _ex(group, elem, vr, value, length=None):
    long_vrs = {"OB", "OD", "OF", "OL", "OW", "OV", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
    n = len(value) if length is None else length
    if vr in long_vrs:
        return struct.pack("<HH2sHL", group, elem, vr.encode(), 0, n) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), n) + value


def _pad(text):
    raw = text.encode()
    return raw + b"\0" * (len(raw) % 2)


def _meta(ts, first=None):
    body = _ex(2, 1, "OB", b"\0\1") + _ex(2, 2, "UI", _pad("1.2.840.10008.5.1.4.1.1.7")) \
        + _ex(2, 3, "UI", _pad("1.2.3.4.5")) + (_ex(2, 0x10, "UI", _pad(ts)) if ts else b"") \
        + _ex(2, 0x12, "UI", _pad("1.2.3.9"))
    group_length = _ex(2, 0, "UL", struct.pack("<L", len(body))) if first is None else first
    return b"\0" * 128 + b"DICM" + group_length + body


_DATASET = _ex(8, 0x16, "UI", _pad("1.2.840.10008.5.1.4.1.1.7")) + _ex(8, 0x18, "UI", _pad("1.2.3.4.5")) \
    + _ex(0x10, 0x10, "PN", _pad("A^B"))
_ITEM = struct.pack("<HHL", 0xFFFE, 0xE000, 0) + struct.pack("<HHL", 0xFFFE, 0xE000, 4) + b"\xff\xd8\xff\xd9"


@pytest.mark.parametrize("case", [
    "unknown-syntax", "private-syntax", "multi-valued-syntax", "no-delimiter", "meta-only", "command-elements",
    "meta-out-of-order", "no-syntax", "encapsulated"])
def test_byte_level_cases_behave_as_dcmread(case):
    """Cases found in review: transfer syntaxes pydicom does not know (newer or private), a missing sequence
    delimiter at the end, a file with only its meta, command elements in the dataset, meta elements out of
    order - read_part10 gives what dcmread gives (it hands them to dcmread)."""
    explicit = "1.2.840.10008.1.2.1"
    data = {
        "unknown-syntax": _meta("1.2.840.10008.1.2.4.110") + _DATASET,  # JPEG XL: newer than pydicom 3.0
        "private-syntax": _meta("1.2.840.113619.5.2") + _DATASET,
        "multi-valued-syntax": _meta(explicit + "\\1.2") + _DATASET,
        "no-delimiter": _meta("1.2.840.10008.1.2.4.50") + _DATASET + _ex(0x7FE0, 0x10, "OB", _ITEM, 0xFFFFFFFF),
        "meta-only": _meta(explicit),
        "command-elements": _meta(explicit) + _ex(0, 0x100, "US", struct.pack("<H", 1)) + _DATASET,
        "meta-out-of-order": b"\0" * 128 + b"DICM" + _ex(2, 1, "OB", b"\0\1") + _ex(2, 0, "UL", b"\0\0")
        + _ex(2, 0x10, "UI", _pad(explicit)) + _DATASET,
        "no-syntax": _meta(None) + _DATASET,
        "encapsulated": _meta("1.2.840.10008.1.2.4.50") + _DATASET
        + _ex(0x7FE0, 0x10, "OB", _ITEM + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0), 0xFFFFFFFF),
    }[case]
    fast = _same_result(data, case)
    assert fast == (case == "encapsulated")


def test_quick_value_is_none_for_a_present_empty_element_and_reads_cs_as_pydicom():
    explicit = "1.2.840.10008.1.2.1"
    data = _meta(explicit) + _DATASET + _ex(0x28, 2, "US", b"") + _ex(0x28, 4, "CS", b" MONOCHROME2") \
        + _ex(0x28, 0x10, "US", struct.pack("<H", 4))
    ds = read_part10(data)
    assert quick_value(ds, 0x00280002, "US", 1) is None  # present but empty: not the default
    assert quick_value(ds, 0x00280004, "CS", "") == pydicom.dcmread(io.BytesIO(data)).PhotometricInterpretation
    assert quick_value(ds, 0x00280010, "US", 0) == 4 and quick_value(ds, 0x00280011, "US", 7) == 7
    from cloud_client.retrieve import _native_pixels

    assert _native_pixels(ds) is None  # not decoded natively: pydicom's rules (and its error) apply
