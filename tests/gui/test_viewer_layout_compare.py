"""Layouts (1x1, 1x2, 2x2) and prior comparison (linked scrolling by patient position, linked window/level)."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")]

from viewer.qt.compare import PriorComparison
from viewer.qt.layout import ViewportGrid
from viewer.qt.phantom import ct_phantom
from viewer.qt.testing import click
from viewer.qt.viewport import StackViewport


def test_layouts(qtbot):
    g = ViewportGrid()
    qtbot.addWidget(g)
    g.resize(800, 600)
    g.show()
    qtbot.waitExposed(g)
    assert len(g.viewports) == 1
    first = g.viewports[0]
    first.set_volume(ct_phantom(shape=(8, 32, 32)))
    assert len(g.set_layout("1x2")) == 2
    a, b = g.viewports
    qtbot.wait(50)
    assert a.geometry().top() == b.geometry().top() and a.geometry().left() < b.geometry().left()
    assert len(g.set_layout("2x2")) == 4
    qtbot.wait(50)
    tops = sorted({v.geometry().top() for v in g.viewports})
    assert len(tops) == 2
    click(g.viewports[3].canvas, (10, 10))
    assert g.active is g.viewports[3]
    g.set_layout("1x1")
    assert g.viewports == [first] and first.volume is not None   # kept with its state
    assert g.active is first
    with pytest.raises(ValueError):
        g.set_layout("3x3")


def test_prior_scrolls_with_current_by_patient_position_and_shares_window(qtbot):
    w = PriorComparison()
    qtbot.addWidget(w)
    w.resize(1000, 500)
    w.show()
    qtbot.waitExposed(w)
    current = ct_phantom(shape=(60, 64, 64), spacing=(1.0, 1.0, 1.0))
    prior = ct_phantom(shape=(24, 64, 64), spacing=(2.5, 1.0, 1.0))   # thicker slices, same centre
    for v in (current, prior):
        v.metadata["frame_of_reference_uid"] = "2.25.77"
    w.set_volumes(current, prior)
    for k in (3, 20, 31, 45, 58):
        w.current.set_slice(k)
        z_cur = w.current.slice_position()[2]
        z_pri = w.prior.slice_position()[2]
        assert abs(z_pri - z_cur) <= 2.5 / 2 + 1e-6, (k, z_cur, z_pri)
    # scrolling the prior drives the current too
    w.prior.set_slice(5)
    assert abs(w.current.slice_position()[2] - w.prior.slice_position()[2]) <= 0.5 + 1e-6
    w.current.set_window_level(80, 40)
    assert (w.prior.window, w.prior.level) == (80, 40)
    w.prior.set_window_level(1500, -600)
    assert (w.current.window, w.current.level) == (1500, -600)
    w.link_window_level(False)
    w.current.set_window_level(400, 40)
    assert (w.prior.window, w.prior.level) == (1500, -600)


def test_relinking_keeps_the_offset_the_reader_chose(qtbot):
    w = PriorComparison()
    qtbot.addWidget(w)
    w.resize(800, 400)
    w.show()
    qtbot.waitExposed(w)
    current = ct_phantom(shape=(40, 32, 32), spacing=(2.0, 1.0, 1.0))
    prior = ct_phantom(shape=(40, 32, 32), spacing=(2.0, 1.0, 1.0))
    prior.origin = prior.origin + np.array([0, 0, 30.0])     # other scanner: table 30 mm elsewhere
    w.set_volumes(current, prior)
    w.link_scrolling(False)
    w.current.set_slice(10)
    w.prior.set_slice(14)                                    # the reader aligns the anatomy by eye
    w.link_scrolling(True)
    w.current.set_slice(20)
    assert w.prior.k == 24
    assert w.prior.slice_position()[2] - w.current.slice_position()[2] == pytest.approx(8.0 + 30.0)


def _grid(qtbot):
    g = ViewportGrid()
    qtbot.addWidget(g)
    g.resize(1000, 500)
    g.show()
    qtbot.waitExposed(g)
    return g


def test_ct_head_protocol_hangs_brain_and_bone_windows_scrolling_together(qtbot):
    from viewer.hanging import SeriesInfo, StudyInfo, choose_protocol

    vol = ct_phantom(shape=(30, 64, 64))
    study = StudyInfo(study_uid="2.25.1", modalities=["CT"], body_part="HEAD", description="CT HEAD WO",
                      series=[SeriesInfo(series_uid="2.25.1000", modality="CT", plane="axial", n_images=30)])
    plan = choose_protocol(study)
    g = _grid(qtbot)
    brain, bone = g.apply_plan(plan, {"2.25.1000": vol})
    assert (brain.window, brain.level) == (80.0, 40.0) and (bone.window, bone.level) == (1800.0, 400.0)
    assert "Brain" in brain.corner_texts()[3] and "Bone" in bone.corner_texts()[3]
    brain.set_slice(7)
    assert bone.k == 7                                     # linked scrolling
    brain.set_window_level(100, 30)
    assert (bone.window, bone.level) == (1800.0, 400.0)    # the protocol does not link windows here


def test_ct_body_protocol_puts_a_coronal_reformat_beside_the_axial(qtbot):
    from viewer.hanging import SeriesInfo, StudyInfo, choose_protocol
    from viewer.qt.mpr import MprViewport

    vol = ct_phantom(shape=(30, 64, 64))
    study = StudyInfo(study_uid="2.25.2", modalities=["CT"], body_part="ABDOMEN", description="CT ABDOMEN",
                      series=[SeriesInfo(series_uid="2.25.1000", modality="CT", plane="axial", n_images=30)])
    g = _grid(qtbot)
    axial, coronal = g.apply_plan(choose_protocol(study), {"2.25.1000": vol})
    assert isinstance(axial, StackViewport) and isinstance(coronal, MprViewport)
    assert coronal.orientation == "coronal" and coronal.letters["top"] == "S"
    axial.set_window_level(350, 50)
    assert (coronal.window, coronal.level) == (350, 50)   # windows linked by this protocol
    # back to a plain layout: the cells are still usable
    assert len(g.set_layout("2x2")) == 4


def test_prior_protocol_links_current_and_prior(qtbot):
    from viewer.hanging import SeriesInfo, StudyInfo, choose_protocol

    cur = ct_phantom(shape=(40, 64, 64), spacing=(1.0, 1.0, 1.0))
    pri = ct_phantom(shape=(20, 64, 64), spacing=(2.0, 1.0, 1.0))
    pri.metadata["series_uid"] = "2.25.2000"
    s_cur = SeriesInfo(series_uid="2.25.1000", modality="CT", plane="axial", n_images=40)
    s_pri = SeriesInfo(series_uid="2.25.2000", modality="CT", plane="axial", n_images=20)
    study = StudyInfo(study_uid="2.25.3", modalities=["CT"], description="CT", series=[s_cur])
    prior = StudyInfo(study_uid="2.25.4", modalities=["CT"], description="CT", series=[s_pri])
    plan = choose_protocol(study, [prior])
    g = _grid(qtbot)
    left, right = g.apply_plan(plan, {"2.25.1000": cur, "2.25.2000": pri})
    assert left.volume is cur and right.volume is pri
    left.set_slice(30)
    assert abs(right.slice_position()[2] - left.slice_position()[2]) <= 1.0 + 1e-6
    right.set_window_level(1500, -600)
    assert (left.window, left.level) == (1500, -600)
