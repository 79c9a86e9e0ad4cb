"""The attention-anatomy panel: the arrays behind its maps equal attnviz.analysis for the view state,
its probabilities equal the captured attention, and the Swin bias/mask map is what the network added."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from PySide6.QtCore import QPointF, Qt

from attnviz.analysis.anatomy import swin_anatomy, vit_anatomy
from attnviz.analysis.windows import locate_token
from attnviz.qt.panels.anatomy_panel import AnatomyPanel
from attnviz.qt.widgets.colorize import colorize
from attnviz.qt.widgets.overlay import lookup_table
from attnviz.session import Session, Worker
from attnviz.session.query import Patch, Prefix, stage_token, vit_token
from tests.qt.panel_checks import assert_readable_bar

IMAGE = "assets/images/face-01.png"


@pytest.fixture
def open_panel(qtbot):
    pg.setConfigOptions(imageAxisOrder="row-major")

    def make(model: str):
        s = Session(Worker(synchronous=True), device="cpu")
        p = AnatomyPanel(s)
        qtbot.addWidget(p)
        p.resize(1300, 420)
        p.show()
        s.open_model(model)
        s.open_image(IMAGE)
        p.flush()
        return s, p

    yield make


def _with_qkv(s: Session, block: int):
    """The block with its q, k, v from a full capture of the session's input (not the product's path)."""
    with torch.no_grad():
        return s.doc.model.net.capture(s.products.context.x, qkv_block=block).blocks[block]


def _independent_vit(s: Session, block: int, head: int, query):
    ctx = s.products.context
    blk = _with_qkv(s, block)
    return vit_anatomy(blk, head, vit_token(query, ctx.geometry), ctx.geometry.num_prefix_tokens)


def test_vit_maps_equal_analysis_and_the_captured_attention(open_panel):
    s, p = open_panel("models/faces-vit.safetensors")
    s.view.update(block=2, head=1, query=Patch(3, 4))
    p.flush()
    a = _independent_vit(s, 2, 1, Patch(3, 4))
    assert set(p.arrays) == {"scores", "probs", "contrib"}
    np.testing.assert_allclose(p.arrays["scores"], a.key_map(a.scores), atol=1e-9)
    np.testing.assert_allclose(p.arrays["probs"], a.key_map(a.probs), atol=1e-9)
    np.testing.assert_allclose(p.arrays["contrib"], a.key_map(a.contrib), atol=1e-9)
    np.testing.assert_allclose(p.prefix_arrays["probs"], a.prefix_values(a.probs), atol=1e-9)
    # stage 2 reproduces what the session captured: block 2, head 1, the query's row
    token = vit_token(Patch(3, 4), s.products.context.geometry)
    row = s.capture.blocks[2].attn[0, 1, token].double().numpy()  # (N,)
    np.testing.assert_allclose(p.arrays["probs"].ravel(), row[1:], atol=1e-6)
    # what each image shows is that array
    lut = lookup_table(s.view.colormap, False)
    for st in p.stages:
        np.testing.assert_array_equal(st.shown, p.arrays[st.key])
        np.testing.assert_array_equal(st.img.image, colorize(st.shown, st.levels, lut))  # (h, w, 4) as drawn
        assert st.bar.levels == tuple(float(x) for x in st.levels)
    assert "q·k/√d" in p.formula.text() and "d = 16" in p.formula.text()
    top = a.top_key()
    assert f"prob {a.probs[top]:.4f}" in p.key_text.text()


def test_vit_prefix_query_and_the_block_follow_the_view(open_panel):
    s, p = open_panel("models/faces-vit.safetensors")
    s.view.update(block=0, head=3, query=Prefix(0))
    p.flush()
    a = _independent_vit(s, 0, 3, Prefix(0))
    np.testing.assert_allclose(p.arrays["probs"], a.key_map(a.probs), atol=1e-9)
    assert "cls: " in p.stages[1].prefix.text
    assert p.stages[0].query_box.isVisible() is False  # the cls query is no cell of the map


def test_a_fusion_is_not_a_head_the_panel_says_so_and_offers_heads(open_panel):
    s, p = open_panel("models/faces-vit.safetensors")
    s.view.update(block=1, head="max", query=Patch(2, 2))
    p.flush()
    assert p.note.isVisible() and "not one head" in p.note.text()
    assert p.result.anatomy.head == 0
    a = _independent_vit(s, 1, 0, Patch(2, 2))
    np.testing.assert_allclose(p.arrays["contrib"], a.key_map(a.contrib), atol=1e-9)
    assert p.head_combo.itemText(0) == "pick a head"
    p.head_combo.setCurrentIndex(3)
    p.head_combo.activated.emit(3)  # what a user's pick sends
    assert s.view.head == 2
    p.flush()
    assert not p.note.isVisible() and p.result.anatomy.head == 2


def _cell_scene_pos(p: AnatomyPanel, stage: int, row: int, col: int):
    return p.stages[stage].vb.mapViewToScene(QPointF(col + 0.5, row + 0.5))


def test_hover_names_the_key_and_click_selects_it_as_query(open_panel, qtbot):
    s, p = open_panel("models/faces-vit.safetensors")
    s.view.update(block=3, head=0, query=Patch(4, 4))
    p.flush()
    a = p.result.anatomy
    p._mouse_moved(_cell_scene_pos(p, 1, 1, 6))
    key = a.key_of_cell(1, 6)
    assert p.hover_key == key
    assert p.key_text.text().startswith("hovered — patch (1, 6)") and f"{a.probs[key]:.4f}" in p.key_text.text()
    pos = p.graphics.mapFromScene(_cell_scene_pos(p, 2, 5, 1))
    qtbot.mouseClick(p.graphics.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert s.view.query == Patch(5, 1)


def test_swin_v2_shifted_block_bias_and_mask_are_what_the_network_added(open_panel):
    s, p = open_panel("models/faces-swinv2.safetensors")
    blocks = s.capture.blocks
    shifted = next(i for i, b in enumerate(blocks) if b.shift_size)
    q = Patch(7, 15)  # on the right edge: its shifted window wraps around, some keys are masked
    s.view.update(block=shifted, head=0, query=q)
    p.flush()
    b = blocks[shifted]
    cell = stage_token(q, b)
    w, slot = locate_token(b.geometry, *cell)
    a = swin_anatomy(_with_qkv(s, shifted), 0, cell)
    assert set(p.arrays) == {"scores", "bias", "probs", "contrib"}
    M = b.window_size
    applied = (b.bias[0, slot] + b.attn_mask[w, slot]).double().numpy().reshape(M, M)  # from the capture
    np.testing.assert_allclose(p.arrays["bias"], applied, atol=1e-6)
    assert (applied < -50).any()  # this window masks some keys
    # masked keys are drawn dark (NaN) and marked ×; the rest of the image is the array
    shown = p.stages[1].shown
    assert (p.stages[1].img.image[np.isnan(shown)][:, 3] == 0).all()  # masked: transparent
    masked = applied < -50
    assert np.isnan(shown[masked]).all()
    np.testing.assert_array_equal(shown[~masked], p.arrays["bias"][~masked])
    np.testing.assert_allclose(p.arrays["scores"], a.key_map(a.scores), atol=1e-9)
    np.testing.assert_allclose(p.arrays["probs"], b.attn[0, w, 0, slot].double().numpy().reshape(M, M), atol=1e-6)
    np.testing.assert_allclose(p.arrays["contrib"], a.key_map(a.contrib), atol=1e-9)
    assert "cos(q, k)·τ" in p.formula.text() and "mask" in p.formula.text()
    assert f"window {w}" in p.caption.text()


def test_swin_v1_panel_and_click_on_a_merged_token(open_panel, qtbot):
    s, p = open_panel("models/faces-swin.safetensors")
    blocks = s.capture.blocks
    late = next(i for i, b in enumerate(blocks) if b.stage == 1)
    s.view.update(block=late, head=1, query=Patch(6, 6))
    p.flush()
    b = blocks[late]
    cell = stage_token(Patch(6, 6), b)
    a = swin_anatomy(_with_qkv(s, late), 1, cell)
    np.testing.assert_allclose(p.arrays["scores"], a.key_map(a.scores), atol=1e-9)
    assert "q·k/√d" in p.formula.text()
    # clicking a key selects the first input patch of that stage-1 token
    t = int(a.key_tokens[a.key_of_cell(0, 0)])
    y, x = divmod(t, b.grid_size[1])
    pos = p.graphics.mapFromScene(_cell_scene_pos(p, 2, 0, 0))
    qtbot.mouseClick(p.graphics.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert s.view.query == Patch(2 * y, 2 * x)


def test_panel_docked_in_the_window_draws_without_errors(window):
    """The window's lesson dock 'anatomy' builds this panel when shown; stepping blocks redraws it."""
    window.session.open_model("models/faces-vit.safetensors")
    window.session.open_image(IMAGE)
    window.docks["anatomy"].raise_()
    panel = window.panel("anatomy")
    assert isinstance(panel, AnatomyPanel)
    for block in range(4):
        window.session.view.block = block
        panel.flush()
        assert panel.result is not None and panel.result.anatomy.block == block
        assert panel.result.anatomy.max_prob_error < 1e-5


