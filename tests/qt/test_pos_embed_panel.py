"""Position embeddings panel: the arrays behind its images and curves equal attnviz.analysis for the state
shown; clicking a tile selects that patch as the query everywhere; models without a learned absolute
embedding get an explanation instead of an empty view."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, Qt

from attnviz.analysis.pos_embed import (
    distance_rank_correlation,
    position_similarity,
    similarity_by_distance,
    sincos_2d_position_embedding,
    vit_position_similarity,
)
from attnviz.nets import ViTConfig
from attnviz.qt.widgets.colorize import colorize
from attnviz.qt.widgets.overlay import lookup_table
from attnviz.session.query import Patch, Prefix

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
FACE = str(ROOT / "assets" / "images" / "face-01.png")


@pytest.fixture
def session():
    import pyqtgraph as pg

    from attnviz.session import Session, Worker

    pg.setConfigOptions(imageAxisOrder="row-major")
    return Session(Worker(synchronous=True), device="cpu")


def _panel(qtbot, session, model: str, image: str = FACE, img_size=None):
    from attnviz.qt.panels.pos_embed_panel import PosEmbedPanel

    p = PosEmbedPanel(session)
    qtbot.addWidget(p)
    p.resize(760, 680)
    p.show()
    session.open_model(model, img_size) if img_size else session.open_model(model)
    session.open_image(image)
    assert session.capture is not None, session.last_error
    p.flush()
    return p


def _mosaic_by_hand(sim: np.ndarray) -> np.ndarray:
    """Tile (r, c) = sim[r, c] at rows r*(gh+1).., columns c*(gw+1)..; NaN in the one-pixel gaps."""
    gh, gw = sim.shape[:2]
    out = np.full((gh * (gh + 1) - 1, gw * (gw + 1) - 1), np.nan)
    for r in range(gh):
        for c in range(gw):
            out[r * (gh + 1): r * (gh + 1) + gh, c * (gw + 1): c * (gw + 1) + gw] = sim[r, c]
    return out


def _click_tile(qtbot, panel, r: int, c: int) -> None:
    gh, gw = panel.data.grid
    scene = panel.grid_vb.mapViewToScene(QPointF(c * (gw + 1) + gw / 2, r * (gh + 1) + gh / 2))
    widget = panel.canvas.mapFromScene(scene)
    qtbot.mouseClick(panel.canvas.viewport(), Qt.MouseButton.LeftButton, pos=widget)


def test_grid_tile_and_curves_equal_analysis_for_faces_vit(qtbot, session):
    p = _panel(qtbot, session, str(MODELS / "faces-vit.safetensors"))
    net = session.model.net
    sim = vit_position_similarity(net, (8, 8)).double().numpy()  # (8, 8, 8, 8)
    assert p.data.grid == (8, 8) and not p.data.resampled
    np.testing.assert_allclose(p.grid_array, _mosaic_by_hand(sim), atol=1e-6, equal_nan=True)
    assert np.array_equal(np.isnan(p.grid_array), np.isnan(_mosaic_by_hand(sim)))
    # the pixels drawn are that mosaic through the colormap (gaps transparent), on a −1..1 bar
    lut = lookup_table(session.view.colormap, False)
    np.testing.assert_array_equal(p.grid_img.image, colorize(p.grid_array, (-1.0, 1.0), lut))
    assert p.bar.levels == (-1.0, 1.0) and p.bar.labels[0] and p.bar.labels[-1]
    # a new query moves the outline and the enlarged tile; the mosaic is not coloured again
    before, query = p.grid_img.image, session.view.query
    session.view.query = Patch(2, 5)
    p.flush()
    assert p.grid_img.image is before
    np.testing.assert_array_equal(p.tile_img.image, colorize(sim[2, 5], (-1.0, 1.0), lut))
    session.view.query = query
    p.flush()
    # the curve: mean per distance as similarity_by_distance computes it; spread is a standard deviation
    d_ref, m_ref = similarity_by_distance(torch.from_numpy(sim))
    d, mean, std = p.curve_arrays["learned"]
    np.testing.assert_allclose(d, d_ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(mean, m_ref.numpy(), atol=1e-6)
    assert (std >= 0).all() and std.max() > 0
    xs, ys = p.curves["learned"][0].getData()
    np.testing.assert_allclose(ys, m_ref.numpy(), atol=1e-6)
    assert p.data.learned.rank_correlation == pytest.approx(distance_rank_correlation(torch.from_numpy(sim)))
    # the comparison: a fixed 2-D sin-cos embedding of the model's width on the same grid
    ref = position_similarity(sincos_2d_position_embedding(64, (8, 8)), (8, 8))
    np.testing.assert_allclose(p.curve_arrays["sincos"][1], similarity_by_distance(ref)[1].numpy(), atol=1e-6)
    assert f"{p.data.learned.rank_correlation:+.2f}" in p.curve_plot.titleLabel.text
    # the class token is the default query: no tile is enlarged until a patch is picked
    assert isinstance(session.view.query, Prefix) and p.tile_array is None and not p.grid_sel.isVisible()


def test_clicking_a_tile_selects_that_patch_everywhere_and_enlarges_it(qtbot, session):
    p = _panel(qtbot, session, str(MODELS / "faces-vit.safetensors"))
    sim = vit_position_similarity(session.model.net, (8, 8)).double().numpy()
    for r, c in ((2, 5), (7, 0)):
        _click_tile(qtbot, p, r, c)
        assert session.view.query == Patch(r, c)
        p.flush()
        np.testing.assert_allclose(p.tile_array, sim[r, c], atol=1e-6)  # the query's row of the grid
        rect = p.grid_sel.rect()
        assert (rect.x(), rect.y()) == (c * 9 - 0.5, r * 9 - 0.5) and p.grid_sel.isVisible()
        assert p.tile_sel.rect().x() == c and p.tile_sel.rect().y() == r
        assert f"patch ({r}, {c})" in p.tile_title.text
    # a query picked elsewhere (another panel) is followed too
    session.view.query = Patch(4, 3)
    p.flush()
    np.testing.assert_allclose(p.tile_array, sim[4, 3], atol=1e-6)


def test_embedding_is_shown_as_resampled_to_the_current_grid(qtbot, session, checkpoint, image_path):
    cfg = ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=32, depth=1, num_heads=2, mlp_hidden_dim=32,
                    num_classes=3)
    p = _panel(qtbot, session, checkpoint(cfg, "vit-small-grid"), image_path, img_size=48)
    assert session.capture.grid_size == (6, 6)
    sim = vit_position_similarity(session.model.net, (6, 6)).double().numpy()  # bicubic from 4x4, as the net
    assert p.data.trained_grid == (4, 4) and p.data.resampled
    np.testing.assert_allclose(p.grid_array, _mosaic_by_hand(sim), atol=1e-6, equal_nan=True)
    assert "resampled" in p.caption.text() and "4×4" in p.caption.text()
    _click_tile(qtbot, p, 5, 1)
    assert session.view.query == Patch(5, 1)


@pytest.mark.parametrize("name, says", [("faces-vit-nope", "no position embedding at all"),
                                        ("faces-swin", "relative position bias"),
                                        ("faces-swinv2", "continuous position bias")])
def test_models_without_learned_embedding_get_an_explanation(qtbot, session, name, says):
    p = _panel(qtbot, session, str(MODELS / f"{name}.safetensors"))
    assert p.message.isVisible() and says in p.message.text()
    assert "Swin windows" in p.message.text()
    assert not p.canvas.isVisible() and p.grid_array is None and p.data is None


def test_docked_panel_follows_model_changes_and_points_to_the_swin_panel(qtbot, window):
    from attnviz.qt.panels.pos_embed_panel import PosEmbedPanel

    window.docks["posembed"].raise_()  # the lesson dock behind Maps, built when first shown
    p = window.panel("posembed")
    assert isinstance(p, PosEmbedPanel)
    s = window.session
    s.open_model(str(MODELS / "faces-vit.safetensors"))
    s.open_image(FACE)
    p.flush()
    assert p.grid_array is not None and not p.canvas.isHidden()
    s.open_model(str(MODELS / "faces-swin.safetensors"))
    p.flush()
    assert not p.message.isHidden() and p.grid_array is None
    assert not p.to_swin.isHidden()  # the window has a Swin windows dock: the button raises it
    qtbot.mouseClick(p.to_swin, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.docks["swin"].visibleRegion().isEmpty(), timeout=3000)
    window.docks["posembed"].raise_()
    s.open_model(str(MODELS / "faces-vit.safetensors"))
    p.flush()
    assert not p.canvas.isHidden() and p.message.isHidden() and p.to_swin.isHidden()
    gh, gw = p.data.grid
    assert p.grid_array.shape == (gh * (gh + 1) - 1, gw * (gw + 1) - 1)
    assert math.isnan(p.grid_array[gh, 0])  # the gap row between tile rows


def test_embedding_left_out_of_the_capture_is_shown_and_says_so(qtbot, session):
    p = _panel(qtbot, session, str(MODELS / "faces-vit.safetensors"))
    before = p.grid_array.copy()
    session.set_use_pos_embed(False)  # the scramble lesson's switch: this capture runs without it
    p.flush()
    assert session.capture is not None and not session.products.context.use_pos_embed
    assert "switched off" in p.caption.text() and not p.data.applied
    np.testing.assert_array_equal(p.grid_array, before)  # the embedding itself is unchanged


def test_computed_on_the_worker_thread_and_drawn_when_ready(qtbot):
    """The app's set-up: the product is ranked on the worker thread; the panel says so, then draws it."""
    import pyqtgraph as pg

    from attnviz.qt.bridge import GuiDeliver
    from attnviz.qt.panels.pos_embed_panel import PosEmbedPanel
    from attnviz.session import Session, Worker

    pg.setConfigOptions(imageAxisOrder="row-major")
    s = Session(Worker(deliver=GuiDeliver()), device="cpu")
    p = PosEmbedPanel(s)
    qtbot.addWidget(p)
    p.show()
    s.open_model(str(MODELS / "faces-vit.safetensors"))
    s.open_image(FACE)
    qtbot.waitUntil(lambda: p.grid_array is not None, timeout=30000)
    sim = vit_position_similarity(s.model.net, (8, 8)).double().numpy()
    np.testing.assert_allclose(p.grid_array, _mosaic_by_hand(sim), atol=1e-6, equal_nan=True)
    s.worker.shutdown()
