"""The app's exports compute on the session's worker (which owns the model), never on the GUI thread, and
write on the GUI thread once the worker is done; Cancel stops them and nothing is written."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz.session import Session, Worker
from attnviz.session.products import PRODUCTS
from attnviz.session.query import Patch

ROOT = Path(__file__).resolve().parents[2]
VIT = str(ROOT / "models/faces-vit.safetensors")
IMAGE = str(ROOT / "assets/images/face-01.png")


@pytest.fixture
def threaded(qapp, qtbot):
    """A session whose worker is a real thread, its results delivered on the GUI thread (as in the app)."""
    import pyqtgraph as pg

    from attnviz.qt.bridge import GuiDeliver

    pg.setConfigOptions(imageAxisOrder="row-major")
    s = Session(Worker(deliver=GuiDeliver()), device="cpu")
    s.open_model(VIT)
    qtbot.waitUntil(lambda: s.model is not None or s.last_error is not None, timeout=60000)
    s.open_image(IMAGE)
    qtbot.waitUntil(lambda: s.capture is not None or s.last_error is not None, timeout=60000)
    assert s.capture is not None, s.last_error
    yield s
    s.worker.shutdown()


def _recording(name: str, threads: list, gate: threading.Event | None = None):
    spec = PRODUCTS[name]

    def fn(ctx, **kw):
        threads.append(threading.current_thread())
        if gate is not None:
            gate.wait(30)
        return spec.fn(ctx, **kw)

    return dataclasses.replace(spec, fn=fn)


def test_arrays_and_figures_compute_on_the_worker_and_write_on_the_gui_thread(threaded, qtbot, tmp_path,
                                                                              monkeypatch):
    from attnviz.analysis.flow import attention_flow, flow_map
    from attnviz.analysis.query import image_attentions
    from attnviz.qt import export_dialog
    from attnviz.qt.figures import render

    s = threaded
    s.view.update(query=Patch(2, 3))
    threads: list = []
    monkeypatch.setitem(PRODUCTS, "flow", _recording("flow", threads))
    wrote: list = []
    real_save = render.RENDERER.save
    monkeypatch.setattr(export_dialog, "RENDERER", dataclasses.replace(
        render.RENDERER, save=lambda *a: (wrote.append(threading.current_thread()), real_save(*a))))
    npz = tmp_path / "flow.npz"
    assert export_dialog.export_arrays(None, s, "flow", str(npz)) is None  # started, not done yet
    qtbot.waitUntil(npz.exists, timeout=60000)
    assert threads and all(t is not threading.main_thread() for t in threads)
    # the arrays are the analysis of that state, computed independently here
    cap = s.capture
    P, grid = cap.num_prefix_tokens, tuple(cap.grid_size)
    start = P + 2 * grid[1] + 3  # the query patch (2, 3) as a token
    f = flow_map(attention_flow(image_attentions(cap, 0), start, options=s.view.options, num_prefix_tokens=P),
                 P, grid)
    with np.load(npz) as z:
        np.testing.assert_allclose(z["map"], f / f.max(), rtol=1e-5)
    # a figure: products on the worker, drawn and written on the GUI thread
    dlg = export_dialog.ExportDialog(s, view="flow")
    qtbot.addWidget(dlg)
    png = tmp_path / "flow.png"
    threads.clear()
    s.view.update(query=Patch(1, 1))  # another state: flow is computed again, on the worker
    dlg.export_to(str(png))
    qtbot.waitUntil(png.exists, timeout=60000)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert wrote == [threading.main_thread()]
    assert Image.open(png).format == "PNG" and s.last_error is None


def test_cancel_stops_an_export_and_writes_nothing(threaded, qtbot, tmp_path, monkeypatch):
    from attnviz.qt import export_dialog

    s = threaded
    threads: list = []
    gate = threading.Event()
    monkeypatch.setitem(PRODUCTS, "stats", _recording("stats", threads, gate))
    out = tmp_path / "stats.npz"
    assert export_dialog.export_arrays(None, s, "stats", str(out)) is None
    qtbot.waitUntil(lambda: bool(threads), timeout=30000)  # the worker is inside the product
    s.cancel()  # the window's Cancel
    gate.set()
    qtbot.waitUntil(lambda: not s.worker.busy(), timeout=30000)
    qtbot.wait(100)  # any late delivery would run now
    assert not out.exists() and s.last_error is None
    assert not any(p.name.startswith(".attnviz-") for p in tmp_path.iterdir())


def test_a_failing_product_in_the_app_is_one_message(threaded, qtbot, tmp_path, monkeypatch):
    from attnviz.qt import export_dialog

    def boom(*_a, **_k):
        raise RuntimeError("no memory left")

    s = threaded
    monkeypatch.setitem(PRODUCTS, "rollout", dataclasses.replace(PRODUCTS["rollout"], fn=boom))
    out = tmp_path / "all.npz"
    export_dialog.export_arrays(None, s, "figure", str(out))
    qtbot.waitUntil(lambda: s.last_error is not None, timeout=60000)
    assert "attention rollout could not be computed: no memory left" in s.last_error
    assert not out.exists()