def test_colour_bars_span_each_map_and_write_numbers_for_a_tiny_range(open_panel, monkeypatch):
    """Each stage's bar is attnviz's ColorBar over that stage's levels; a contribution map of a few
    ten-thousandths (pyqtgraph's bar wrote '0' alone there) still gets distinct numbers over its range."""
    import dataclasses

    from attnviz.qt.panels.anatomy_panel import PRODUCT
    from attnviz.qt.widgets.colorbar import ColorBar
    from attnviz.session.display import levels

    s, p = open_panel("models/faces-vit.safetensors")
    s.view.update(block=1, head=2, query=Patch(3, 3))
    p.flush()
    a = p.result.anatomy
    for st in p.stages:
        assert isinstance(st.bar, ColorBar) and st.bar.colormap == s.view.colormap
    assert p.stages[1].bar.levels == levels(a.probs, "linear")
    assert p.stages[0].bar.levels == (float(a.scores.min()), float(a.scores.max()))
    real = s.products.get

    def tiny(name, **kw):
        out = real(name, **kw)
        if name == PRODUCT and out is not None and not hasattr(out, "reason"):
            out = dataclasses.replace(out, anatomy=dataclasses.replace(out.anatomy, contrib=out.anatomy.contrib * 1e-3))
        return out

    monkeypatch.setattr(s.products, "get", tiny)
    s.view.head = 1
    p.flush()
    contrib = p.result.anatomy.contrib
    assert float(contrib.max()) < 1e-3
    np.testing.assert_array_equal(p.arrays["contrib"], p.result.anatomy.key_map(contrib))
    bar = p.stages[2].bar
    lo, hi = levels(contrib, "linear")
    assert bar.levels == (lo, hi)
    assert_readable_bar(bar, lo, hi)
