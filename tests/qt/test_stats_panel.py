"""Statistics panel: the dots are analysis.stats.head_stats of the current image (or a folder's running
means and spreads), a click selects block and head everywhere, the token-norm map is the capture's norms
on the block's grid with the outliers of analysis.stats flagged."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF, Qt

from attnviz.analysis.stats import head_stats, norm_outliers
from attnviz.images import load_image, preprocess
from attnviz.qt.panels.stats_panel import PLOTS, StatsPanel
from attnviz.session import Session, Worker
from tests.qt.panel_checks import assert_readable_bar

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("face-01.png", "none-02.png", "scrambled-03.png")


@pytest.fixture
def panel(qtbot):
    pg.setConfigOptions(imageAxisOrder="row-major")
    s = Session(Worker(synchronous=True), device="cpu")
    p = StatsPanel(s)
    qtbot.addWidget(p)
    p.resize(1200, 420)
    p.show()
    errors = []
    s.error.connect(errors.append)
    yield p
    assert errors == [], errors


def _open(p: StatsPanel, model: str, image: str = "face-01.png") -> None:
    s = p.session
    s.open_model(str(ROOT / "models" / f"{model}.safetensors"))
    s.open_image(str(ROOT / "assets/images" / image))
    p.flush()


def _dots(p: StatsPanel, name: str) -> tuple[np.ndarray, np.ndarray, list]:
    x, y = p.dots[name].getData()
    return np.asarray(x), np.asarray(y), [pt.data() for pt in p.dots[name].points()]


def _expected(st, name):
    """(block, head) -> value of every real head, straight from the HeadStats table."""
    table = getattr(st, name)
    return {(b, h): table[b, h] for b, n in enumerate(st.num_heads) for h in range(n) if np.isfinite(table[b, h])}


@pytest.mark.parametrize("model", ["faces-vit", "faces-swin"])
def test_dots_are_head_stats_of_the_current_image(panel, model):
    _open(panel, model)
    st = head_stats(panel.session.capture, 0)
    for name, _label, _title in PLOTS:
        x, y, keys = _dots(panel, name)
        want = _expected(st, name)
        assert sorted(keys) == sorted(want)  # one dot per real head
        np.testing.assert_array_equal(y, [want[k] for k in keys])
        np.testing.assert_array_equal(np.rint(x), [b for b, _h in keys])  # each dot sits over its block
    if model == "faces-swin":
        assert len(_dots(panel, "prefix_share")[2]) == 0
        assert "not applicable" in panel.notes["prefix_share"].toPlainText()
        assert "within windows" in panel.plots["mean_distance"].titleLabel.text
    else:
        assert panel.notes["prefix_share"].toPlainText() == ""


def test_clicking_a_dot_selects_block_and_head(panel, qtbot):
    _open(panel, "faces-vit")
    v = panel.session.view
    assert (v.block, v.head) == (0, "mean")
    x, y, keys = _dots(panel, "entropy")
    i = keys.index((2, 3))
    vb = panel.plots["entropy"].getViewBox()
    scene = vb.mapViewToScene(QPointF(x[i], y[i]))
    pos = panel.graph.mapFromScene(scene)
    qtbot.mouseClick(panel.graph.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert (v.block, v.head) == (2, 3)
    panel.flush()
    for name, _l, _t in PLOTS:  # the selected dot is ringed in every plot
        rx, ry = panel.rings[name].getData()
        x, y, keys = _dots(panel, name)
        j = keys.index((2, 3))
        assert list(rx) == [x[j]] and list(ry) == [y[j]]
    # the selection made elsewhere moves the ring here
    v.update(block=1, head=0)
    panel.flush()
    x, y, keys = _dots(panel, "mean_distance")
    assert list(panel.rings["mean_distance"].getData()[0]) == [x[keys.index((1, 0))]]


@pytest.fixture
def folder(tmp_path):
    for name in IMAGES:
        shutil.copy(ROOT / "assets/images" / name, tmp_path / name)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return tmp_path


def test_folder_run_shows_means_with_spread_and_lists_bad_files(panel, folder):
    _open(panel, "faces-vit")
    m = panel.session.model
    panel.run_folder(str(folder), batch_size=2)
    panel.flush()
    r = panel.folder_result
    assert r.finished and r.images == 3 and panel.source.currentData() == "folder"
    assert "corrupt.jpg" in panel.folder_note.text() and "skipped 1" in panel.folder_note.text()
    assert panel.progress.value() == panel.progress.maximum() == 4
    per = [head_stats(m.capture(preprocess(load_image(folder / n), m.info.preprocess)), 0) for n in IMAGES]
    for name, _l, _t in PLOTS:
        x, y, keys = _dots(panel, name)
        stack = np.stack([getattr(s, name) for s in per])  # (3, L, H)
        np.testing.assert_allclose(y, [stack[:, b, h].mean() for b, h in keys], rtol=1e-5)
        # error bars: ± the standard deviation over the three images
        bars = panel.bars[name].opts
        np.testing.assert_array_equal(bars["y"], y)
        np.testing.assert_allclose(bars["top"], [stack[:, b, h].std() for b, h in keys], rtol=1e-3, atol=1e-6)
    # back to the current image: the dots are its own statistics again
    panel.source.setCurrentIndex(panel.source.findData("image"))
    panel.flush()
    x, y, keys = _dots(panel, "entropy")
    want = _expected(head_stats(panel.session.capture, 0), "entropy")
    np.testing.assert_array_equal(y, [want[k] for k in keys])
    # a new model drops the folder's means (they belong to the old one)
    panel.session.open_model(str(ROOT / "models/faces-swin.safetensors"))
    panel.source.setCurrentIndex(panel.source.findData("folder"))
    panel.flush()
    assert panel.folder_result is None and len(_dots(panel, "entropy")[2]) == 0
    assert "Choose a folder" in panel.caption.text()


def test_cancel_stops_the_folder_run(panel, folder):
    _open(panel, "faces-vit")
    seen = []
    update = panel._folder_update

    def update_then_cancel(snap):  # the user presses Cancel after the first batch has come in
        seen.append(snap.images)
        update(snap)
        if len(seen) == 1:
            panel.cancel_folder()

    panel._folder_update = update_then_cancel
    panel.run_folder(str(folder), batch_size=1)
    panel.flush()
    r = panel.folder_result
    assert r.cancelled and r.images == 1 and seen[-1] == 1
    assert not panel.runner.running() and panel.folder_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert "cancelled" in panel.folder_note.text() and "cancelled" in panel.caption.text()
    assert len(_dots(panel, "mean_distance")[2]) == sum(r.mean.num_heads)  # the means so far stay drawn


@pytest.mark.parametrize("model", ["faces-vit", "faces-swin"])
def test_token_norm_map_is_the_captures_norms_with_outliers_flagged(panel, model):
    _open(panel, model)
    panel.tabs.setCurrentIndex(1)
    cap = panel.session.capture
    for block in range(len(cap.blocks)):
        panel.session.view.block = block
        panel.flush()
        blk = cap.blocks[block]
        gh, gw = blk.grid_size
        norms = blk.token_norms[0].double().numpy()  # (P + gh*gw,)
        P = cap.num_prefix_tokens
        want = norms[P:].reshape(gh, gw)  # row-major patch (stage-grid) tokens
        np.testing.assert_array_equal(panel.norm_array, want)
        np.testing.assert_array_equal(panel.norm_img.image, want)
        mask = norm_outliers(want).mask
        np.testing.assert_array_equal(panel.outlier_array, mask)
        mx, my = panel.norm_marks.getData()
        rows, cols = np.nonzero(mask)
        np.testing.assert_array_equal(mx, cols + 0.5)
        np.testing.assert_array_equal(my, rows + 0.5)
        assert f"{int(mask.sum())}</b> of {gh * gw}" in panel.norm_text.text()
        if P:
            assert f"cls: {norms[0]:.2f}" in panel.norm_text.text()
        else:
            assert "Swin has no class or register tokens" in panel.norm_text.text()


def test_docked_in_the_window(window, qtbot):
    window.docks["stats"].raise_()  # the lesson tab behind Maps: built when first shown
    panel = window.panel("stats")
    assert isinstance(panel, StatsPanel)
    s = window.session
    s.open_model(str(ROOT / "models/faces-vit.safetensors"))
    s.open_image(str(ROOT / "assets/images/face-02.png"))
    window.flush()
    panel.flush()
    s.view.update(block=3, head=1)  # chosen in another panel's control
    panel.flush()
    x, y, keys = _dots(panel, "mean_distance")
    j = keys.index((3, 1))
    assert list(panel.rings["mean_distance"].getData()[1]) == [y[j]]
    assert y[j] == head_stats(s.capture, 0).mean_distance[3, 1]


def test_folder_run_on_the_worker_thread_streams_to_the_gui(qtbot, folder):
    """The app's set-up: the run goes on the worker thread, its batches arrive through the GUI bridge."""
    from attnviz.qt.bridge import GuiDeliver

    pg.setConfigOptions(imageAxisOrder="row-major")
    bridge = GuiDeliver()
    s = Session(Worker(deliver=bridge), device="cpu")
    p = StatsPanel(s)
    qtbot.addWidget(p)
    p.show()
    s.open_model(str(ROOT / "models/faces-vit.safetensors"))
    s.open_image(str(ROOT / "assets/images/face-01.png"))
    qtbot.waitUntil(lambda: s.capture is not None, timeout=20000)
    seen = []
    update = p._folder_update
    p._folder_update = lambda snap: (seen.append(snap.images), update(snap))
    p.run_folder(str(folder), batch_size=1)
    qtbot.waitUntil(lambda: p.folder_result is not None and p.folder_result.finished, timeout=30000)
    # the GUI picks up the newest snapshot whenever a batch's progress arrives: never older, ends at all three
    assert seen[0] >= 1 and seen == sorted(seen) and seen[-1] == 3 and p.folder_button.isEnabled()
    p.flush()
    assert len(_dots(p, "entropy")[2]) == sum(p.folder_result.mean.num_heads)
    s.worker.shutdown()


