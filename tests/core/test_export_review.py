"""The export's review fixes, without Qt: real failures are errors (not a smaller figure), the view file
follows the view state and the position-embedding switch, one atomic writer that never replaces a file
that appeared meanwhile, the panels' own products behind the Swin and position-embedding exports, the
Heads panel's per-tile colour range, distinct window colours, the one colour rule, and one way to say
an error on the command line."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attnviz.errors import one_line, run_reporting
from attnviz.export import arrays as export_arrays
from attnviz.export import command, writing
from attnviz.export.figure import colour, colour_index
from attnviz.export.source import ProductFailed, Source
from attnviz.export.view_file import ViewFile, open_view, view_field_names
from attnviz.export.views import WINDOW_PALETTE, figure_of, view_arrays, window_colours
from attnviz.session import Session, Worker
from attnviz.session.display import levels
from attnviz.session.products import PRODUCTS, Unavailable
from attnviz.session.query import Patch, Prefix, stage_token
from attnviz.session.view_state import ViewState

ROOT = Path(__file__).resolve().parents[2]
VIT = str(ROOT / "models/faces-vit.safetensors")
SWIN = str(ROOT / "models/faces-swin.safetensors")
IMAGE = str(ROOT / "assets/images/face-02.png")


def _session(model=VIT, image=IMAGE) -> Session:
    s = Session(Worker(synchronous=True), device="cpu")
    s.open_model(model)
    s.open_image(image)
    assert s.capture is not None, s.last_error
    return s


@pytest.fixture(scope="module")
def vit_session():
    return _session()


@pytest.fixture(scope="module")
def swin_session():
    return _session(SWIN)


def _boom(*_a, **_k):
    raise RuntimeError("out of memory in the backward pass")


# -- 4: a failed product is an error naming it -------------------------------------------------------


def test_a_failed_product_is_an_error_not_a_smaller_figure(monkeypatch):
    s = _session()
    monkeypatch.setitem(PRODUCTS, "flow", dataclasses.replace(PRODUCTS["flow"], fn=_boom))
    # the session's own path turns the failure into Unavailable (what a panel shows) ...
    assert isinstance(s.products.get("flow"), Unavailable)
    src = Source.of_session(s)
    # ... the export does not take that for "does not apply": it recomputes and says what failed
    for run in (lambda: view_arrays(src, "figure"), lambda: figure_of(src, "figure"),
                lambda: view_arrays(src, "flow")):
        with pytest.raises(ProductFailed, match="attention flow could not be computed: out of memory"):
            run()
    # a view that does not apply is still left out quietly (Swin windows of a ViT), the rest is there
    monkeypatch.setitem(PRODUCTS, "flow", dataclasses.replace(PRODUCTS["flow"], fn=PRODUCTS["rollout"].fn,
                                                              takes_job=False))
    names = [p.name for p in figure_of(Source.of_session(s), "figure").parts]
    assert "flow" in names and "windows" not in names


def test_a_failed_product_on_the_command_line_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(PRODUCTS, "chefer", dataclasses.replace(PRODUCTS["chefer"], fn=_boom))
    out = tmp_path / "f.npz"
    assert command.main(["--model", VIT, "--image", IMAGE, "--view", "figure", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "class relevance" in err and "out of memory" in err
    assert not out.exists()


# -- 21: the input image travels in the Source ---------------------------------------------------------


def test_source_carries_the_input_image_without_touching_the_session(vit_session):
    s = vit_session
    src = Source.of_session(s)
    assert src.input_image is s.doc.input_image
    assert "input_image" not in vars(s.products.context)
    assert src.with_view(block=1).input_image is s.doc.input_image


def test_source_reuses_what_the_app_computed(vit_session, monkeypatch):
    s = vit_session
    done = s.products.get("rollout")  # a synchronous worker computes it now
    monkeypatch.setitem(PRODUCTS, "rollout", dataclasses.replace(PRODUCTS["rollout"], fn=_boom))
    assert Source.of_session(s).get("rollout") is done  # not recomputed


# -- 14: the view file follows ViewState's own fields -------------------------------------------------


def test_view_file_holds_every_view_state_field_but_the_hover():
    names = [f.name for f in dataclasses.fields(ViewState)]
    assert list(view_field_names()) == [n for n in names if n != "hover"]
    d = ViewFile().to_dict()
    assert {("class" if n == "class_idx" else n) for n in view_field_names()} <= set(d)


def test_every_view_field_round_trips(tmp_path, vit_session):
    from attnviz.analysis.options import MixOptions

    s = vit_session
    v = ViewState()
    v.set_limits(s.view.limits)
    v.update(block=2, head="max", query=Patch(3, 1), class_idx=1, method="flow",
             options=MixOptions(alpha=0.3, fusion="max", discard_ratio=0.2), colormap="cividis",
             normalisation="global", scale="log", opacity=0.25, overlay="alpha", smooth=True, show_grid=True)
    vf = ViewFile.of_view(v, model=VIT, image=IMAGE, use_pos_embed=False)
    path = tmp_path / "v.json"
    vf.save(path)
    back = ViewFile.load(path)
    assert back.use_pos_embed is False and json.loads(path.read_text())["class"] == 1
    w = ViewState()
    w.set_limits(s.view.limits)
    back.apply_view(w)
    for n in view_field_names():
        assert getattr(w, n) == getattr(v, n), n


# -- 3: opening a view restores the position-embedding switch -----------------------------------------


def test_view_saved_without_position_embedding_reopens_without_it(tmp_path):
    s = _session()
    switched = []
    s.pos_embed_changed.connect(switched.append)
    s.set_use_pos_embed(False)
    s.view.update(block=3, query=Patch(2, 2))
    path = tmp_path / "nope.json"
    ViewFile.of_session(s).save(path)
    assert json.loads(path.read_text())["use_pos_embed"] is False
    s.set_use_pos_embed(True)
    s.view.update(block=0, query=Prefix(0))
    with_pe = s.capture.blocks[3].attn.clone()
    open_view(s, ViewFile.load(path))  # same model and image: only the switch and the view differ
    assert s.last_error is None
    assert s.doc.use_pos_embed is False and switched == [False, True, False]
    assert s.products.context.use_pos_embed is False
    assert (s.view.block, s.view.query) == (3, Patch(2, 2))
    # the capture really ran without the embedding: the model's own capture of that input, so
    from attnviz.images import load_image, preprocess

    x = preprocess(load_image(IMAGE), s.model.info.preprocess)
    want = s.model.capture(x, use_pos_embed=False).blocks[3].attn
    np.testing.assert_allclose(s.capture.blocks[3].attn.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(with_pe.numpy(), want.numpy(), atol=1e-4)


def test_a_failed_load_leaves_nothing_connected(tmp_path):
    s = _session()
    n_captured, n_error = len(s.captured), len(s.error)
    open_view(s, ViewFile(model=str(tmp_path / "missing.safetensors"), image=IMAGE, block=4))
    assert s.last_error is not None
    assert (len(s.captured), len(s.error)) == (n_captured, n_error)
    s.view.block = 1
    s.open_image(str(ROOT / "assets/images/face-03.png"))  # a later capture does not apply the old view
    assert s.view.block == 1


def test_swin_refuses_a_view_without_position_embedding(tmp_path):
    s = _session(SWIN)
    n_captured = len(s.captured)
    open_view(s, ViewFile(model=SWIN, image=IMAGE, use_pos_embed=False, block=2))
    assert "Swin has no absolute position embedding" in s.last_error
    assert s.doc.use_pos_embed is True and s.view.block != 2 and len(s.captured) == n_captured


# -- 9, 25: one atomic writer -----------------------------------------------------------------------


def test_every_npz_goes_through_write_atomic(tmp_path, monkeypatch):
    from attnviz.export import outputs

    seen = []
    real = writing.write_atomic
    monkeypatch.setattr(writing, "write_atomic", lambda path, fn, force=False: (seen.append(Path(path).name),
                                                                                 real(path, fn, force)))
    export_arrays.write_npz(tmp_path / "a.npz", {"x": np.zeros(2)})
    outputs.write_arrays(tmp_path / "b.npz", {"x": np.zeros(2)})
    assert seen == ["a.npz", "b.npz"]
    assert not hasattr(export_arrays, "_umask") and not hasattr(export_arrays, "tempfile")


def test_a_file_that_appears_while_writing_is_never_replaced(tmp_path):
    target = tmp_path / "f.json"

    def write(tmp: str) -> None:
        Path(tmp).write_text("new")
        target.write_text("someone else's")  # appears after the check, before the move

    with pytest.raises(FileExistsError, match="the file exists"):
        writing.write_atomic(target, write)
    assert target.read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temporary file left
    writing.write_atomic(target, lambda tmp: Path(tmp).write_text("forced"), force=True)
    assert target.read_text() == "forced"
    writing.write_atomic(tmp_path / "g.json", lambda tmp: Path(tmp).write_text("g"))
    assert (tmp_path / "g.json").read_text() == "g" and len(list(tmp_path.iterdir())) == 2


# -- 12: the Swin and position-embedding exports are the panels' products -------------------------------


def test_pos_embed_export_is_the_panels_product(vit_session):
    src = Source.of_session(vit_session)
    sim = view_arrays(src, "pos-embed")["similarity"]
    np.testing.assert_array_equal(sim, src.products.get("pos_similarity").sim.astype(np.float32))


def test_swin_windows_are_the_panels_products_and_markers_use_stage_tokens(swin_session):
    s = swin_session
    last = len(s.capture.blocks) - 1
    s.view.update(block=last, query=Patch(7, 5))
    src = Source.of_session(s)
    a = view_arrays(src, "windows")
    w = src.products.get("swin_windows")
    np.testing.assert_array_equal(a["window_index"], w.pixel_window)
    b = s.capture.blocks[last]
    overlay = figure_of(src, "overlay").parts[0].tiles[0]
    assert overlay.marker == (*stage_token(Patch(7, 5), b), 1) and b.stage > 0


# -- 23: heads tiles like the Heads panel ------------------------------------------------------------


@pytest.mark.parametrize("norm", ["map", "block", "global"])
def test_heads_tiles_each_from_zero_to_their_own_maximum(vit_session, norm):
    s = vit_session
    s.view.update(block=1, query=Patch(1, 4), normalisation=norm)
    src = Source.of_session(s)
    maps = view_arrays(src, "heads")["maps"].astype(np.float64)
    part, = figure_of(src, "heads").parts
    assert "own maximum" in part.title
    for m, tile in zip(maps, part.tiles):
        assert tile.levels == levels(m, "linear") == (0.0, float(m.max()))
    s.view.update(normalisation="map")


# -- 24: window colours ---------------------------------------------------------------------------


def test_neighbouring_windows_never_share_a_colour(swin_session):
    s = swin_session
    palette = {tuple(c) for c in WINDOW_PALETTE}
    assert len(palette) == len(WINDOW_PALETTE) == 7
    for block in range(len(s.capture.blocks)):
        g = s.capture.blocks[block].geometry
        rows, cols = g.padded_size[0] // g.window_size, g.windows_per_row
        index = np.arange(rows * cols).reshape(rows, cols)  # (rows, cols) one cell per window
        rgb = window_colours(index, -2, cols).astype(int)  # (rows, cols, 3)
        assert (np.abs(rgb[:, 1:] - rgb[:, :-1]).sum(-1) > 0).all()  # side by side
        assert (np.abs(rgb[1:] - rgb[:-1]).sum(-1) > 0).all()  # stacked
        assert (np.abs(rgb[1:, 1:] - rgb[:-1, :-1]).sum(-1) > 0).all()  # diagonal
    shown = window_colours(np.array([[0, 1], [-1, 3]]), 3, 2)
    assert tuple(shown[1, 1]) == (80, 220, 255) and tuple(shown[1, 0]) == (0, 0, 0)


# -- 8: the colour rule, NaN and the infinities ---------------------------------------------------------


def test_colour_rule_clips_infinities_and_hides_nan():
    lv = (0.0, 2.0)
    v = np.array([[-np.inf, -1.0, 0.0, 0.0078125, 1.0, 2.0, 5.0, np.inf, np.nan]])
    np.testing.assert_array_equal(colour_index(v, lv), [[0, 0, 0, 1, 128, 255, 255, 255, -1]])
    # a flat range is widened like display.levels widens a flat map's
    np.testing.assert_array_equal(colour_index(np.array([3.0, 3.5, 9.0]), (3.0, 3.0)), [0, 128, 255])
    lut = np.stack([np.arange(256)] * 3 + [np.full(256, 255)], axis=1).astype(np.uint8)  # (256, 4)
    rgba = colour(v, lv, lut)
    assert rgba[0, 0, 3] == 255 and rgba[0, 7, 0] == 255 and rgba[0, 8, 3] == 0


# -- 13: one way to say an error ----------------------------------------------------------------------


def test_one_line_and_run_reporting(capsys, monkeypatch):
    assert one_line(ValueError("a\n  b\tc")) == "a b c"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(OSError("x\ny"), with_type=True, first_line=True) == "OSError: x"
    assert run_reporting(lambda a: None, None) == 0 and run_reporting(lambda a: 3, None) == 3

    def fail(_a):
        raise RuntimeError("it broke\n badly")

    monkeypatch.delenv("ATTNVIZ_DEBUG", raising=False)
    assert run_reporting(fail, None) == 1
    assert capsys.readouterr().err == "attnviz: error: it broke badly\n"


def test_the_command_lines_share_the_error_rule():
    from attnviz import cli
    from attnviz.checkpoints import browse

    for mod in (cli, command):
        assert "def _one_line" not in Path(mod.__file__).read_text()
    assert "one_line(" in Path(browse.__file__).read_text()


# -- 18, 19: the session's folder and scramble rules --------------------------------------------------


def test_folder_listing_and_batch_size_are_the_sessions(tmp_path):
    from attnviz.session.folder_stats import image_files

    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert command.list_images(str(tmp_path)) == image_files(str(tmp_path))
    with pytest.raises(command.ExportError, match="no such folder"):
        command.list_images(str(tmp_path / "nope"))
    assert "32 if" not in Path(command.__file__).read_text()


def test_dump_scramble_window_is_the_apps(swin_session):
    from attnviz.cli import default_scramble_window
    from attnviz.session.scramble_state import default_window

    s = swin_session
    grid = tuple(s.capture.grid_size)
    assert default_scramble_window(s.model, grid) == default_window(s.capture)
    assert default_scramble_window(s.model, (2, 2)) == 2  # a grid no larger than the window is one window


# -- 20: the export package is Qt-free ------------------------------------------------------------------


def test_export_imports_neither_qt_nor_torch_for_the_parser():
    code = ("import sys, attnviz.export.command; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'torch', 'pyqtgraph')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"
    # and no module of the package imports Qt, even when everything is loaded
    code = ("import sys, pkgutil, importlib, attnviz.export as e; "
            "[importlib.import_module('attnviz.export.' + m.name) for m in pkgutil.iter_modules(e.__path__)]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph') or "
            "m.startswith('attnviz.qt')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_figures_without_a_renderer_say_so(vit_session, tmp_path):
    from attnviz.export.outputs import write_view

    with pytest.raises(ValueError, match="needs a figure renderer"):
        write_view(Source.of_session(vit_session), "overlay", tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()
