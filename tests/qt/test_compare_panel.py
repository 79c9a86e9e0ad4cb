"""The Compare panel: model B beside the main model, following block, head and query (by image position),
the arrays behind both images equal attnviz.analysis, and notes where B cannot follow."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from attnviz.analysis.query import query_attention
from attnviz.nets import ViTConfig
from attnviz.session import Geometry, Patch, Prefix, Session, Worker
from attnviz.session.compare import PrefixedWorker, follow, map_block
from attnviz.session.query import remap_query

ROOT = Path(__file__).resolve().parents[2]
VIT = str(ROOT / "models" / "faces-vit.safetensors")
NOPE = str(ROOT / "models" / "faces-vit-nope.safetensors")
SWIN = str(ROOT / "models" / "faces-swin.safetensors")
FACE = str(ROOT / "assets" / "images" / "face-02.png")


@pytest.fixture
def panel(standalone_panel):
    from attnviz.qt.panels.compare_panel import ComparePanel

    return standalone_panel(ComparePanel, VIT, FACE)


def test_model_b_follows_block_head_and_query_and_draws_its_own_attention(panel):
    s, b = panel.session, panel.b
    assert "choose a demo" in panel.caption_b.text()
    panel.demo.setCurrentIndex(panel.demo.findData(NOPE))
    assert b.capture is not None and b.doc.image is s.doc.image  # the same decoded picture
    s.view.update(block=2, head=3, query=Patch(5, 1))
    panel.flush()
    assert (b.view.block, b.view.head, b.view.query) == (2, 3, Patch(5, 1))
    expect_a = query_attention(s.capture.blocks[2].attn[0], 1 + 5 * 8 + 1, 1, (8, 8))[3]
    expect_b = query_attention(b.capture.blocks[2].attn[0], 1 + 5 * 8 + 1, 1, (8, 8))[3]
    np.testing.assert_allclose(panel.view_a.values, expect_a, atol=1e-12)
    np.testing.assert_allclose(panel.view_b.values, expect_b, atol=1e-12)
    assert not np.allclose(expect_a, expect_b)  # two different networks
    top_b = float(b.capture.logits[0].softmax(-1).max()) * 100
    assert f"{top_b:.1f} %" in panel.pred_b.text()
    assert "as they are" in panel.notes.text()
    # a new image reaches model B too
    s.open_image(str(ROOT / "assets" / "images" / "face-03.png"))
    panel.flush()
    assert b.doc.image is s.doc.image
    np.testing.assert_array_equal(panel.view_b.image.image, b.doc.input_image)


def test_different_depths_and_grids_are_said_and_mapped(panel, checkpoint, qtbot):
    s, b = panel.session, panel.b
    cfg = ViTConfig(img_size=(64, 64), patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_hidden_dim=64,
                    num_classes=3)
    panel.open_b(checkpoint(cfg, "small"))
    s.view.update(block=3, head=3, query=Patch(6, 2))
    panel.flush()
    assert b.view.block == 1 and b.view.head == "mean"  # the last block; it has 2 heads
    assert b.view.query == remap_query(Patch(6, 2), s.geometry, b.geometry) == Patch(3, 1)
    notes = panel.notes.text()
    assert "model B has 2 blocks" in notes and "no head 3" in notes and "16-pixel grid" in notes
    expect = query_attention(b.capture.blocks[1].attn[0], 1 + 3 * 4 + 1, 1, (4, 4)).mean(0)
    np.testing.assert_allclose(panel.view_b.values, expect, atol=1e-12)
    # a click on B picks the patch at the same place in the image as the main query
    pos = panel.view_b.mapFromScene(panel.view_b.vb.mapViewToScene(QPointF(40, 20)))  # x=40, y=20 pixels
    qtbot.mouseClick(panel.view_b.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert s.view.query == remap_query(Patch(1, 2), b.geometry, s.geometry)


def test_a_swin_beside_a_vit_says_it_has_no_class_token(panel):
    s, b = panel.session, panel.b
    panel.open_b(SWIN)
    s.view.update(block=0, head=0, query=Prefix(0))
    panel.flush()
    assert b.view.query == Patch(8, 8)  # Swin's default: the centre patch
    assert "no prefix tokens" in panel.notes.text() and f"has {len(b.capture.blocks)} blocks" in panel.notes.text()
    assert panel.view_b.values is not None and b.capture.family == "swin"


def test_model_b_shares_the_worker_without_superseding_the_main_session():
    seen = []

    class Recording(Worker):
        def submit(self, kind, fn, *a, **k):
            seen.append(kind)
            return super().submit(kind, fn, *a, **k)

    w = Recording(synchronous=True)
    b = Session(PrefixedWorker(w, "compare:"), device="cpu")
    b.open_model(NOPE)
    b.open_image(FACE)
    assert seen == ["compare:model", "compare:image", "compare:capture"] and b.capture is not None


def test_follow_rules_without_qt():
    a = Geometry((224, 224), 16, (14, 14), 1, ("cls",))
    assert map_block(7, 12, 4) == 2 and map_block(11, 12, 4) == 3 and map_block(0, 12, 4) == 0
    assert map_block(5, 6, 6) == 5 and map_block(3, 4, 1) == 0
    f = follow(7, 2, Patch(13, 0), a, 12, a, (6,) * 12)
    assert (f.block, f.head, f.query, f.notes) == (7, 2, Patch(13, 0), [])
    b = Geometry((224, 224), 4, (56, 56), 0, (), "swin")
    f = follow(7, "max", Patch(13, 0), a, 12, b, (3, 3, 6, 6))
    assert f.block == 2 and f.head == "max" and f.query == Patch(54, 2)  # centre of row 13: 13.5·16 = 216 px = row 54 of 4 px
    assert f.notes[0].startswith("model B has 4 blocks")


def _covered(view) -> tuple[float, float, float, float]:
    """The input pixels the heat map is drawn over, as (x, y, width, height)."""
    r = view.heat.mapRectToParent(view.heat.boundingRect())
    return (r.x(), r.y(), r.width(), r.height())


def test_swin_b_map_covers_the_whole_image_after_switching_to_a_stage_2_block(panel):
    """faces-vit (A) beside faces-swin (B): block 0 → B's block 0 (16×16 tokens of 4 px), block 3 → B's
    block 5 (stage 2: 4×4 tokens of 16 px). Both cover the 64×64 input; the second must not be drawn in the
    top-left corner with the first map's 4-px cells."""
    from attnviz.analysis.swin_maps import query_attention_map

    s, b = panel.session, panel.b
    panel.open_b(SWIN)
    s.view.update(block=0, head=0, query=Prefix(0))
    panel.flush()
    assert b.view.query == Patch(8, 8) and panel.view_b.values.shape == (16, 16)
    assert _covered(panel.view_b) == (0.0, 0.0, 64.0, 64.0)
    s.view.block = 3
    panel.flush()
    assert b.view.block == 5 and int(b.capture.blocks[5].stage) == 2
    expect = query_attention_map(b.capture.blocks[5], (8 // 4, 8 // 4), head_fusion=0).numpy()  # (4, 4)
    np.testing.assert_allclose(panel.view_b.values, expect, atol=1e-6)
    assert _covered(panel.view_b) == (0.0, 0.0, 64.0, 64.0)
    assert _covered(panel.view_a) == (0.0, 0.0, 64.0, 64.0)


def test_no_attention_for_b_yet_is_said_not_asserted(panel):
    """Before B's products have a context (or when they are dropped) the panel says so instead of failing."""
    s, b = panel.session, panel.b
    panel.open_b(NOPE)
    panel.flush()
    assert panel.view_b.values is not None
    b.products.set_context(None)
    s.view.head = 1
    panel.flush()
    assert "not ready" in panel.caption_b.text() and panel.view_b.values is None
    assert not s.errors
