"""Exported figures open in independent readers (Pillow, xml.etree, pdftoppm, OpenCV), their heat-map
pixels are the exported array passed through the colormap, and a view state round-trips through JSON."""
from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from attnviz.export import command
from attnviz.export.figure import colour_index
from attnviz.export.outputs import write_view
from attnviz.export.source import Source
from attnviz.export.views import figure_of, view_arrays
from attnviz.qt.figures import RENDERER
from attnviz.session import Session, Worker
from attnviz.session.query import Patch, Prefix
from attnviz.session.shown import shown_map

ROOT = Path(__file__).resolve().parents[2]
VIT = str(ROOT / "models/faces-vit.safetensors")
SWIN = str(ROOT / "models/faces-swin.safetensors")
IMAGE = str(ROOT / "assets/images/face-01.png")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def session(qapp):
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major")
    s = Session(Worker(synchronous=True), device="cpu")
    s.open_model(VIT)
    s.open_image(IMAGE)
    assert s.capture is not None, s.last_error
    return s


def _lut(name: str) -> np.ndarray:
    from attnviz.qt.widgets.overlay import lookup_table

    return lookup_table(name, False)


def _expected(values: np.ndarray, lv, lut: np.ndarray, cell: int) -> np.ndarray:
    """Independent of the renderer: each value's LUT colour (pyqtgraph's 256-entry rule), cell×cell."""
    lo, hi = lv
    idx = np.clip(np.floor((values - lo) * 256.0 / (hi - lo)), 0, 255).astype(int)
    return np.repeat(np.repeat(lut[idx][..., :3], cell, 0), cell, 1)


def test_png_heat_map_pixels_equal_the_array_through_the_colormap(session, tmp_path):
    from attnviz.qt.figures.render import to_qimage

    session.view.update(block=2, query=Prefix(0), colormap="viridis", normalisation="block")
    src = Source.of_session(session)
    maps = view_arrays(src, "heads")["maps"].astype(np.float64)  # (heads, gh, gw)
    placed: list = []
    to_qimage(figure_of(src, "heads"), (900, 700), placed=placed)
    assert len(placed) == maps.shape[0]
    out = tmp_path / "heads.png"
    write_view(src, "heads", out, size=(900, 700), renderer=RENDERER)
    png = np.asarray(Image.open(out).convert("RGB"))  # decoded by Pillow, not Qt
    assert png.shape == (700, 900, 3)
    lut = _lut("viridis")
    for _part, h, rect, cell in placed:
        assert cell >= 2
        x, y, w, hh = int(rect.x()), int(rect.y()), int(rect.width()), int(rect.height())
        # each tile from 0 to its own maximum, as the Heads panel draws it (whatever the normalisation)
        lv = (0.0, float(maps[h].max()))
        np.testing.assert_array_equal(png[y:y + hh, x:x + w], _expected(maps[h], lv, lut, cell))
    # the overlay at full opacity is the map's colours over its patches
    session.view.update(opacity=1.0, normalisation="map", colormap="magma")
    src = Source.of_session(session)
    placed = []
    img = to_qimage(figure_of(src, "overlay"), (700, 600), placed=placed)
    (_p, _i, rect, cell), = placed
    m = view_arrays(src, "overlay")["map"].astype(np.float64)
    shown = shown_map(session)
    np.testing.assert_allclose(m, shown.values, rtol=1e-6)  # what the Image panel colours
    rgb = img.convertToFormat(img.Format.Format_RGB888)
    arr = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine())[:, : 3 * rgb.width()]
    arr = arr.reshape(rgb.height(), rgb.width(), 3)
    x, y = int(rect.x()), int(rect.y())
    px = session.geometry.patch_size * cell
    want = _expected(m, shown.levels, _lut("magma"), px)
    np.testing.assert_array_equal(arr[y:y + want.shape[0], x:x + want.shape[1]], want)
    assert colour_index(np.array([shown.levels[1]]), shown.levels)[0] == 255


def test_png_at_size_and_dpi(session, tmp_path):
    from attnviz.qt.figures.render import natural_size

    src = Source.of_session(session)
    write_view(src, "figure", tmp_path / "a.png", size=(1234, 777), renderer=RENDERER)
    assert Image.open(tmp_path / "a.png").size == (1234, 777)
    write_view(src, "overlay", tmp_path / "b.png", dpi=192, renderer=RENDERER)
    w, h = natural_size(figure_of(src, "overlay"))
    im = Image.open(tmp_path / "b.png")
    assert im.size == (2 * w, 2 * h)
    assert round(im.info["dpi"][0]) == 192


def test_svg_keeps_text_and_embeds_images(session, tmp_path):
    session.view.update(block=1, head=2, query=Patch(2, 3))
    out = tmp_path / "f.svg"
    write_view(Source.of_session(session), "figure", out, renderer=RENDERER)
    root = ET.parse(out).getroot()  # parses as XML
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    assert "faces" in texts and "block 1" in texts and "head 2" in texts and "patch (2, 3)" in texts
    assert "Rollout" in texts and "cosine similarity" in texts  # part titles and colour-bar labels
    images = list(root.iter(f"{SVG}image"))
    assert len(images) >= 8
    href = images[0].get("{http://www.w3.org/1999/xlink}href") or images[0].get("href")
    assert href.startswith("data:image/png;base64,")


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed")
def test_pdf_renders_with_poppler(session, tmp_path):
    out = tmp_path / "f.pdf"
    write_view(Source.of_session(session), "figure", out, renderer=RENDERER)
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-singlefile", str(out), str(tmp_path / "page")], check=True,
                   capture_output=True, timeout=60)
    page = np.asarray(Image.open(tmp_path / "page.png").convert("RGB")).astype(int)
    assert page.shape[0] > 100 and page.shape[1] > 100
    assert (np.abs(page[..., 0] - page[..., 2]) > 60).mean() > 0.05  # colour heat maps, not a blank page
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, timeout=60).stdout
        assert "faces" in text and "Rollout" in text  # text stays text


