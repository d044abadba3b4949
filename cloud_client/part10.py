"""Fast reading of DICOM Part 10 bytes into a pydicom dataset (the streaming fetch's hot path).

Owns turning the bytes of one received instance into the same :class:`pydicom.dataset.FileDataset` that
``pydicom.dcmread`` returns, several times faster for what an archive sends most (little-endian, explicit or
implicit VR). ``pydicom.dcmread`` walks a file object element by element; on a 300-slice CT that was the largest
share of the fetch's CPU time (see docs/benchmarks.md). This walks the bytes in memory with ``struct`` and
yields pydicom's own ``RawDataElement`` tuples - values stay raw and are converted by pydicom on first access,
exactly as after ``dcmread``. Undefined-length elements (sequences, encapsulated Pixel Data) are handed to
pydicom's own readers at their offset. Anything unusual (no ``DICM`` marker, big endian, deflate, an unknown
VR, a truncated element) is read by ``pydicom.dcmread`` itself, so the result never differs: tests compare
both readers element by element on generated and real-world files, and the fetch benchmark keeps
``pydicom.dcmread`` as the comparison.

Also the helpers that keep the stream's own reads of a dataset cheap: :func:`convert_now` (pydicom's conversion of
chosen elements, done ahead), :func:`quick_value` (a US/IS/CS value from its raw bytes) and :func:`pixel_ids`
(pydicom's ``get_image_pixel_ids`` through the element store).
"""
from __future__ import annotations

import io
from struct import Struct

import pydicom
import pydicom.datadict
from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import _dictionary_vr_fast as dictionary_VR  # what dcmread uses for this
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_sequence, read_undefined_length_value
from pydicom.hooks import hooks
from pydicom.tag import BaseTag, SequenceDelimiterTag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.values import convert_string, convert_value

_EXPLICIT = Struct("<HH2sH")
_IMPLICIT = Struct("<HHL")
_U32 = Struct("<L")
_LONG_VRS = frozenset(v.encode() for v in EXPLICIT_VR_LENGTH_32)
_VR_STR = {}  # b"CS" -> "CS", filled for the VRs pydicom knows
for _v in pydicom.valuerep.VR:
    _VR_STR[str(_v).encode()] = str(_v)
_UNDEFINED = 0xFFFFFFFF
_DEFAULT_VR_HOOK = hooks.raw_element_vr
_DEFAULT_VALUE_HOOK = hooks.raw_element_value
_CHARSET = 0x00080005
_ITEM_DELIM = 0xFFFEE00D


class _Unusual(Exception):
    """Bytes this reader leaves to pydicom.dcmread."""


def read_part10(data: bytes, *, stop_before_pixels: bool = False) -> FileDataset:
    """The dataset of one Part 10 file given as bytes; the same as ``pydicom.dcmread(io.BytesIO(data),
    stop_before_pixels=...)``.

    Raises what ``pydicom.dcmread`` raises for bytes that are not DICOM."""
    try:
        return _read(data, stop_before_pixels)
    except _Unusual:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)


_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # where dcmread's stop_before_pixels stops


