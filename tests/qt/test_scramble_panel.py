"""The Scramble panel: the arrays behind both images equal attnviz.analysis for the state, dragging one
patch onto another swaps them and Undo takes it back, the switch and the numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QWidget

from attnviz.analysis.query import query_attention
from attnviz.analysis.scramble import (apply_to_image, equivariance_check, inverse_permutation, random_permutation,
                                       swap_permutation, unpermute_attention)
from attnviz.session import Patch, Prefix

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "models" / "faces-vit.safetensors")
NOPE = str(ROOT / "models" / "faces-vit-nope.safetensors")
SWIN = str(ROOT / "models" / "faces-swin.safetensors")
FACE = str(ROOT / "assets" / "images" / "face-01.png")


@pytest.fixture
def panel(standalone_panel):
    from attnviz.qt.panels.scramble_panel import ScramblePanel

    return standalone_panel(ScramblePanel, MODEL, FACE)


def _drag(qtbot, view, a, b, patch=8):
    """Press on patch a of the view, move, release on patch b (input-pixel centres)."""
    def at(cell):
        scene = view.vb.mapViewToScene(QPointF((cell[1] + 0.5) * patch, (cell[0] + 0.5) * patch))
        return view.mapFromScene(scene)
    start, end = at(a), at(b)
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view.viewport(), pos=(start + end) / 2)
    qtbot.mouseMove(view.viewport(), pos=end)
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=end)


def test_both_sides_are_the_analysis_maps_of_the_same_query(panel):
    s = panel.session
    assert s.scramble.kind == "random"  # opening the panel scrambles at once
    s.view.update(block=2, head=3, query=Patch(4, 1))
    panel.flush()
    perm = random_permutation((8, 8), s.scramble.seed)
    pair = s.scrambled
    assert torch.equal(pair.permutation, perm)
    np.testing.assert_array_equal(panel.view_a.image.image, s.doc.input_image)
    np.testing.assert_array_equal(panel.view_b.image.image, apply_to_image(s.doc.input_image, perm, 8))
    a = query_attention(s.capture.blocks[2].attn[0], 1 + 4 * 8 + 1, 1, (8, 8))[3]
    np.testing.assert_allclose(panel.map_a.values, a, atol=1e-12)
    np.testing.assert_allclose(panel.view_a.values, a, atol=1e-12)
    inv = inverse_permutation(perm)
    moved = int(inv[4 * 8 + 1])  # where the query's patch went
    b = query_attention(pair.capture.blocks[2].attn[0], 1 + moved, 1, (8, 8))[3]
    np.testing.assert_allclose(panel.view_b.values, b, atol=1e-12)
    assert panel.map_b.query_cell == divmod(moved, 8)
    # in original positions: the query row of Pᵀ·A(Px)·P, over the original image
    panel.original.setChecked(True)
    panel.flush()
    back = unpermute_attention(pair.capture.blocks[2].attn[0], perm, 1)
    np.testing.assert_allclose(panel.view_b.values, query_attention(back, 1 + 4 * 8 + 1, 1, (8, 8))[3], atol=1e-12)
    np.testing.assert_array_equal(panel.view_b.image.image, s.doc.input_image)
    assert panel.map_b.query_cell == (4, 1)
    # both sides share one colour range
    assert panel.view_a.levels == panel.view_b.levels
    # the predictions are the two captures' softmax
    top = float(pair.capture.logits[0].softmax(-1).max()) * 100
    assert f"{top:.1f} %" in panel.pred_b.text()


def test_drag_swaps_two_patches_and_undo_restores(panel, qtbot):
    s = panel.session
    before = s.scramble.permutation().clone()
    _drag(qtbot, panel.view_b, (0, 0), (5, 6))
    assert s.scramble.swaps == [((0, 0), (5, 6))]
    expect = before[swap_permutation((8, 8), (0, 0), (5, 6))]
    assert torch.equal(s.scrambled.permutation, expect)
    np.testing.assert_array_equal(panel.view_b.image.image, apply_to_image(s.doc.input_image, expect, 8))
    assert panel.undo.isEnabled()
    qtbot.mouseClick(panel.undo, Qt.MouseButton.LeftButton)
    assert s.scramble.swaps == [] and torch.equal(s.scrambled.permutation, before)
    assert not panel.undo.isEnabled()
    # a plain click on the right picks the original patch shown there as the query
    qtbot.mouseClick(panel.view_b.viewport(), Qt.MouseButton.LeftButton,
                     pos=panel.view_b.mapFromScene(panel.view_b.vb.mapViewToScene(QPointF(2 * 8 + 4, 3 * 8 + 4))))
    k = int(before[3 * 8 + 2])
    assert s.view.query == Patch(k // 8, k % 8)


def test_kind_and_seed_controls_edit_the_state(panel):
    s = panel.session
    panel.seed.setValue(9)
    assert s.scramble.seed == 9 and torch.equal(s.scrambled.permutation, random_permutation((8, 8), 9))
    panel.next_seed.click()
    assert s.scramble.seed == 10
    panel.kind.setCurrentIndex(panel.kind.findData("reverse"))
    assert torch.equal(s.scrambled.permutation, torch.arange(63, -1, -1))
    assert not panel.seed.isEnabled()
    panel.kind.setCurrentIndex(panel.kind.findData("window"))
    assert panel.window.isVisibleTo(panel) and panel.window.value() == 4


def test_switching_embeddings_off_measures_equivariance_on_faces_vit_nope(panel):
    s = panel.session
    s.open_model(NOPE)
    panel.flush()
    assert not panel.pos_embed.isEnabled()  # nothing to switch off: this ViT has no embedding
    pair = s.scrambled
    assert pair.report.max_attn_diff < 1e-5 and pair.report.logits_max_abs_diff < 1e-5
    assert f"{pair.report.max_attn_diff:.3g}" in panel.facts.text() and "float precision" in panel.facts.text()
    ref = equivariance_check(s.model.net, s.doc.x, pair.permutation, use_pos_embed=False)
    assert ref.max_attn_diff < 1e-5


def test_the_switch_reruns_faces_vit_without_embeddings(panel):
    s = panel.session
    assert panel.pos_embed.isEnabled() and panel.pos_embed.isChecked()
    with_pe = s.scrambled.report
    assert with_pe.pos_embed_used and with_pe.max_attn_diff > 1e-2 and "With position embeddings" in panel.facts.text()
    panel.pos_embed.setChecked(False)
    panel.flush()
    assert not s.doc.use_pos_embed
    torch.testing.assert_close(s.capture.logits, s.model.capture(s.doc.x, use_pos_embed=False).logits)
    r = s.scrambled.report
    assert not r.pos_embed_used and r.max_attn_diff < 1e-5 and r.logits_max_abs_diff < 1e-5
    assert "Without position embeddings" in panel.facts.text()


def test_swin_disables_the_switch_and_keeps_drawing(panel):
    s = panel.session
    s.open_model(SWIN)
    s.view.update(block=0, head=1, query=Patch(5, 4))
    panel.flush()
    assert not panel.pos_embed.isEnabled() and s.scrambled.report is None
    assert "No equivariance check for Swin" in panel.facts.text()
    assert panel.view_b.values is not None and panel.map_b.window is not None
    s.view.query = Prefix(0)  # Swin has none: the session keeps a patch
    panel.flush()
    assert isinstance(s.view.query, Patch)


def test_switching_the_overlay_mode_repaints_both_sides(panel):
    """'overlay' is a field the panel draws with: changing it recolours both maps (attention as opacity),
    the maps themselves staying the analysis maps of the state."""
    from attnviz.qt.widgets.colorize import colorize
    from attnviz.qt.widgets.overlay import shared_lookup_table
    from attnviz.session.display import upsample

    s = panel.session
    s.view.update(block=1, head=0, query=Patch(2, 3))
    panel.flush()
    before = [v.heat.image.copy() for v in (panel.view_a, panel.view_b)]
    assert s.view.overlay == "colour"
    s.view.overlay = "alpha"
    panel.flush()  # repaints only when the change made the panel dirty
    a = query_attention(s.capture.blocks[1].attn[0], 1 + 2 * 8 + 3, 1, (8, 8))[0]
    np.testing.assert_allclose(panel.view_a.values, a, atol=1e-12)
    for view, old in zip((panel.view_a, panel.view_b), before):
        expect = colorize(upsample(view.values, 1, False), view.levels, shared_lookup_table(s.view.colormap, True))
        np.testing.assert_array_equal(view.heat.image, expect)  # (8, 8, 4): alpha rises with attention
        assert not np.array_equal(view.heat.image, old)
    s.view.overlay = "colour"
    panel.flush()
    np.testing.assert_array_equal(panel.view_b.heat.image, before[1])


def test_predictions_of_both_sides_are_top_classes_of_their_captures(panel):
    from attnviz.analysis.predictions import top_classes

    s = panel.session
    names = s.model.class_names
    assert panel.pred_a.rows == top_classes(s.capture.logits, names, 3)
    assert panel.pred_b.rows == top_classes(s.scrambled.capture.logits, names, 3)
    name, p = panel.pred_b.rows[0][1:]
    assert f"<b>{name}</b> {p * 100:.1f} %" in panel.pred_b.text()


def test_smooth_maps_still_cover_the_whole_image(panel):
    """Smoothing upsamples the 8×8 map to 64×64 values over the same 64×64 input pixels: both heat images
    must stay over the whole input, not be stretched by the blocky map's 8-px cells."""
    s = panel.session
    panel.flush()
    for view in (panel.view_a, panel.view_b):
        r = view.heat.mapRectToParent(view.heat.boundingRect())
        assert (r.x(), r.y(), r.width(), r.height()) == (0.0, 0.0, 64.0, 64.0)
    s.view.smooth = True
    panel.flush()
    for view in (panel.view_a, panel.view_b):
        assert view.heat.image.shape[:2] == (64, 64)  # 8×8 tokens upsampled by their 8-px side
        r = view.heat.mapRectToParent(view.heat.boundingRect())
        assert (r.x(), r.y(), r.width(), r.height()) == (0.0, 0.0, 64.0, 64.0)


