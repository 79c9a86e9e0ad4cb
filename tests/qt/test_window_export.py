"""The window's File menu reaches the exporters: Save view → Open view reopens the same view, Export arrays
writes the arrays of the shown state, and a failing export is a message, not a crash."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog

from attnviz.session.query import Patch

ROOT = Path(__file__).resolve().parents[2]


def _open(window, model="faces-vit", image="face-02.png"):
    window.session.open_model(str(ROOT / "models" / f"{model}.safetensors"))
    window.session.open_image(str(ROOT / "assets" / "images" / image))
    window.flush()


def _action(window, text: str):
    menus = {a.text(): a.menu() for a in window.menuBar().actions()}
    for a in menus["&File"].actions():
        if a.text() == text:
            return a
    raise AssertionError(f"no File action {text!r}")


def test_save_view_then_open_view_restores_it(window, tmp_path, monkeypatch):
    _open(window)
    v = window.session.view
    v.update(block=2, head=1, query=Patch(3, 5), method="rollout", colormap="viridis")
    target = tmp_path / "view.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "attnviz view (*.json)"))
    _action(window, "&Save view…").trigger()
    saved = json.loads(target.read_text())
    assert Path(saved["model"]).name == "faces-vit.safetensors"

    v.update(block=0, head="mean", query=Patch(0, 0), method="attention", colormap="inferno")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(target), ""))
    _action(window, "Open &view…").trigger()
    window.flush()
    assert (v.block, v.head, v.query, v.method, v.colormap) == (2, 1, Patch(3, 5), "rollout", "viridis")
    assert window.error_log == []


def test_export_arrays_writes_the_overlay_of_the_current_state(window, tmp_path, monkeypatch):
    from attnviz.analysis.query import query_attention

    _open(window)
    v = window.session.view
    v.update(block=1, head=2, query=Patch(4, 4))
    target = tmp_path / "arrays.npz"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "NumPy arrays (*.npz)"))
    _action(window, "Export a&rrays…").trigger()
    with np.load(target) as z:
        cap = window.session.capture
        g = window.session.geometry
        token = g.num_prefix_tokens + 4 * g.grid_size[1] + 4
        want = query_attention(cap.blocks[1].attn[0], token, g.num_prefix_tokens, g.grid_size)[2]  # (gh, gw)
        np.testing.assert_allclose(z["overlay.map"], want, rtol=0, atol=1e-6)


def test_a_failing_export_is_reported(window, tmp_path, monkeypatch):
    _open(window)
    target = tmp_path / "missing-folder" / "arrays.npz"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "NumPy arrays (*.npz)"))
    _action(window, "Export a&rrays…").trigger()
    assert not target.exists()
    assert window.session.errors, "the failure should be in the window"
    assert "arrays.npz" in window.session.errors[-1].message


def test_the_anatomy_panel_exports_what_it_draws(window, tmp_path):
    """Export of the Attention anatomy panel (its own view, chosen when that dock is the current one): the
    arrays equal the panel's stage maps, and a PNG of it is written."""
    from attnviz.qt import export_dialog

    _open(window)
    window.session.view.update(block=2, head=1, query=Patch(3, 3))
    panel = window.panel("anatomy")
    window.docks["anatomy"].raise_()
    window.flush()
    assert export_dialog.panel_view("anatomy", window.session) == "anatomy"
    target = tmp_path / "anatomy.npz"
    assert export_dialog.export_arrays(window, window.session, view="anatomy", path=str(target))
    with np.load(target) as z:
        for key in ("scores", "probs", "contrib"):
            np.testing.assert_allclose(z[key], panel.arrays[key], rtol=0, atol=1e-6)
        np.testing.assert_allclose(z["prefix_probs"], panel.prefix_arrays["probs"], atol=1e-6)
    png = tmp_path / "anatomy.png"
    from attnviz.export.outputs import write_view
    from attnviz.export.source import Source
    from attnviz.qt.figures.render import RENDERER

    write_view(Source.of_session(window.session), "anatomy", png, renderer=RENDERER)
    assert png.stat().st_size > 1000 and window.error_log == []


def test_the_scramble_panel_exports_its_pair(window, tmp_path):
    """Export of the Scramble panel reuses the panel's own scrambled capture: the arrays equal both maps it
    draws, with its settings (a seeded within-window scramble) and the permutation it applied."""
    from attnviz.qt import export_dialog

    _open(window)
    window.session.view.update(block=3, head=0, query=Patch(3, 3))
    panel = window.panel("scramble")
    window.docks["scramble"].raise_()
    window.session.scramble.set_kind("window")
    window.session.scramble.set_seed(4)
    window.flush()
    pair = window.session.scrambled
    assert pair is not None
    assert export_dialog.panel_view("scramble", window.session) == "scramble"
    target = tmp_path / "scramble.npz"
    assert export_dialog.export_arrays(window, window.session, view="scramble", path=str(target))
    with np.load(target) as z:
        np.testing.assert_array_equal(z["permutation"], pair.permutation.numpy())
        np.testing.assert_allclose(z["map"], panel.map_a.values, atol=1e-6)
        np.testing.assert_allclose(z["scrambled_map"], panel.map_b.values, atol=1e-6)
    assert window.error_log == []
