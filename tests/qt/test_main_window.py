"""The workspace over a synchronous session: every panel's arrays equal attnviz.analysis for the view
state, widgets and keys change that state everywhere, the model is never rerun for a view change, and
bad files leave the app usable."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from attnviz.analysis.options import MixOptions  # noqa: E402
from attnviz.analysis.query import query_attention, query_map  # noqa: E402
from attnviz.nets import SwinConfig, ViTConfig  # noqa: E402
from attnviz.session import Patch, Prefix  # noqa: E402


VIT = ViTConfig(img_size=(64, 64), embed_dim=128, num_heads=2, depth=3, mlp_hidden_dim=256, num_classes=5)


def _open(window, checkpoint, image_path, cfg=VIT, name="vit"):
    s = window.session
    s.open_model(checkpoint(cfg, name))
    s.open_image(image_path)
    window.flush()
    return s


def test_vit_panels_follow_block_head_and_query_without_rerunning(window, checkpoint, tmp_path, image_path, monkeypatch, qtbot):
    s = _open(window, checkpoint, image_path)
    assert s.capture is not None and len(s.capture.blocks) == 3
    image = window.panels["image"]
    assert s.view.query == Prefix(0) and "cls token" in image.caption.text()
    assert window.panels["predictions"].table.rowCount() == 5
    assert window.windowTitle() == f"attnviz — {s.model.info.name or 'vit.safetensors'} — img.png"

    calls = []
    monkeypatch.setattr(s.model.net, "capture", lambda *a, **k: calls.append(1))
    window.block.setValue(2)
    assert s.view.block == 2
    window.head.setCurrentIndex(1)
    window.head.activated.emit(1)  # "head 1"
    assert s.view.head == 1
    s.pick_pixel(40.0, 20.0)  # row 2, col 1 of the 4x4 grid
    assert s.view.query == Patch(2, 1)
    window.flush()
    assert "patch (2, 1)" in image.caption.text()
    attn = s.capture.blocks[2].attn[0]  # (heads, N, N)
    np.testing.assert_allclose(image.view.values, attn[1, 1 + 2 * 4 + 1, 1:].reshape(4, 4).numpy(), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(image.view.values, query_map(attn, 1 + 2 * 4 + 1, 1, (4, 4), 1))
    # the query patch is outlined where it is: x 16..32, y 32..48
    r = image.view.query.rect()
    assert (r.x(), r.y(), r.width(), r.height()) == (16, 32, 16, 16) and image.view.query.isVisible()
    heads = window.panels["heads"]
    for h, arr in enumerate(heads.arrays):
        np.testing.assert_array_equal(arr, query_attention(attn, 9 + 1, 1, (4, 4))[h])
    assert calls == []  # switching block, head and query read the cached capture


def test_heads_overview_and_matrix_select_and_show_the_right_rows(window, checkpoint, tmp_path, image_path, qtbot):
    s = _open(window, checkpoint, image_path)
    heads = window.panels["heads"]
    heads.tabs.setCurrentIndex(1)
    window.flush()
    mos = heads.overview_array  # 3 blocks x 2 heads of 4x4 tiles, 1 px gaps
    assert mos.shape == (3 * 5 - 1, 2 * 5 - 1)
    for b in range(3):
        for h in range(2):
            tile = query_attention(s.capture.blocks[b].attn[0], 0, 1, (4, 4))[h]
            np.testing.assert_allclose(mos[b * 5:b * 5 + 4, h * 5:h * 5 + 4], tile / tile.max(), atol=1e-12)
    s.view.update(block=1, head=0)
    heads.tabs.setCurrentIndex(2)
    window.flush()
    np.testing.assert_array_equal(heads.matrix_array, s.capture.blocks[1].attn[0, 0].double().numpy())
    assert heads.matrix_row.value() == 0.5  # the cls row is marked


def test_maps_equal_the_analysis_library(window, checkpoint, tmp_path, image_path):
    from attnviz.analysis.flow import attention_flow, flow_map
    from attnviz.analysis.relevance import class_relevance
    from attnviz.analysis.rollout import rollout_map

    s = _open(window, checkpoint, image_path)
    opts = MixOptions(alpha=0.3, fusion="max", discard_ratio=0.2)
    s.view.options = opts
    window.flush()
    maps = window.panels["maps"]
    attns = [b.attn[0] for b in s.capture.blocks]
    np.testing.assert_allclose(maps.arrays["rollout"], rollout_map(attns, 1, (4, 4), start=0, options=opts), atol=1e-12)
    fl = flow_map(attention_flow(attns, 0, options=opts, num_prefix_tokens=1), 1, (4, 4))
    np.testing.assert_allclose(maps.arrays["flow"], fl / fl.max(), atol=1e-9)
    pred = int(s.capture.logits[0].argmax())
    rel = class_relevance(s.model.net, s.doc.x, pred, "chefer", start=0, options=opts)
    np.testing.assert_allclose(maps.arrays["chefer"], rel.map, atol=1e-6)
    # clicking another class in the predictions makes it the relevance class everywhere
    preds = window.panels["predictions"]
    other = preds.rows[1][0]
    preds.table.cellClicked.emit(1, 0)
    assert s.view.class_idx == other
    window.flush()
    rel2 = class_relevance(s.model.net, s.doc.x, other, "chefer", start=0, options=opts)
    np.testing.assert_allclose(maps.arrays["chefer"], rel2.map, atol=1e-6)
    # the image panel shows the chosen method's array
    s.view.method = "rollout"
    window.flush()
    np.testing.assert_array_equal(window.panels["image"].view.values, maps.arrays["rollout"])


def test_keys_step_blocks_and_heads_and_move_the_query(window, checkpoint, tmp_path, image_path, qtbot):
    s = _open(window, checkpoint, image_path)
    qtbot.keyClick(window, Qt.Key.Key_Down)
    assert s.view.block == 1
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert s.view.block == 2
    qtbot.keyClick(window, Qt.Key.Key_Home)
    assert s.view.block == 0
    seen = []
    for _ in range(5):
        qtbot.keyClick(window, Qt.Key.Key_Right)
        seen.append(s.view.head)
    assert seen == ["max", "min", 0, 1, "mean"]  # from 'mean' through the heads and fusions, wrapping
    qtbot.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert s.view.query == Patch(2, 2)  # a prefix query starts from the centre patch
    qtbot.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(window, Qt.Key.Key_Up, Qt.KeyboardModifier.ShiftModifier)
    assert s.view.query == Patch(1, 3)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert s.view.query == Prefix(0)
    window.flush()
    assert "block 0" in window.status.text() and "cls token" in window.status.text()


def test_swin_map_is_the_query_window_and_vit_only_maps_say_why(window, checkpoint, tmp_path, image_path):
    from attnviz.analysis.swin_maps import query_attention_map

    cfg = SwinConfig(img_size=(64, 64), embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=(4, 4),
                     num_classes=3)
    s = _open(window, checkpoint, image_path, cfg, "swin")
    s.view.update(block=1, query=Patch(0, 0))  # shifted block of stage 0: the window wraps around
    window.flush()
    image = window.panels["image"]
    b = s.capture.blocks[1]
    np.testing.assert_array_equal(image.view.values, query_attention_map(b, (0, 0)).double().numpy())
    assert 0 < np.count_nonzero(image.view.values) <= 16  # one 4x4 window of the stage grid
    s.view.update(block=2, head=1, query=Patch(5, 6))  # stage 1: token (2, 3)
    window.flush()
    np.testing.assert_array_equal(image.view.values, query_attention_map(s.capture.blocks[2], (2, 3), head_fusion=1)
                                  .double().numpy())
    assert "stage-1 token (2, 3)" in image.caption.text()
    maps = window.panels["maps"]
    assert "ViT family" in maps.arrays["flow"].reason and "ViT family" in maps.arrays["chefer"].reason
    assert isinstance(maps.arrays["rollout"], np.ndarray)


def test_backbone_without_head_says_so(window, checkpoint, tmp_path, image_path):
    cfg = ViTConfig(img_size=(32, 32), embed_dim=64, num_heads=1, depth=2, mlp_hidden_dim=64, num_classes=0)
    s = _open(window, checkpoint, image_path, cfg, "backbone")
    assert "no classifier head" in window.panels["predictions"].caption.text()
    assert "no classifier head" in window.panels["maps"].arrays["chefer"].reason
    s.view.method = "chefer"
    window.flush()
    assert "no classifier head" in window.panels["image"].caption.text()


def test_bad_files_give_one_message_and_the_app_keeps_what_it_had(window, checkpoint, tmp_path, image_path):
    s = window.session
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00not a checkpoint")
    s.open_model(str(bad))
    assert s.model is None and "broken.safetensors" in s.last_error
    assert window.banner.isVisible() and "broken.safetensors" in window.banner.text.text()
    s.open_image(str(tmp_path / "missing.png"))
    assert "missing.png" in s.last_error
    _open(window, checkpoint, image_path, ViTConfig(img_size=(32, 32), embed_dim=64, num_heads=1, depth=1,
                                                  mlp_hidden_dim=64, num_classes=2), "ok")
    assert s.capture is not None and not window.banner.isVisible()  # a successful load clears the message
    good = s.model
    s.open_model(str(bad))
    assert s.model is good and window.banner.isVisible()  # the previous model stays
    assert "ok" in window.panels["model"].heading.text() or good.info.name in window.panels["model"].heading.text()
    assert len(window.error_log) == 3
    window.banner.dismiss.click()
    assert not window.banner.isVisible() and s.model is good


def test_drop_routes_images_and_checkpoints_and_remembers_recent_files(window, checkpoint, tmp_path, image_path):
    s = window.session
    ckpt = checkpoint(VIT, "dropped")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(ckpt), QUrl.fromLocalFile(image_path)])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    window.dropEvent(ev)
    assert s.doc.model_path == ckpt and s.doc.image_path == image_path and s.capture is not None
    assert window.recent("recent/models") == [ckpt] and window.recent("recent/images") == [image_path]
    texts = [a.text() for a in window.recent_models.actions()]
    assert texts == [ckpt]
    window.clear_recent()
    assert window.recent("recent/models") == [] and not window.recent_models.actions()[0].isEnabled()


def test_layout_is_saved_and_restored_with_a_version(qtbot, settings, tmp_path):
    from attnviz.qt.main_window import LAYOUT_VERSION, MainWindow
    from attnviz.session import Session, Worker

    w1 = MainWindow(Session(Worker(synchronous=True)), settings)
    qtbot.addWidget(w1)
    w1.show()
    w1.docks["maps"].close()
    w1.save_layout()
    w2 = MainWindow(Session(Worker(synchronous=True)), settings)
    qtbot.addWidget(w2)
    w2.show()
    assert w2.docks["maps"].isHidden() and not w2.docks["heads"].isHidden()
    w2.reset_layout()
    assert not w2.docks["maps"].isHidden()
    settings.setValue("layout/version", LAYOUT_VERSION - 1)  # a layout of an older window is not restored
    w3 = MainWindow(Session(Worker(synchronous=True)), settings)
    qtbot.addWidget(w3)
    w3.show()
    assert not w3.docks["maps"].isHidden()


def test_model_panel_describes_the_model_and_its_crop(window, checkpoint, tmp_path, image_path):
    s = _open(window, checkpoint, image_path)
    window.panels["model"].flush()
    rows = dict((a, b) for a, b in __import__("attnviz.qt.panels.model_panel", fromlist=["x"]).describe_model(s))
    assert rows["Input"] == "64×64 px → 4×4 patches" and rows["Prefix tokens"] == "1 (cls)"
    assert rows["Blocks × heads"] == "3 × 2" and rows["Device"] == "cpu"
    n = sum(p.numel() for p in s.model.net.parameters())
    assert rows["Parameters"] == f"{n / 1e6:.2f} M"
    from attnviz.images import input_box

    assert window.panels["model"].box == input_box(s.doc.image.size, s.model.info.preprocess)


def test_input_size_change_keeps_the_patch_under_the_same_point(window, checkpoint, tmp_path, image_path):
    s = _open(window, checkpoint, image_path)
    s.view.query = Patch(3, 1)  # centre at (56, 24) of 64 px: (0.875, 0.375)
    s.reload(img_size=128)
    assert s.capture.img_size == (128, 128) and s.capture.grid_size == (8, 8)
    assert s.view.query == Patch(7, 3)
    window.flush()
    torch.testing.assert_close(torch.from_numpy(window.panels["image"].view.values),
                               torch.from_numpy(query_map(s.capture.blocks[0].attn[0], 1 + 7 * 8 + 3, 1, (8, 8),
                                                          "mean")))


def test_model_browser_opens_what_it_lists(window, checkpoint):
    ckpt = checkpoint(VIT, "listed")
    window.show_browser()
    assert window.docks["browser"].isVisible()
    window.browser.sigOpen.emit(ckpt)
    assert window.session.doc.model_path == ckpt and window.session.model is not None


def test_hover_is_outlined_in_every_linked_panel_and_read_out(window, checkpoint, image_path):
    s = _open(window, checkpoint, image_path)
    window.panels["image"].view.sigHovered.emit(40.0, 20.0)  # the mouse over patch (2, 1)
    assert s.view.hover == Patch(2, 1)
    image, maps = window.panels["image"], window.panels["maps"]
    value = query_map(s.capture.blocks[0].attn[0], 0, 1, (4, 4), "mean")[2, 1]  # the cls query's map
    assert image.readout.text() == f"row 2, col 1 · token 10 · value {value:.4g}"
    for view in [image.view] + [t.view for t in maps.tiles.values()]:
        r = view.hover.rect()
        assert view.hover.isVisible() and (r.x(), r.y()) == (16, 32)
    image.view.sigHovered.emit(-1.0, -1.0)  # the mouse left the image
    assert s.view.hover is None and not image.view.hover.isVisible()


def test_a_failed_model_stays_said_when_an_image_then_loads(window, tmp_path, image_path):
    s = window.session
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x13" * 64)
    s.open_model(str(bad))
    s.open_image(image_path)  # the image is fine, but the model failure is not over
    assert "garbage.safetensors" in s.last_error and window.banner.isVisible()
    assert not window.work.isVisible()  # nothing is running: no endless busy bar


def test_arrow_keys_stay_with_a_focused_list(window, checkpoint, image_path, qtbot):
    s = _open(window, checkpoint, image_path)
    table = window.panels["predictions"].table
    table.setCurrentCell(0, 0)
    table.setFocus()
    qtbot.keyClick(table, Qt.Key.Key_Down)
    assert s.view.block == 0 and table.currentRow() == 1  # the table moved its cursor; the block stayed
    window.panels["image"].view.setFocus()
    qtbot.keyClick(window.panels["image"].view, Qt.Key.Key_Down)
    assert s.view.block == 1


def test_swin_overview_shows_every_stage_on_the_first_grid(window, checkpoint, image_path):
    from attnviz.analysis.swin_maps import query_attention_map, stage_map_to_patch_grid

    cfg = SwinConfig(img_size=(64, 64), embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=(4, 4),
                     num_classes=3)
    s = _open(window, checkpoint, image_path, cfg, "swin")
    heads = window.panels["heads"]
    heads.tabs.setCurrentIndex(1)
    s.view.query = Patch(5, 6)
    window.flush()
    h, w = s.capture.blocks[0].grid_size
    mos = heads.overview_array
    t = stage_map_to_patch_grid(query_attention_map(s.capture.blocks[2], (2, 3), head_fusion=1), 2, (h, w))
    t = t.double().numpy()
    np.testing.assert_allclose(mos[2 * (h + 1):2 * (h + 1) + h, (w + 1):(w + 1) + w], t / t.max(), atol=1e-7)


# -- speed: what a change redraws, and the UX of the figures -------------------------------------------

def test_a_head_or_block_change_redraws_only_the_attention_tile(window, checkpoint, image_path):
    s = _open(window, checkpoint, image_path)
    maps = window.panels["maps"]
    before = {m: (t.view.heat.image, maps.arrays[m]) for m, t in maps.tiles.items()}
    s.view.update(block=2, head=1)
    window.flush()
    for m in ("rollout", "flow", "grad_rollout", "chefer"):  # they read query, options and class only
        assert maps.tiles[m].view.heat.image is before[m][0] and maps.arrays[m] is before[m][1]
    attn = s.capture.blocks[2].attn[0]  # (heads, N, N)
    np.testing.assert_array_equal(maps.arrays["attention"], query_map(attn, 0, 1, (4, 4), 1))
    assert maps.tiles["attention"].view.heat.image is not before["attention"][0]


def test_head_tiles_are_coloured_from_their_own_rows(window, checkpoint, image_path):
    from attnviz.qt.widgets.colorize import colorize, premultiplied_bgra
    from attnviz.qt.widgets.overlay import lookup_table
    from attnviz.session.display import levels

    s = _open(window, checkpoint, image_path)
    s.view.update(block=1, query=Patch(1, 2))
    window.flush()
    heads = window.panels["heads"]
    attn = s.capture.blocks[1].attn[0]  # (heads, N, N)
    lut = lookup_table(s.view.colormap, False)
    for h in range(2):
        row = query_attention(attn, 1 + 1 * 4 + 2, 1, (4, 4))[h]  # (4, 4)
        np.testing.assert_array_equal(heads.arrays[h], row)
        np.testing.assert_array_equal(heads.grid._buffers[h], premultiplied_bgra(colorize(row, levels(row, "linear"), lut)))
    assert heads.grid.selected is None  # 'mean' fuses the heads: no tile is the selection
    s.view.head = 1
    window.flush()
    assert heads.grid.selected == 1 and "head 1" in heads.grid.captions[1]


def test_colour_bar_numbers_show_for_tiny_ranges():
    from attnviz.session.display import format_ticks, tick_values

    for lo, hi in ((0.0, 0.002), (0.0, 3.1e-7), (0.93, 1.0), (-0.013, 0.021), (0.0, 1.0)):
        ticks = tick_values(lo, hi)
        labels = format_ticks(ticks)
        assert ticks[0] == lo and ticks[-1] == hi and len(ticks) >= 2
        assert all(labels) and len(set(labels)) == len(labels)  # none empty, none repeated
        for t, text in zip(ticks, labels):
            assert abs(float(text) - t) <= 0.06 * (hi - lo)  # each number says its own value
    assert format_ticks(tick_values(0.0, 0.002)) == ["0", "0.0005", "0.001", "0.0015", "0.002"]


def test_image_colour_bar_reads_a_min_of_heads_map(window, checkpoint, image_path):
    s = _open(window, checkpoint, image_path)
    s.view.head = "min"
    window.flush()
    view = window.panels["image"].view
    lo, hi = view.levels
    np.testing.assert_allclose(hi, query_map(s.capture.blocks[0].attn[0], 0, 1, (4, 4), "min").max())
    shown = view.bar.shown_labels()
    assert len(shown) >= 2 and float(shown[-1]) == 0.0 and abs(float(shown[0]) - hi) <= 0.1 * hi


def test_plot_text_follows_the_application_font(window, checkpoint, image_path, qtbot):
    from PySide6.QtWidgets import QApplication

    s = _open(window, checkpoint, image_path)
    heads = window.panels["heads"]
    heads.tabs.setCurrentIndex(2)
    window.flush()
    app = QApplication.instance()
    original = app.font()
    bar = window.panels["image"].view.bar
    axis = heads.matrix.getAxis("left")
    small = (bar.font.pointSizeF(), axis.style["tickFont"].pointSizeF(), heads.grid.font().pointSizeF())
    try:
        window.zoom_text(+3)
        qtbot.waitUntil(lambda: bar.font.pointSizeF() > small[0], timeout=2000)
        assert axis.style["tickFont"].pointSizeF() > small[1] and heads.grid.font().pointSizeF() > small[2]
        assert window.panels["maps"].tiles["attention"].view.bar is None  # tiles carry no bar
    finally:
        app.setFont(original)
    assert s.capture is not None


def test_matrix_has_a_colour_scale_and_marks_the_query_row_only(window, checkpoint, image_path):
    from attnviz.session.display import levels

    s = _open(window, checkpoint, image_path)
    s.view.update(block=1, head=1, query=Patch(2, 3))
    heads = window.panels["heads"]
    heads.tabs.setCurrentIndex(2)
    window.flush()
    m = s.capture.blocks[1].attn[0, 1].double().numpy()  # (17, 17)
    np.testing.assert_array_equal(heads.matrix_array, m)
    assert heads.matrix.bar.levels == levels(m, "linear") and heads.matrix.bar.shown_labels()
    r = heads.matrix_row.rect()
    assert (r.x(), r.y(), r.width(), r.height()) == (0, 1 + 2 * 4 + 3, 17, 1)  # the row, over the matrix only


def test_flow_is_coloured_from_its_minimum_and_says_so(window, checkpoint, image_path):
    from attnviz.analysis.flow import attention_flow, flow_map

    s = _open(window, checkpoint, image_path)
    maps = window.panels["maps"]
    attns = [b.attn[0] for b in s.capture.blocks]
    fl = flow_map(attention_flow(attns, 0, options=s.view.options, num_prefix_tokens=1), 1, (4, 4))
    fl = fl / fl.max()
    np.testing.assert_allclose(maps.arrays["flow"], fl, atol=1e-9)
    assert maps.levels["flow"] == (maps.arrays["flow"].min(), maps.arrays["flow"].max())
    assert "colours from min" in maps.tiles["flow"].text
    assert maps.levels["rollout"][0] == 0.0  # the others still start at 0
    s.view.method = "flow"
    window.flush()
    image = window.panels["image"]
    assert image.view.levels == maps.levels["flow"] and "colours from its min" in image.caption.text()


def test_hover_is_outlined_on_the_head_tiles(window, checkpoint, image_path):
    s = _open(window, checkpoint, image_path)
    heads = window.panels["heads"]
    window.panels["image"].view.sigHovered.emit(40.0, 20.0)  # patch (2, 1)
    assert heads.grid.hover == (2, 1)
    tile, out = heads.grid.tile_rect(0), heads.grid.hover_rect(0)
    assert tile.contains(out.center())
    np.testing.assert_allclose([out.x() - tile.x(), out.y() - tile.y()], [tile.width() / 4, 2 * tile.height() / 4])
    window.panels["image"].view.sigHovered.emit(-1.0, -1.0)
    assert heads.grid.hover is None and heads.grid.hover_rect(0) is None


def test_swin_outside_the_window_is_hatched_and_explained(window, checkpoint, image_path):
    from attnviz.analysis.swin_maps import stage_map_to_patch_grid

    cfg = SwinConfig(img_size=(64, 64), embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=(4, 4),
                     num_classes=3)
    s = _open(window, checkpoint, image_path, cfg, "swin")
    s.view.update(block=1, query=Patch(5, 6))  # stage 0, shifted windows: the query's window is 4x4 tokens
    window.flush()
    heads = window.panels["heads"]
    qh = s.products.get("query_heads")
    np.testing.assert_array_equal(heads.grid.outside, ~qh.window)
    assert heads.grid.outside.sum() == qh.window.size - 16 and heads.grid._runs
    assert "outside the query's window" in heads.caption.text()
    heads.tabs.setCurrentIndex(1)
    s.view.update(block=0, query=Patch(0, 0))
    window.flush()
    every = s.products.get("model_query_maps")
    h, w = every[0].maps.shape[1:]
    for b, qb in enumerate(every):
        f = qb.token_px // every[0].token_px
        win = stage_map_to_patch_grid(torch.from_numpy(qb.window.astype(np.float64)), f, (h, w)).numpy() > 0.5
        np.testing.assert_array_equal(heads.overview_outside[b * (h + 1):b * (h + 1) + h, :w], ~win)
    assert heads.overview_outside.any() and not heads.overview_hatch.path().isEmpty()
    assert (heads.overview.img.image[heads.overview_outside][:, 3] == 0).all()  # not coloured: hatched


def test_out_of_date_notice_moves_nothing(window, checkpoint, image_path):
    s = _open(window, checkpoint, image_path)
    image = window.panels["image"]
    size = image.view.size()
    s.busy.emit("opening img.png")
    image.body.activate()  # lay the panel out now, as the event loop would
    assert image.stale.isVisible() and "opening img.png" in image.stale.text()
    assert image.body.indexOf(image.stale) == -1 and image.view.size() == size  # over the panel, not in it
    s.open_image(image_path)
    assert not image.stale.isVisible()


def test_a_dock_tabbed_behind_another_waits_until_its_tab_is_selected(window, checkpoint, image_path, qtbot):
    s = _open(window, checkpoint, image_path)
    model, preds = window.panels["model"], window.panels["predictions"]
    window.docks["predictions"].raise_()
    qtbot.waitUntil(lambda: model.visibleRegion().isEmpty(), timeout=2000)
    calls = []
    model.refresh = lambda: calls.append(1)  # the model panel repaints on every model load
    preds.refresh = lambda: calls.append(2)
    s.open_image(image_path)  # a new capture: both are dirty
    assert calls == [2] and model._dirty  # the one behind its tab waits
    window.docks["model"].raise_()
    qtbot.waitUntil(lambda: calls == [2, 1], timeout=2000)
    assert not model._dirty


def test_the_block_range_slider_can_come_after_the_first_map(qtbot, checkpoint, image_path, monkeypatch):
    from attnviz.qt.panels.maps_panel import MapsPanel
    from attnviz.session import Session, Worker

    monkeypatch.setattr(MapsPanel, "defer_block_slider", True)  # as the app builds its window
    s = Session(Worker(synchronous=True), device="cpu")
    p = MapsPanel(s)
    qtbot.addWidget(p)
    p.show()
    s.open_model(checkpoint(VIT, "vit"))
    s.open_image(image_path)
    s.view.options = MixOptions(first_block=1)
    p.flush()
    assert p.blocks is None and p.blocks_slot.text() == "1–2"  # the range is said meanwhile
    p.ensure_block_slider()
    assert tuple(p.blocks.value()) == (1, 2) and p.blocks_slot is None
    p.blocks.setValue((0, 1))
    assert (s.view.options.first_block, s.view.options.last_block) == (0, 1)


def test_a_model_opened_before_any_image_is_shown_at_once(window):
    """Opening a model with no image: the Model panel describes it, the title names it, the status bar
    says an image is missing, and no busy bar is left spinning."""
    root = Path(__file__).resolve().parents[2]
    window.session.open_model(str(root / "models" / "faces-vit.safetensors"))
    window.flush()
    panel = window.panels["model"]
    panel.flush()
    assert panel.heading.text() == "faces-vit"
    assert window.windowTitle() == "attnviz — faces-vit — no image"
    assert "open an image" in window.statusBar().currentMessage()
    assert not window.work.isVisibleTo(window)


def _overlaps(a, b) -> bool:
    return a.intersects(b) and not a.intersected(b).isEmpty()


def test_panel_controls_wrap_instead_of_being_cut_at_a_larger_font(window, checkpoint, image_path, qtbot):
    """Ctrl+= while presenting: the Image and Maps panels' controls keep the width their text needs (a
    squeezed box shows 'infern' for 'inferno') and wrap onto further lines without overlapping."""
    from PySide6.QtWidgets import QApplication, QComboBox

    from attnviz.qt.widgets.flow import FlowLayout

    _open(window, checkpoint, image_path)
    app = QApplication.instance()
    original = app.font()
    try:
        window.zoom_text(+4)
        for name in ("image", "maps"):
            window.docks[name].setFloating(True)
            window.docks[name].resize(380, 500)
        for _ in range(5):
            app.processEvents()
        for name in ("image", "maps"):
            panel = window.panels[name]
            (flow,) = panel.findChildren(FlowLayout)
            items = [flow.itemAt(i) for i in range(flow.count())]
            rects = [it.geometry() for it in items]
            for it, r in zip(items, rects):
                assert r.width() >= it.sizeHint().width() and r.height() >= it.sizeHint().height()
                assert flow.geometry().contains(r), (name, r, flow.geometry())  # nothing cut at the right
            for i, a in enumerate(rects):
                assert all(not _overlaps(a, b) for b in rects[i + 1:])
            assert len({r.top() for r in rects}) >= 2, name  # 380 px cannot hold them on one line at this size
            for box in panel.findChildren(QComboBox):
                if box.isVisible():
                    assert box.width() >= box.sizeHint().width(), box.currentText()
    finally:
        app.setFont(original)