def test_head_colours_are_colour_blind_safe_distinct_and_named_in_the_legend(panel):
    """Every head has its own (colour, shape) up to 32 heads, from the Okabe–Ito palette; each dot of all
    three plots wears its head's style, and the legend says these are heads."""
    from attnviz.qt.panels.stats_panel import HEAD_COLOURS, head_style, legend_html

    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}
    assert okabe_ito <= set(HEAD_COLOURS)
    for n in (8, 16, 32):
        styles = [head_style(h)[:2] for h in range(n)]
        assert len(set(styles)) == n  # no two heads look alike
    assert len({head_style(h)[0] for h in range(8)}) == 8  # the first eight differ by colour alone
    assert head_style(8)[0] == head_style(0)[0] and head_style(8)[1] != head_style(0)[1]
    _open(panel, "faces-vit")
    H = max(panel.shown.num_heads)
    text = panel.legend.text()
    assert text == legend_html(H) and text.startswith("heads: ")
    for h in range(H):
        assert f"'color:{head_style(h)[0]}'>{head_style(h)[2]}</span>&nbsp;{h}" in text
    for name, _label, _title in PLOTS:
        for pt in panel.dots[name].points():
            _b, h = pt.data()
            colour, symbol, _glyph = head_style(h)
            assert pt.brush().color().name().upper() == colour.upper()
            assert pt.symbol() == symbol


def test_token_norm_colour_bar_writes_numbers_for_a_tiny_range(panel, monkeypatch):
    """The bar is attnviz's ColorBar over the map's own range; for a range of a few thousandths (where
    pyqtgraph's bar showed a single '0') it still writes distinct numbers spanning that range."""
    import dataclasses

    _open(panel, "faces-vit")
    panel.tabs.setCurrentIndex(1)
    panel.flush()
    m = panel.norm_array
    assert panel.norm_bar.levels == (float(m.min()), float(m.max()))
    real = panel.session.products.get

    def tiny(name, **kw):
        out = real(name, **kw)
        if name == "token_norms":  # the same map squeezed into [0, 0.002]
            out = dataclasses.replace(out, map=(out.map - out.map.min()) / np.ptp(out.map) * 0.002)
        return out

    monkeypatch.setattr(panel.session.products, "get", tiny)
    panel.session.view.block = 1
    panel.flush()
    lo, hi = float(panel.norm_array.min()), float(panel.norm_array.max())
    assert (lo, hi) == (0.0, 0.002) or np.allclose((lo, hi), (0.0, 0.002))
    assert panel.norm_bar.levels == (lo, hi)
    assert_readable_bar(panel.norm_bar, lo, hi)
