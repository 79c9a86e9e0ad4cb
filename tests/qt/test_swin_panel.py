"""The Swin windows panel: the arrays behind its images against attnviz.analysis and the capture (what the
network applied), clicking selects the query everywhere, and a ViT capture gets an explanation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt

from attnviz.analysis.pos_embed import bias_for_query, captured_bias, captured_bias_image, captured_logit_scale
from attnviz.analysis.swin_maps import query_attention_image, query_attention_map
from attnviz.analysis.windows import (locate_token, pixel_window_index, window_of_token, window_rects, window_regions,
                                      window_token_index)
from attnviz.nets import SwinConfig
from attnviz.session import Patch, Session, Worker
from attnviz.session.query import stage_token
from attnviz.session.swin_products import VIT_REASON

FACE = "assets/images/face-01.png"


@pytest.fixture
def panel(qtbot):
    import pyqtgraph as pg

    from attnviz.qt.panels.swin_panel import SwinPanel

    pg.setConfigOptions(imageAxisOrder="row-major")
    s = Session(Worker(synchronous=True), device="cpu")
    p = SwinPanel(s)
    qtbot.addWidget(p)
    p.resize(1000, 700)
    p.show()
    yield p
    assert [e.message for e in s.errors] == []  # the panel never failed to draw


def _open(p, model: str, image: str = FACE, img_size=None) -> Session:
    s = p.session
    s.open_model(model, img_size)
    s.open_image(image)
    p.flush()
    assert s.capture is not None, s.last_error
    return s


def _query_pixel(s: Session) -> tuple[int, int]:
    q, ps = s.view.query, s.geometry.patch_size
    return q.row * ps, q.col * ps


def _check_block(p, s: Session) -> None:
    """Every array behind the panel's images for the current block, head and query."""
    v, cap = s.view, s.capture
    b = cap.blocks[v.block]
    geom = b.geometry
    img = tuple(cap.img_size)
    w = p.windows
    # windows: the per-pixel window index is the network's, and the drawn rectangles paint the same picture
    np.testing.assert_array_equal(w.pixel_window, pixel_window_index(geom, img))
    painted = np.full(img, -1)
    for i, rects in enumerate(w.rects):
        for r in rects:
            painted[r.y0:r.y1, r.x0:r.x1] = i
    np.testing.assert_array_equal(painted, w.pixel_window)
    assert w.rects == window_rects(geom, "pixels", img)
    cell = stage_token(v.query, b)
    win, slot = locate_token(geom, *cell)
    py, px = _query_pixel(s)
    assert w.query_window == win == w.pixel_window[py, px] and w.query_slot == slot
    # attention of the query: the block's token grid, stretched over exactly the pixels its tokens cover
    head = v.head
    expected = query_attention_map(b, cell, head_fusion=head).double().numpy()  # (H, W)
    np.testing.assert_allclose(p.att_view.values, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(p.attention.window, window_of_token(geom).numpy() == win)
    H, W = geom.grid_size
    t = geom.token_px
    heat = p.att_view.heat
    assert heat.mapRectToParent(heat.boundingRect()) == QRectF(0, 0, W * t, H * t)
    pixels = query_attention_image(b, (py, px), img, head_fusion=head).double().numpy()  # the map over the input
    np.testing.assert_allclose(pixels[:H * t:t, :W * t:t][: -(-img[0] // t), : -(-img[1] // t)],
                               expected[: -(-img[0] // t), : -(-img[1] // t)], atol=1e-6)
    # one softmax row of the capture: the window's keys get what it gives the real (non-padding) slots
    attn = b.attn[0, win, :, slot].double()  # (heads, M²)
    row = attn[head] if isinstance(head, int) else attn.mean(0)
    real = window_token_index(geom)[win] >= 0  # (M²,)
    assert abs(float(row.sum()) - 1.0) < 1e-5
    assert abs(expected[p.attention.window].sum() - float(row[real].sum())) < 1e-5
    assert (expected[~p.attention.window] == 0).all()
    # the position bias the block added, read from the capture
    image = captured_bias_image(b)  # (heads, 2M-1, 2M-1)
    table = image[head] if isinstance(head, int) else image.mean(0)
    np.testing.assert_allclose(p.table_plot.array, table.double().numpy(), rtol=0, atol=0)
    M = geom.window_size
    row = captured_bias(b)[:, slot]  # (heads, M²)
    row = row[head] if isinstance(head, int) else row.mean(0)
    np.testing.assert_allclose(p.query_bias_plot.array, row.reshape(M, M).double().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(p.query_bias_plot.array, bias_for_query(table[None], divmod(slot, M))[0].double(),
                               atol=1e-6)


def _check_mask(p, s: Session) -> None:
    """With the regions shown: colours are the mask's regions, the mask image is the capture's."""
    b = s.capture.blocks[s.view.block]
    geom, w = b.geometry, p.windows
    t = geom.token_px
    H, W = geom.grid_size
    assert p.mask_plot.isVisible()
    np.testing.assert_array_equal(p.colour_index[:H * t:t, :W * t:t], window_regions(geom).numpy())
    if b.attn_mask is None:
        assert geom.shift_size == 0 and not p.mask_plot.array.any()
        return
    np.testing.assert_array_equal(p.mask_plot.array, b.attn_mask[w.query_window].numpy())
    differ = w.slot_regions[:, None] != w.slot_regions[None, :]  # (M², M²) the labels drawn beside the mask
    np.testing.assert_array_equal(p.mask_plot.array, np.where(differ, -100.0, 0.0))


@pytest.mark.parametrize("model", ["models/faces-swin.safetensors", "models/faces-swinv2.safetensors"])
def test_arrays_equal_analysis_and_capture_in_every_block(panel, model):
    s = _open(panel, model)
    assert panel.stack.currentWidget() is panel.tabs
    n = s.capture.num_blocks
    shifted = 0
    for block in range(n):
        for head, query in (("mean", Patch(15, 15)), (0, Patch(2, 13)), (s.view.limits.heads[block] - 1, Patch(8, 7))):
            s.view.update(block=block, head=head, query=query)
            panel.regions_box.setChecked(False)
            panel.flush()
            _check_block(panel, s)
            assert not panel.mask_plot.isVisible()
            panel.regions_box.setChecked(True)
            _check_mask(panel, s)
        shifted += s.capture.blocks[block].geometry.shift_size > 0
        assert f"Block {block} of {n}" in panel.caption.text()
        assert f"stage {s.capture.blocks[block].stage}" in panel.caption.text()
        assert f"{s.capture.blocks[block].token_px}×{s.capture.blocks[block].token_px} input pixels" in \
            panel.growth.text()
    assert shifted >= 2
    b = s.capture.blocks[s.view.block]
    if b.logit_scale is None:
        assert panel.bias.version == 1 and panel.scale_array is None and "v1" in panel.scale_note.text()
    else:
        assert panel.bias.version == 2
        np.testing.assert_array_equal(panel.scale_array, captured_logit_scale(b).double().numpy())


@pytest.mark.parametrize("version", [1, 2])
def test_padded_stage_map(panel, checkpoint, version):
    cfg = SwinConfig(version=version, img_size=(56, 56), embed_dim=16, depths=(2, 2, 2), num_heads=(2, 2, 4),
                     window_size=(4, 4, 4), num_classes=3)
    s = _open(panel, checkpoint(cfg, f"swin{version}"), "assets/images/chelsea.jpg", img_size=56)
    padded = [i for i, b in enumerate(s.capture.blocks) if b.geometry.padded_size != b.geometry.grid_size]
    assert padded, "this configuration must pad a stage map"
    panel.regions_box.setChecked(True)
    for block in padded:
        for query in (Patch(13, 13), Patch(0, 0), Patch(6, 12)):
            s.view.update(block=block, head=1, query=query)
            panel.flush()
            _check_block(panel, s)
            _check_mask(panel, s)
            g = s.capture.blocks[block].geometry
            H, W = g.grid_size
            Hp, Wp = g.padded_size
            assert panel.windows.pad_px == ((Hp - H) * g.token_px, (Wp - W) * g.token_px) != (0, 0)
            assert "padded" in panel.legend.text()
    assert any(s.capture.blocks[i].geometry.shift_size for i in padded)


def _click(view, y: float, x: float) -> None:
    """A left click on input pixel (y, x) of an overlay view, through the Qt event system."""
    from pytestqt.qtbot import QtBot

    scene = view.vb.mapViewToScene(QPointF(x, y))
    pos = view.mapFromScene(scene)
    QtBot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(round(pos.x()), round(pos.y())))


def test_clicking_a_window_selects_the_query_everywhere(panel, qtbot):
    s = _open(panel, "models/faces-swin.safetensors")
    s.view.block = 3  # stage 1, shifted
    panel.flush()
    for view, tab in ((panel.win_view, 0), (panel.att_view, 1)):
        panel.tabs.setCurrentIndex(tab)
        panel.flush()
        qtbot.wait(20)
        for row, col in ((1, 14), (10, 5), (15, 0)):
            _click(view, row * 4 + 2.0, col * 4 + 2.0)  # the centre of patch (row, col): 4-px patches
            assert s.view.query == Patch(row, col)
            panel.flush()
            q = s.view.query
            assert panel.windows.query_window == pixel_window_index(s.capture.blocks[3].geometry, (64, 64))[
                q.row * 4, q.col * 4]


def test_vit_capture_is_explained(panel):
    s = _open(panel, "models/faces-vit.safetensors")
    assert panel.stack.currentWidget() is panel.message
    assert panel.message.text() == VIT_REASON and "Heads panel" in VIT_REASON
    assert panel.windows is None
    s.view.block = 2
    panel.flush()
    assert panel.stack.currentWidget() is panel.message
    _open(panel, "models/faces-swin.safetensors")  # and back to a Swin: the windows again
    assert panel.stack.currentWidget() is panel.tabs and panel.windows is not None


def test_docked_in_the_window_follows_the_block_keys(window, qtbot):
    from attnviz.qt.panels.swin_panel import SwinPanel

    window.docks["swin"].raise_()  # the lesson dock behind Maps, built when first shown
    p = window.panel("swin")
    assert isinstance(p, SwinPanel)
    s = window.session
    s.open_model("models/faces-swinv2.safetensors")
    s.open_image(FACE)
    window.flush()
    p.flush()
    assert "Block 0 of" in p.caption.text()
    qtbot.keyClick(window, Qt.Key.Key_Down)
    window.flush()
    p.flush()
    assert s.view.block == 1 and "Block 1 of" in p.caption.text() and "shifted" in p.caption.text()
    _check_block(p, s)
    assert torch.is_tensor(s.capture.blocks[1].attn_mask)


def test_block_strip_shows_every_block_and_selects_one(panel, qtbot):
    from attnviz.qt.widgets.colorize import colorize
    from attnviz.qt.widgets.overlay import shared_lookup_table

    s = _open(panel, "models/faces-swinv2.safetensors")
    panel.tabs.setCurrentIndex(1)
    q = Patch(3, 12)
    s.view.update(block=0, head=0, query=q)  # head 0 exists in every block
    panel.flush()
    qtbot.wait(20)
    strip = panel.strip
    assert len(strip.images) == len(strip.arrays) == s.capture.num_blocks
    shot = strip.grab().toImage()
    stages = set()
    for i, b in enumerate(s.capture.blocks):
        g = b.geometry
        cell = stage_token(q, b)
        expected = query_attention_map(b, cell, head_fusion=0).double().numpy()  # (H_b, W_b)
        np.testing.assert_allclose(strip.arrays[i], expected, atol=1e-6)
        # the map covers the pixels its tokens cover, on the tile's input (no offset, no crop)
        tile, heat = strip.tile_rect(i), strip.heat_rect(i)
        H, W = g.grid_size
        k = tile.width() / 64
        assert abs(tile.height() / 64 - k) < 1e-9  # the input's aspect
        assert heat.topLeft() == tile.topLeft()
        assert abs(heat.width() - W * g.token_px * k) < 1e-9 and abs(heat.height() - H * g.token_px * k) < 1e-9
        # and what is on screen at the query token's centre is its value through the colour map
        win = window_of_token(g).numpy() == locate_token(g, *cell)[0]
        rgba = colorize(expected, (0.0, expected[win].max()), shared_lookup_table(s.view.colormap, False))
        cy, cx = (cell[0] + 0.5) * g.token_px * k + tile.top(), (cell[1] + 0.5) * g.token_px * k + tile.left()
        c = shot.pixelColor(int(cx), int(cy))
        assert (c.red(), c.green(), c.blue()) == tuple(int(v) for v in rgba[cell][:3]), i
        stages.add(b.stage)
    assert len(stages) == 3
    sides = [b.geometry.window_size * b.geometry.token_px for b in s.capture.blocks]
    assert sides == sorted(sides) and sides[-1] > sides[0]  # the window grows with the stages
    assert strip.captions[3].startswith("3  s1") and "⇲" in strip.captions[3]
    # a click on the last tile selects the last block everywhere
    centre = strip.tile_rect(s.capture.num_blocks - 1).center()
    qtbot.mouseClick(strip, Qt.MouseButton.LeftButton, pos=QPoint(round(centre.x()), round(centre.y())))
    assert s.view.block == s.capture.num_blocks - 1
    panel.flush()
    assert f"Block {s.capture.num_blocks - 1} of" in panel.caption.text()
    assert strip.selected == s.capture.num_blocks - 1
    panel.on_font_change()  # Ctrl+= restyles the plots without error


def test_strip_follows_head_and_query_without_new_inputs(panel):
    """A head or query change recolours the small maps only: the tiles' input images stay the same."""
    s = _open(panel, "models/faces-swin.safetensors")
    panel.tabs.setCurrentIndex(1)
    panel.flush()
    inputs = list(panel.strip.images)
    s.view.block = s.capture.num_blocks - 1  # the most heads: a head the first stages do not have
    for head, q in (("max", Patch(0, 0)), (s.capture.blocks[-1].num_heads - 1, Patch(9, 2))):
        s.view.update(head=head, query=q)
        panel.flush()
        assert s.view.head == head
        assert all(a is b for a, b in zip(panel.strip.images, inputs))
        missing = 0
        for i, b in enumerate(s.capture.blocks):
            if isinstance(head, int) and head >= b.num_heads:  # a block with fewer heads: said, not drawn
                assert panel.strip.arrays[i] is None and f"{b.num_heads} heads" in panel.strip.captions[i]
                missing += 1
                continue
            expected = query_attention_map(b, stage_token(q, b), head_fusion=head).double().numpy()
            np.testing.assert_allclose(panel.strip.arrays[i], expected, atol=1e-6)
        assert missing < s.capture.num_blocks
