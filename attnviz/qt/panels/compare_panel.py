"""Compare panel: a second model (B) on the same image beside the main one (A), each with its prediction
and the attention of the same query, B's view following A's where it applies (attnviz.session.compare).

Model B has its own Session that shares the main session's worker under other request kinds, so loading
or running B never supersedes A's work; B takes A's decoded image whenever A opens a new one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton

from ...session import Session
from ...session.compare import Followed, PrefixedWorker, follow
from ...session.display import levels
from ...session.products import QueryHeads, Unavailable
from ...session.query import Patch, pixel_to_patch, remap_query
from ...session.shown import head_name
from ..widgets.choices import combo, select_data
from ..widgets.overlay import OverlayView
from ..widgets.side_by_side import SideBySide
from .base import Panel

DEMO_DIR = Path(__file__).resolve().parents[3] / "models"
MODEL_FILTER = "Checkpoints (*.safetensors *.pth *.pt *.bin *.ckpt *.json);;All files (*)"
TOP_K = 3


class ComparePanel(Panel):
    title = "Compare"
    help_text = ("Two models look at the same picture: A (the main model) on the left, B on the right, each with "
                 "its prediction and the attention of the same query for the selected block and head. B follows "
                 "the block, head and query (by its place in the image); where it cannot — another depth, fewer "
                 "heads, no class token — the note under the images says what is shown instead. Try faces-vit "
                 "beside faces-vit-nope (the same network without position embeddings) or beside faces-swin.")
    reads = ("block", "head", "query", "colormap", "scale", "opacity", "smooth", "show_grid", "overlay")
    default_size = (900, 560)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        self.b = Session(PrefixedWorker(session.worker, "compare:"), device=session.doc.device,
                         dtype=session.doc.dtype)
        bar = QHBoxLayout()
        demos = sorted(DEMO_DIR.glob("*.safetensors")) if DEMO_DIR.is_dir() else []
        self.demo = combo([("Model B: choose a demo…", None)] + [(p.stem, str(p)) for p in demos],
                          "A shipped demo model to compare with the main one")
        self.open_button = QPushButton("Model B…")
        self.open_button.setToolTip("Open any checkpoint as model B")
        bar.addWidget(self.demo)
        bar.addWidget(self.open_button)
        self.status = QLabel("")
        bar.addWidget(self.status, 1)
        bar.addWidget(self.help_button())
        self.body.addLayout(bar)

        self.sides = SideBySide(OverlayView(colorbar=True), OverlayView(colorbar=True))
        sd = self.sides
        self.caption_a, self.view_a, self.pred_a = sd.caption_a, sd.view_a, sd.pred_a
        self.caption_b, self.view_b, self.pred_b = sd.caption_b, sd.view_b, sd.pred_b
        self.body.addWidget(self.sides, 1)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("padding:4px")
        self.body.addWidget(self.notes)

        self.followed: Optional[Followed] = None  # what B's view was set to, with the notes
        self.demo.currentIndexChanged.connect(self._demo_chosen)
        self.open_button.clicked.connect(self._choose_file)
        self.view_a.sigClicked.connect(session.pick_pixel)
        self.view_b.sigClicked.connect(self._picked_b)
        session.image_loaded.connect(self._share_image)
        self.b.busy.connect(lambda what: self.status.setText(f"Model B: {what}…"))
        self.b.error.connect(lambda msg: (self.status.setText("Model B: failed"),
                                          session.report(RuntimeError(f"model B: {msg}"))))
        self.b.model_loaded.connect(self._b_loaded)
        self.b.captured.connect(self._b_captured)

    # -- model B ---------------------------------------------------------------------------------
    def open_b(self, path: str) -> None:
        """Load ``path`` as model B (on the shared worker) and run it on the main session's image."""
        self.b.open_model(path)

    def _demo_chosen(self, _i: int) -> None:
        path = self.demo.currentData()
        if path:
            self.open_b(path)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model B", str(DEMO_DIR), MODEL_FILTER)
        if path:
            self.open_b(path)

    def _share_image(self) -> None:
        if self.b.model is not None and self.session.doc.image is not None:
            self.b.use_image(self.session.doc.image_path, self.session.doc.image)

    def _b_loaded(self) -> None:
        select_data(self.demo, self.b.doc.model_path)  # a demo, or stays on the prompt for another file
        info = self.b.model.info
        self.status.setText(f"Model B: {info.name or Path(self.b.doc.model_path).name}")
        doc = self.session.doc
        if doc.image is not None and self.b.doc.image is not doc.image:
            self.b.use_image(doc.image_path, doc.image)

    def _b_captured(self) -> None:
        info = self.b.model.info
        self.status.setText(f"Model B: {info.name or Path(self.b.doc.model_path).name}")
        self.view_b.set_input(self.b.doc.input_image)
        self._dirty = True
        if self.isVisible():
            self.flush()

    def _picked_b(self, y: float, x: float) -> None:
        """A click on B picks the query at the same place in the image, for both models."""
        gb, ga = self.b.geometry, self.session.geometry
        if gb is None or ga is None:
            return
        p = pixel_to_patch(y, x, gb)
        if p is not None:
            self.session.view.query = remap_query(p, gb, ga)

    # -- drawing ---------------------------------------------------------------------------------
    def on_capture(self) -> None:
        self.view_a.set_input(self.session.doc.input_image)

    def _sync_b(self) -> Optional[Followed]:
        """Carry A's block, head and query over to B's view (where B has them)."""
        a, b = self.session, self.b
        if b.capture is None or a.capture is None:
            return None
        f = follow(a.view.block, a.view.head, a.view.query, a.geometry, len(a.capture.blocks), b.geometry,
                   tuple(int(blk.num_heads) for blk in b.capture.blocks))
        b.view.update(block=f.block, head=f.head, query=f.query, method="attention", scale=a.view.scale,
                      colormap=a.view.colormap)
        return f

    def refresh(self) -> None:
        a, v = self.session, self.session.view
        self._draw(self.view_a, a, self.caption_a, "A", a.view)
        self.pred_a.set_rows(a.predictions(TOP_K))
        if self.b.model is None:
            self.caption_b.setText("Model B: choose a demo model or open a checkpoint")
            self.pred_b.clear_rows()
            self.notes.setText("")
            self.view_b.set_map(None, 0, (0, 1), v.scale, v.colormap, False, v.opacity, v.smooth)
            return
        if self.b.capture is None:
            self.caption_b.setText("Model B: waiting for its capture…")
            self.pred_b.clear_rows()
            self.view_b.set_map(None, 0, (0, 1), v.scale, v.colormap, False, v.opacity, v.smooth)
            return
        self.followed = self._sync_b()
        self._draw(self.view_b, self.b, self.caption_b, "B", self.b.view)
        self.pred_b.set_rows(self.b.predictions(TOP_K))
        notes = list(self.followed.notes)
        if a.doc.use_pos_embed is False:
            notes.append("model A runs without its position embeddings (Scramble panel); model B with its own")
        self.notes.setText(" · ".join(notes) if notes else "Model B follows the block, head and query as they are.")

    def _draw(self, view: OverlayView, s: Session, caption: QLabel, which: str, bv) -> None:
        v, g = self.session.view, s.geometry
        qh = s.products.get("query_heads")
        name = s.model.info.name or Path(s.doc.model_path or "").stem
        if not isinstance(qh, QueryHeads):  # Unavailable, or None: no context for this model yet
            why = qh.reason if isinstance(qh, Unavailable) else "its attention is not ready yet"
            caption.setText(f"{which}: {name} — {why}")
            view.set_map(None, 0, (0, 1), v.scale, v.colormap, False, v.opacity, v.smooth)
            view.set_query(None, g.patch_size if g is not None else 0)
            return
        values = qh.head_map(bv.head)  # (h, w)
        view.set_map(values, qh.token_px, levels(values, v.scale), v.scale, v.colormap, v.overlay == "alpha",
                     v.opacity, v.smooth, qh.window)
        view.set_grid(v.show_grid, g.patch_size, g.grid_size)
        q = bv.query
        view.set_query((q.row, q.col) if isinstance(q, Patch) else None, g.patch_size, qh.query_cell, qh.token_px)
        caption.setText(f"{which}: {name} — {qh.label} · block {bv.block} of {len(s.capture.blocks)} · "
                        f"{head_name(bv.head)}")