def test_prediction_lines_escape_class_names_and_say_when_nothing_is_predicted():
    from attnviz.qt.widgets.predictions import NO_CLASSIFIER, prediction_html, prediction_text

    rows = [(2, "<b>cat</b> & co", 0.875), (0, "dog", 0.125)]
    assert prediction_html(rows) == "Predicted <b>&lt;b&gt;cat&lt;/b&gt; &amp; co</b> 87.5 % · dog 12.5 %"
    assert prediction_text(rows) == "Predicted <b>cat</b> & co 87.5 % · dog 12.5 %"
    assert prediction_html([]) == prediction_text([]) == NO_CLASSIFIER


def test_swin_gets_its_own_lesson_not_the_faces_vit_one(panel):
    """For Swin the lesson paragraph says what applies: no absolute embedding (so no switch), a relative
    bias inside each window, and what a shuffle within vs across its own windows changes."""
    from attnviz.qt.panels.scramble_panel import LESSON

    s = panel.session
    assert panel.lesson.text() == LESSON  # faces-vit: the demo pair's lesson
    s.open_model(SWIN)
    panel.flush()
    text = panel.lesson.text()
    side = s.capture.blocks[0].window_size  # the window Swin's first block used, in patches
    assert side == s.scramble.window_side == 4
    assert "faces-vit" not in text and "no absolute position embedding" in text
    assert "relative position bias" in text and "switch does not apply" in text
    assert f"{side}×{side}-patch windows" in text and "<b>within</b>" in text and "<b>across</b>" in text
    assert not panel.pos_embed.isEnabled()
    s.open_model(NOPE)
    panel.flush()
    assert panel.lesson.text() == LESSON