def _read(data: bytes, stop_before_pixels: bool = False) -> FileDataset:
    if len(data) < 144 or data[128:132] != b"DICM":
        raise _Unusual
    meta_raw, pos = _elements(data, 132, implicit=False, meta=True)
    if not meta_raw or 0x00020010 not in meta_raw or pos >= len(data) or list(meta_raw) != sorted(meta_raw):
        raise _Unusual  # no meta or syntax, nothing after it, or meta out of order: dcmread's own rules
    file_meta = FileMetaDataset(meta_raw)
    file_meta.set_original_encoding(False, True, default_encoding)
    # The elements dcmread converts while reading the file meta (its first one, the transfer syntax).
    try:
        file_meta[next(iter(meta_raw))]
        ts = file_meta.TransferSyntaxUID
    except Exception:  # noqa: BLE001 - e.g. implicit VR file meta: dcmread's own handling
        raise _Unusual from None
    if not isinstance(ts, UID) or not ts.is_transfer_syntax:
        raise _Unusual  # private, unknown (e.g. newer than pydicom), multi-valued or empty: dcmread's rules
    if ts == ImplicitVRLittleEndian:
        implicit = True
    elif ts == ExplicitVRLittleEndian or (ts.is_encapsulated and ts.is_little_endian and not ts.is_implicit_VR
                                           and not ts.is_deflated):
        implicit = False
    else:  # big endian, deflate
        raise _Unusual
    raw, end = _elements(data, pos, implicit=implicit, meta=False, stop_before_pixels=stop_before_pixels)
    buffer = io.BytesIO(data)
    out = FileDataset(buffer, raw, data[:128], file_meta, implicit, True)
    out.set_original_encoding(implicit, True, out._character_set)  # as dcmread does
    buffer.seek(end)  # where dcmread leaves its file object
    return out


def _elements(data: bytes, pos: int, *, implicit: bool, meta: bool, stop_before_pixels: bool = False):
    """The raw elements from ``pos``: ``({tag: RawDataElement}, end)``. In ``meta`` mode, group 0002 only;
    with ``stop_before_pixels``, up to the first pixel data element."""
    out: dict = {}
    end = len(data)
    unpack_explicit = _EXPLICIT.unpack_from
    unpack_implicit = _IMPLICIT.unpack_from
    unpack32 = _U32.unpack_from
    long_vrs = _LONG_VRS
    vr_str = _VR_STR
    encoding = default_encoding
    base_tag, new_tuple, raw_cls = BaseTag, tuple.__new__, RawDataElement
    if pos + 6 <= end:  # pydicom's check that the data really is (im)plicit VR as declared
        looks_implicit = not (0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B)
        if looks_implicit != implicit:
            raise _Unusual
    while pos < end:
        if pos + 8 > end:
            raise _Unusual  # truncated: pydicom decides what that means
        start = pos
        if meta and data[pos] | data[pos + 1] << 8 != 2:
            return out, start  # the end of the file meta (the dataset may be implicit VR: not decoded here)
        if implicit:
            group, elem, length = unpack_implicit(data, pos)
            vr = None
            pos += 8
        else:
            group, elem, vr_b, length = unpack_explicit(data, pos)
            pos += 8
            vr = vr_str.get(vr_b)
            if vr is None:
                raise _Unusual  # an unknown or implicit-looking VR
            if vr_b in long_vrs:
                if pos + 4 > end:
                    raise _Unusual
                length = unpack32(data, pos)[0]
                pos += 4
        if not group and not meta:
            raise _Unusual  # command elements in a file: dcmread's own handling
        tag = group << 16 | elem
        if stop_before_pixels and tag in _PIXEL_TAGS:
            return out, start
        if tag == _ITEM_DELIM:
            raise _Unusual
        if length == _UNDEFINED:
            if meta:
                raise _Unusual
            pos, out[base_tag(tag)] = _undefined(data, tag, vr, pos, implicit, encoding)
            continue
        if pos + length > end:
            raise _Unusual  # truncated value
        value = data[pos:pos + length] if length else empty_value_for_VR(vr, raw=True)
        if tag == _CHARSET:
            encoding = convert_encodings(convert_string(value or b"", True))
        btag = base_tag(tag)
        # RawDataElement(...) without the namedtuple's Python-level __new__ (the same tuple)
        out[btag] = new_tuple(raw_cls, (btag, vr, length, value, pos, implicit, True, True, False))
        pos += length
    return out, pos