def test_gif_and_mp4_have_a_frame_per_block(session, tmp_path):
    src = Source.of_session(session)
    n = session.view.limits.num_blocks
    write_view(src, "overlay", tmp_path / "a.gif", size=(400, 300), renderer=RENDERER)
    gif = Image.open(tmp_path / "a.gif")
    assert gif.n_frames == n and gif.size == (400, 300)
    write_view(src, "heads", tmp_path / "a.mp4", size=(480, 360), renderer=RENDERER)
    cap = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (360, 480, 3)
        frames += 1
    assert frames == n
    write_view(src, "overlay", tmp_path / "heads.gif", size=(400, 300), step="head", renderer=RENDERER)
    assert Image.open(tmp_path / "heads.gif").n_frames == session.view.heads_of_block()
    # frames differ: each block's own map
    gif.seek(0)
    first = np.asarray(gif.convert("RGB"))
    gif.seek(n - 1)
    assert not np.array_equal(first, np.asarray(gif.convert("RGB")))


def test_cli_writes_figures_headless(tmp_path, qapp):
    out = tmp_path / "swin.png"
    assert command.main(["--model", SWIN, "--image", IMAGE, "--view", "figure", "--query", "3,3", "--size",
                         "1500x1100", "--out", str(out)]) == 0
    assert Image.open(out).size == (1500, 1100)
    folder = tmp_path / "batch"
    src = tmp_path / "in"
    src.mkdir()
    for name in ("face-01.png", "face-02.png", "none-01.png"):
        shutil.copy(ROOT / "assets/images" / name, src / name)
    assert command.main(["--model", VIT, "--images", str(src), "--view", "overlay", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["face-01.png", "face-02.png", "none-01.png"]
    assert all(Image.open(p).format == "PNG" for p in folder.iterdir())


def test_view_round_trips_through_json(window, tmp_path, monkeypatch):
    from attnviz.analysis.options import MixOptions
    from attnviz.qt import export_dialog

    s = window.session
    s.open_model(VIT)
    s.open_image(IMAGE)
    s.view.update(block=3, head=1, query=Patch(4, 2), method="rollout", colormap="cividis", scale="log",
                  options=MixOptions(alpha=0.7, fusion="min"), opacity=0.4)
    window.flush()
    before = {k: getattr(s.view, k) for k in ("block", "head", "query", "method", "colormap", "scale", "options")}
    shown = shown_map(s).values.copy()
    path = tmp_path / "view.json"
    assert export_dialog.save_view(window, s, str(path))
    # the app moves elsewhere, then opens the view again
    s.open_image(str(ROOT / "assets/images/none-03.png"))
    s.view.update(block=0, head="mean", method="attention", colormap="inferno", scale="linear",
                  options=MixOptions())
    assert not np.allclose(shown_map(s).values, shown) if shown_map(s).values.shape == shown.shape else True
    assert export_dialog.open_view(window, s, str(path))
    window.flush()
    assert {k: getattr(s.view, k) for k in before} == before
    np.testing.assert_array_equal(shown_map(s).values, shown)
    np.testing.assert_array_equal(window.panels["image"].view.values, np.log10(np.maximum(
        shown, shown.max() * 1e-4)))  # the Image panel draws the same map (log scale)
    # JSON -> CLI writes the arrays the app exports
    app_npz, cli_npz = tmp_path / "app.npz", tmp_path / "cli.npz"
    assert export_dialog.export_arrays(window, s, "figure", str(app_npz))
    assert command.main(["--state", str(path), "--view", "figure", "--out", str(cli_npz)]) == 0
    a, b = np.load(app_npz), np.load(cli_npz)
    assert set(a.files) == set(b.files)
    for k in a.files:
        if k != "meta":
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_dialog_exports_chosen_views_and_confirms_overwrite(session, tmp_path, qtbot, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from attnviz.qt.export_dialog import ExportDialog, confirm_overwrite, copy_figure

    dlg = ExportDialog(session, view="figure")
    qtbot.addWidget(dlg)
    for name, box in dlg.parts.items():
        box.setChecked(name in ("overlay", "stats"))
    dlg.by_px.setChecked(True)
    dlg.width_px.setValue(800)
    dlg.height_px.setValue(500)
    out = tmp_path / "two.svg"
    assert dlg.export_to(str(out))
    texts = " ".join("".join(t.itertext()) for t in ET.parse(out).getroot().iter(f"{SVG}text"))
    assert "Attention of the" in texts and "Mean attention distance" in texts and "Rollout" not in texts
    # an existing file: the app asks, and a "No" keeps it
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert not confirm_overwrite(None, str(out))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert confirm_overwrite(None, str(out))
    # a view that does not apply is reported, the app goes on
    dlg.view.setCurrentIndex(dlg.view.findData("windows"))
    assert not dlg.export_to(str(tmp_path / "w.png"))
    assert "Swin" in session.last_error and not (tmp_path / "w.png").exists()
    assert copy_figure(None, session, "overlay")
    from PySide6.QtGui import QGuiApplication

    assert not QGuiApplication.clipboard().image().isNull()


def test_selected_panel_maps_to_its_view(session):
    from attnviz.qt.export_dialog import panel_view

    assert panel_view("heads", session) == "heads"
    session.view.method = "grad_rollout"
    assert panel_view("image", session) == "relevance"
    session.view.method = "attention"
    assert panel_view("image", session) == "overlay"
