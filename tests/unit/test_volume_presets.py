"""Window presets (viewer.presets): built-in CT windows, header windows and VOI LUTs, the VOI maths."""
from __future__ import annotations

import numpy as np
import pytest

from viewer.presets import (
    WindowPreset,
    apply_window,
    auto_preset,
    builtin_preset,
    builtin_presets,
    default_preset,
    header_presets,
    presets_for,
)
from viewer.synthetic import axial_positions, make_slice_series
from viewer.volume import load_series


def test_builtin_ct_presets():
    names = [p.name for p in builtin_presets()]
    assert names == ["Brain", "Subdural", "Stroke", "Bone", "Lung", "Abdomen", "Liver", "Mediastinum"]
    brain = builtin_preset("ct_brain")
    assert (brain.center, brain.width, brain.low, brain.high) == (40, 80, 0, 80)
    assert builtin_preset("Lung").center == -600
    assert len({p.key for p in builtin_presets()}) == 8
    with pytest.raises(KeyError):
        builtin_preset("nope")


def test_linear_window_follows_ps3_3_formula():
    p = WindowPreset("t", center=40, width=80)
    # PS3.3 C.11.2.1.2.1: x <= c - 0.5 - (w-1)/2 -> 0; x > c - 0.5 + (w-1)/2 -> 1
    out = apply_window(np.array([-100, 0, 40, 79.5, 200]), p)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5 + 0.5 / 79, 1.0, 1.0], atol=1e-12)
    exact = apply_window(np.array([0, 40, 80]), WindowPreset("e", 40, 80, function="LINEAR_EXACT"))
    np.testing.assert_allclose(exact, [0.0, 0.5, 1.0])
    sig = apply_window(np.array([40.0]), WindowPreset("s", 40, 80, function="SIGMOID"))
    np.testing.assert_allclose(sig, [0.5])


def test_header_presets_and_default(real_data):
    vol = load_series(real_data / "17_ct_single_slices_misc" / "bad_sequence.dcm")
    header = vol.metadata["window_presets"]
    assert [(p.name, p.center, p.width, p.source) for p in header] == [
        ("WINDOW1", 40, 350, "header"), ("WINDOW2", 450, 1500, "header")]
    offered = presets_for(vol)
    assert offered[:2] == header and len(offered) == 10            # CT: header first, then the 8 built-ins
    assert default_preset(vol) == header[0]


def test_ct_without_header_window_opens_with_abdomen_and_mr_with_auto():
    ct = load_series(make_slice_series(axial_positions(2)))
    assert default_preset(ct).id == "ct_abdomen"
    mr = load_series(make_slice_series(axial_positions(2), modality="MR", intercept=0.0,
                                       values=lambda n, jj, ii: ii * 10))
    p = default_preset(mr)
    assert p.source == "auto" and 0 <= p.low < p.high <= 150
    assert presets_for(mr) == []


def test_header_presets_skip_invalid_widths():
    from pydicom.dataset import Dataset
    ds = Dataset()
    ds.WindowCenter = ["40", "50"]
    ds.WindowWidth = ["0", "100"]
    assert [(p.center, p.width) for p in header_presets(ds)] == [(50, 100)]


def test_auto_preset_covers_the_bulk_of_values():
    values = np.concatenate([np.zeros(300), np.linspace(100, 200, 100000), np.full(10, 5000)])
    p = auto_preset(values)
    assert p.low == pytest.approx(100, abs=2) and p.high == pytest.approx(200, abs=2)