def test_panel_asks_for_little_width_and_its_controls_wrap(panel, qtbot):
    """Its minimum width is small (the controls wrap, the long labels word-wrap), so docking it never
    widens the window; in a narrow dock every control is still whole and inside the panel."""
    for model in (MODEL, SWIN):
        panel.session.open_model(model)
        panel.session.scramble.set_kind("window")  # the widest control row: the window box shows too
        panel.flush()
        assert panel.minimumSizeHint().width() < 520, panel.minimumSizeHint()
    wide, narrow = panel.controls.heightForWidth(1400), panel.controls.heightForWidth(420)
    assert narrow > wide  # two or more rows when narrow, one when wide
    panel.resize(420, 600)
    qtbot.waitUntil(lambda: panel.width() == 420)
    box = panel.controls.rect()
    shown = [w for w in panel.controls.findChildren(QWidget) if w.isVisibleTo(panel.controls)
             and w.parent() is panel.controls]
    assert len(shown) >= 8
    for w in shown:
        assert box.contains(w.geometry()), (w, w.geometry(), box)
    rects = [w.geometry() for w in shown]
    assert not any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1:])


def test_opening_its_tab_does_not_widen_the_window(window, qtbot):
    from PySide6.QtWidgets import QApplication

    s = window.session
    s.open_model(MODEL)
    s.open_image(FACE)
    window.flush()
    before = window.width()
    window.docks["scramble"].show()
    window.docks["scramble"].raise_()
    panel = window.panel("scramble")
    for _ in range(5):
        QApplication.processEvents()
        window.flush()
    assert panel.isVisible() and panel.map_b is not None  # drawn, with its long labels filled in
    assert window.width() == before
    assert panel.minimumSizeHint().width() < 520