def _undefined(data: bytes, tag: int, vr: str | None, pos: int, implicit: bool, encoding):
    """An undefined-length element whose value starts at ``pos``, read by pydicom's own readers:
    ``(end, element)``."""
    fp = io.BytesIO(data)
    fp.seek(pos)
    if vr == "UN":
        raise _Unusual  # pydicom's settings decide between SQ and UN
    if vr is None:  # implicit VR: the dictionary's
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            raise _Unusual from None
    try:
        if vr == "SQ":
            seq = read_sequence(fp, implicit, True, _UNDEFINED, encoding)
            return fp.tell(), DataElement(BaseTag(tag), vr, seq, pos, is_undefined_length=True)
        value = read_undefined_length_value(fp, True, SequenceDelimiterTag, None)
    except EOFError:  # no delimiter before the end: dcmread decides what that gives
        raise _Unusual from None
    return fp.tell(), RawDataElement(BaseTag(tag), vr, _UNDEFINED, value, pos, implicit, True, True, False)


_US = Struct("<H")


def quick_value(ds: Dataset, tag: int, kind: str, default=None):
    """The value of a US, IS or CS element of a little-endian dataset, read from its raw bytes when it has not
    been converted yet (a tenth of the cost of ``ds.Rows`` and the like); otherwise, or when the raw element is
    not the plain single value expected, through pydicom. ``default`` when the element is absent; None when it
    is present but empty (as ``ds.get`` gives).

    Only single values: a multi-valued element is returned as pydicom converts it."""
    elem = ds._dict.get(tag)
    if elem is None:
        return default
    if isinstance(elem, RawDataElement) and elem.is_little_endian and elem.VR in (kind, None) \
            and elem.value is not None and b"\\" not in elem.value:
        raw = elem.value
        if not raw:
            return None
        if kind == "US":
            if len(raw) == 2:
                return _US.unpack(raw)[0]
        elif kind == "CS":
            text = convert_string(raw, True)  # pydicom's own
            return text if text else None
        else:
            text = raw.decode("ascii", "replace").strip(" \0")
            if not text:
                return None
            if text.lstrip("+-").isdigit():
                return int(text)
    value = ds[tag].value
    return None if value in (None, "", b"") else value


_QUICK_VRS = frozenset({"US", "UI", "CS", "IS", "OB", "OW"})


def convert_now(ds: Dataset, tags) -> None:
    """Convert these raw elements of ``ds`` now, with pydicom's own value conversion (``convert_value``) and the
    DataElement pydicom would make, but without the per-access hook machinery: the same elements, a quarter of
    the cost. Only plain little-endian elements of the VRs above; anything else is left to pydicom, as is
    everything when pydicom's conversion hooks or callbacks have been customised."""
    if config.data_element_callback or hooks.raw_element_kwargs \
            or hooks.raw_element_vr is not _DEFAULT_VR_HOOK or hooks.raw_element_value is not _DEFAULT_VALUE_HOOK:
        return
    d = ds._dict
    for tag in tags:
        raw = d.get(tag)
        if type(raw) is not RawDataElement or raw.VR not in _QUICK_VRS or not raw.is_little_endian \
                or raw.length == _UNDEFINED or tag >> 16 & 1:  # private elements: through pydicom (creator)
            continue
        try:
            value = convert_value(raw.VR, raw, None)
        except Exception:  # noqa: BLE001, S112 - left raw: pydicom reports it when the element is used
            continue
        d[tag] = DataElement(raw.tag, raw.VR, value, raw.value_tell, False, already_converted=True)


_PIXEL_KEYWORDS = [(kw, BaseTag(pydicom.datadict.tag_for_keyword(kw))) for kw in (
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "PixelRepresentation", "FloatPixelData", "DoubleFloatPixelData", "PixelData")]


def pixel_ids(ds: Dataset) -> dict[str, int]:
    """``pydicom.pixels.utils.get_image_pixel_ids(ds)``, computed through the element store instead of one
    attribute lookup (and, for absent elements, one caught AttributeError) per keyword. The same dict:
    ``ds[tag].value`` is the object ``getattr(ds, keyword)`` returns (tests compare both)."""
    d = ds._dict
    none = id(None)
    return {kw: id(ds[tag].value) if tag in d else none for kw, tag in _PIXEL_KEYWORDS}
