"""Window presets: the built-in CT windows (resources/window_presets.json), the windows and VOI LUTs a header
carries (XR, MG, MR ...), and the grey-scale maths that applies them (PS3.3 C.11.2 VOI LUT Module).

No Qt, no VTK. Window centre/width are in modality units (after rescale / Modality LUT; HU for CT).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources as _res

import numpy as np


@dataclasses.dataclass(frozen=True)
class WindowPreset:
    name: str
    center: float
    width: float
    function: str = "LINEAR"          # LINEAR | LINEAR_EXACT | SIGMOID (0028,1056)
    source: str = "builtin"           # builtin | header | auto
    key: str | None = None            # keyboard shortcut for built-ins
    id: str | None = None

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0


@dataclasses.dataclass(frozen=True)
class VoiLut:
    """A VOI LUT from the header's VOI LUT Sequence (0028,3010): output = data[clip(value - first_mapped)]."""
    explanation: str
    first_mapped: int
    bits: int
    data: np.ndarray = dataclasses.field(compare=False, repr=False)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map modality values through the LUT; returns floats scaled to 0..1."""
        idx = np.clip(np.asarray(values).astype(np.int64) - self.first_mapped, 0, len(self.data) - 1)
        top = float((1 << self.bits) - 1) if self.bits else float(self.data.max() or 1)
        return self.data[idx].astype(np.float64) / top


@lru_cache(maxsize=1)
def builtin_presets() -> tuple[WindowPreset, ...]:
    """The CT presets shipped in resources/window_presets.json (brain, subdural, stroke, bone, lung, abdomen,
    liver, mediastinum)."""
    text = _res.files("resources").joinpath("window_presets.json").read_text(encoding="utf-8")
    out = []
    for p in json.loads(text)["presets"]:
        out.append(WindowPreset(name=p["name"], center=float(p["center"]), width=float(p["width"]),
                                source="builtin", key=p.get("key"), id=p["id"]))
    return tuple(out)


def builtin_preset(preset_id_or_name: str) -> WindowPreset:
    want = preset_id_or_name.lower()
    for p in builtin_presets():
        if want in (p.id, p.name.lower()):
            return p
    raise KeyError(f"no built-in window preset called {preset_id_or_name!r}")


def _multi(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def header_presets(item) -> list[WindowPreset]:
    """Window presets from WindowCenter/WindowWidth (0028,1050/1051) of a pydicom Dataset or a functional-group
    item (FrameVOILUTSequence item); names from WindowCenterWidthExplanation (0028,1055)."""
    centers = _multi(item.get("WindowCenter"))
    widths = _multi(item.get("WindowWidth"))
    names = _multi(item.get("WindowCenterWidthExplanation"))
    function = str(item.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    out = []
    for n, (c, w) in enumerate(zip(centers, widths)):
        try:
            c, w = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if w <= 0:
            continue
        name = str(names[n]) if n < len(names) and str(names[n]).strip() else f"Header {n + 1}"
        out.append(WindowPreset(name=name, center=c, width=w, function=function, source="header"))
    return out


def header_voi_luts(item) -> list[VoiLut]:
    """VOI LUTs from the VOI LUT Sequence (0028,3010)."""
    out = []
    for n, lut in enumerate(item.get("VOILUTSequence", []) or []):
        desc = [int(v) for v in lut.LUTDescriptor]
        entries = desc[0] or 65536
        first = desc[1]
        bits = desc[2]
        raw = lut.LUTData
        if isinstance(raw, bytes):
            dtype = np.uint8 if bits <= 8 and len(raw) == entries else np.uint16
            data = np.frombuffer(raw, dtype=dtype)
        else:
            data = np.asarray(_multi(raw), dtype=np.uint16)
        if first >= 32768 and int(item.get("PixelRepresentation", 0) or 0) == 1:
            first -= 65536                     # (0028,3002) value 2 is SS for signed pixel data
        out.append(VoiLut(explanation=str(lut.get("LUTExplanation", f"VOI LUT {n + 1}")), first_mapped=first,
                          bits=bits, data=data[:entries]))
    return out


def auto_preset(voxels: np.ndarray, *, sample: int = 200_000) -> WindowPreset:
    """A window covering the 0.5-99.5 percentile of the values (for series without a header window)."""
    flat = np.asarray(voxels).reshape(-1)
    if flat.size > sample:
        flat = flat[:: max(1, flat.size // sample)]
    lo, hi = np.percentile(flat, [0.5, 99.5]) if flat.size else (0.0, 1.0)
    width = max(float(hi - lo), 1.0)
    return WindowPreset(name="Auto", center=float(lo) + width / 2.0, width=width, source="auto")


def presets_for(volume) -> list[WindowPreset]:
    """Presets to offer for a Volume: header windows first (XR/MG/MR/...), then the built-in CT presets for CT."""
    md = getattr(volume, "metadata", {}) or {}
    out = list(md.get("window_presets") or [])
    if str(md.get("modality", "")).upper() == "CT":
        out += list(builtin_presets())
    return out


def default_preset(volume) -> WindowPreset:
    """The window a series opens with: the header's first window, else CT abdomen for CT, else auto."""
    md = getattr(volume, "metadata", {}) or {}
    header = md.get("window_presets") or []
    if header:
        return header[0]
    if str(md.get("modality", "")).upper() == "CT":
        return builtin_preset("ct_abdomen")
    return auto_preset(volume.voxels)


def apply_window(values: np.ndarray, preset: WindowPreset) -> np.ndarray:
    """Grey level 0..1 for modality values (PS3.3 C.11.2.1.2 LINEAR / LINEAR_EXACT / SIGMOID)."""
    x = np.asarray(values, dtype=np.float64)
    c, w = preset.center, preset.width
    fn = preset.function.upper()
    if fn == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if fn == "LINEAR_EXACT":
        return np.clip((x - (c - w / 2.0)) / w, 0.0, 1.0)
    if w <= 1:
        return (x > c - 0.5).astype(np.float64)
    return np.clip(((x - (c - 0.5)) / (w - 1.0)) + 0.5, 0.0, 1.0)
