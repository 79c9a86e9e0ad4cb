"""Scramble panel: the original input and a patch-scrambled copy side by side, each with its prediction
and the attention of the same query, plus the measured differences (attnviz.session.scramble_state).

The settings live in ``session.scramble`` (Qt-free, saved with the view state); the scrambled input is
captured on the worker by ``session.request_scramble``; the position-embedding switch reruns the whole
session without the embedding (``session.set_use_pos_embed``), so the original side and every other
panel show the same network as the scrambled side.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QLabel, QPushButton, QSizePolicy, QSpinBox

from ...analysis.predictions import top_classes
from ...session.display import levels
from ...session.products import Unavailable
from ...session.query import Patch, pixel_to_patch
from ...session.scramble_state import KIND_NAMES, PairMap, query_in_scrambled, scrambled_map
from ...session.shown import head_name
from ..widgets.choices import combo, select_data
from ..widgets.flow import FlowLayout
from ..widgets.overlay import HOVER_PEN, OverlayView, _outline
from ..widgets.side_by_side import SideBySide
from .base import Panel

TOP_K = 3
LESSON = ("The demo pair makes the lesson: faces-vit stops seeing a face once its patches are shuffled (on the "
          "sample faces its prediction moves away from 'face'), while faces-vit-nope, the same network trained "
          "without position embeddings, cannot tell a face from its scrambled patches: its prediction does not "
          "change at all.")
SWIN_LESSON = ("Swin has no absolute position embedding, so the position-embedding switch does not apply: "
               "what it knows about position is a relative position bias added to the scores inside each "
               "window, set by where two patches sit relative to each other in that window. Shuffling "
               "<b>within</b> its own {side}×{side}-patch windows keeps which patches share a window in the "
               "first block and only moves them inside it, so what changes is what that bias sees (and, in "
               "later blocks, the shifted windows and the patch merging); a shuffle <b>across</b> windows also "
               "changes which patches can attend to each other at all. Compare the two predictions.")
POS_EMBED_TIP = ("Run the model with or without its learned absolute position embedding. This is an argument of "
                 "the capture and applies to the whole session: when it is off every panel shows the network "
                 "without it (ViT family only).")


def _narrow(label: QLabel) -> None:
    """A word-wrapped label that asks for no width of its own: it wraps to what the dock gives it instead
    of widening the dock (and with it the window). Keeps the height-for-width flag word wrap sets."""
    label.setWordWrap(True)
    policy = label.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
    label.setSizePolicy(policy)


class SwapView(OverlayView):
    """An overlay view on which dragging one patch onto another asks for the two to be swapped; a plain
    click still picks. The view does not pan with the mouse (the wheel still zooms)."""

    sigDragged = Signal(float, float, float, float)  # (y0, x0, y1, x1) input pixels

    def __init__(self, parent=None):
        super().__init__(colorbar=True, parent=parent)
        self.vb.setMouseEnabled(x=False, y=False)
        self._press: Optional[QPointF] = None
        self.source = _outline(HOVER_PEN, 2.5, Qt.PenStyle.DashLine)  # the patch being dragged
        self.vb.addItem(self.source)
        self.patch_px = 0

    def _to_image(self, pos) -> QPointF:
        return self.vb.mapSceneToView(self.mapToScene(pos.toPoint() if hasattr(pos, "toPoint") else pos))

    def mousePressEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            self._press = self._to_image(ev.position())
            if self.patch_px:
                r, c = int(self._press.y() // self.patch_px), int(self._press.x() // self.patch_px)
                self._place(self.source, (r, c), self.patch_px)
        super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev) -> None:
        super().mouseMoveEvent(ev)
        self._fitted = True  # a drag here swaps patches; it never pans

    def mouseReleaseEvent(self, ev) -> None:
        super().mouseReleaseEvent(ev)
        start, self._press = self._press, None
        self.source.setVisible(False)
        if start is None or ev.button() != Qt.MouseButton.LeftButton:
            return
        end = self._to_image(ev.position())
        if self.patch_px and (int(start.y() // self.patch_px), int(start.x() // self.patch_px)) != \
                (int(end.y() // self.patch_px), int(end.x() // self.patch_px)):
            self.sigDragged.emit(start.y(), start.x(), end.y(), end.x())


class ScramblePanel(Panel):
    title = "Scramble"
    help_text = ("Left: the input as it is; right: the same patches moved around (P·x). Each side shows the "
                 "model's prediction and the attention of the same query patch, wherever it went; bright = a "
                 "large share. Without position embeddings a ViT cannot tell where a patch is: attention just "
                 "moves with the patches (A(Px) = P·A(x)·Pᵀ) and the prediction does not change — the shipped "
                 "faces-vit stops seeing a face once its patches are shuffled, faces-vit-nope cannot tell a "
                 "face from its scrambled patches. Drag a patch onto another on the right to swap them.")
    # every view field refresh and _draw read (the colour range is the two maps' shared one, so the
    # view's 'normalisation' does not apply here)
    reads = ("block", "head", "query", "colormap", "scale", "opacity", "smooth", "show_grid", "overlay")
    default_size = (900, 560)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        st = session.scramble
        bar = FlowLayout()  # the controls wrap onto a second row in a narrow dock
        self.kind = combo([(KIND_NAMES[k].capitalize(), k) for k in ("random", "window", "reverse", "none")],
                          "How the patches are moved: a seeded random order, random only inside windows "
                          "(the Swin lesson), the order reversed, or the original order (then drag to swap)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setPrefix("seed ")
        self.seed.setToolTip("The random order is reproducible from its seed")
        self.window = QSpinBox()
        self.window.setRange(1, 64)
        self.window.setPrefix("window ")
        self.window.setToolTip("Side of the windows, in patches, inside which 'random within windows' shuffles")
        self.next_seed = QPushButton("Shuffle again")
        self.next_seed.setToolTip("The next seed")
        self.undo = QPushButton("Undo swap")
        self.undo.setToolTip("Take the last dragged swap back")
        self.pos_embed = QCheckBox("position embeddings")

        self.original = QCheckBox("in original positions")
        self.original.setToolTip("Draw the scrambled input's attention where each patch came from (Pᵀ·A(Px)·P), "
                                 "to compare it with the left side cell by cell")
        for w in (QLabel("Scramble"), self.kind, self.seed, self.window, self.next_seed, self.undo, self.pos_embed,
                  self.original):
            bar.addWidget(w)
        self.controls_row(bar)

        self.sides = SideBySide(OverlayView(colorbar=False), SwapView())
        sd = self.sides
        self.caption_a, self.view_a, self.pred_a = sd.caption_a, sd.view_a, sd.pred_a
        self.caption_b, self.view_b, self.pred_b = sd.caption_b, sd.view_b, sd.pred_b
        self.body.addWidget(self.sides, 1)
        for label in (self.caption_a, self.caption_b, self.pred_a, self.pred_b):
            _narrow(label)
        self.facts = QLabel("")
        self.facts.setWordWrap(True)
        self.facts.setTextFormat(Qt.TextFormat.RichText)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts.setStyleSheet("padding:4px")
        _narrow(self.facts)
        self.body.addWidget(self.facts)
        self.lesson = QLabel(LESSON)
        self.lesson.setWordWrap(True)
        self.lesson.setTextFormat(Qt.TextFormat.RichText)
        self.lesson.setStyleSheet("font-style:italic;padding:0 4px 4px 4px")
        _narrow(self.lesson)
        self.body.addWidget(self.lesson)

        self.map_a: Optional[PairMap] = None  # what each side draws, for tests and export
        self.map_b: Optional[PairMap] = None
        self.kind.currentIndexChanged.connect(lambda _i: self._edit(st.set_kind, self.kind.currentData()))
        self.seed.valueChanged.connect(lambda v: self._edit(st.set_seed, v))
        self.window.valueChanged.connect(lambda v: self._edit(st.set_window, v))
        self.next_seed.clicked.connect(lambda: self.seed.setValue(self.seed.value() + 1))
        self.undo.clicked.connect(st.undo)
        self.pos_embed.toggled.connect(session.set_use_pos_embed)
        self.original.toggled.connect(st.set_show_original)
        self.view_a.sigClicked.connect(session.pick_pixel)
        self.view_b.sigClicked.connect(self._picked_scrambled)
        self.view_b.sigDragged.connect(self._dragged)
        st.changed.connect(self._settings_changed)
        session.scramble_ready.connect(self._ready)
        session.pos_embed_changed.connect(lambda _on: self._sync_controls())
        self._sync_controls()

    # -- editing ---------------------------------------------------------------------------------
    def _edit(self, setter, value) -> None:
        try:
            setter(value)
        except ValueError as e:
            self.session.report(e)

    def _settings_changed(self, name: str) -> None:
        self._sync_controls()
        if name == "show_original":
            self.schedule()
        elif name != "grid":
            # a new grid comes with a new capture, and on_capture asks for the new pair once the view
            # (its query among them) has followed the capture; asking here would draw a stale query
            self._request()

    def _request(self) -> None:
        if self.isVisible():
            self.session.request_scramble()
        else:
            self._pending = True

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        if getattr(self, "_pending", False) or (self.session.capture is not None and self.session.scrambled is None):
            self._pending = False
            self.session.request_scramble()

    def _sync_controls(self) -> None:
        st, s = self.session.scramble, self.session
        select_data(self.kind, st.kind)
        for box, value in ((self.seed, st.seed), (self.window, st.window_side)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        self.seed.setEnabled(st.kind in ("random", "window"))
        self.next_seed.setEnabled(st.kind in ("random", "window"))
        self.window.setVisible(st.kind == "window")
        self.undo.setEnabled(bool(st.swaps))
        vit = s.model is not None and s.model.family == "vit"
        has_pe = vit and getattr(s.model.net, "pos_embed", None) is not None
        for box, on in ((self.pos_embed, s.doc.use_pos_embed and has_pe), (self.original, st.show_original)):
            box.blockSignals(True)
            box.setChecked(on)
            box.blockSignals(False)
        self.pos_embed.setEnabled(has_pe)
        if s.model is None or has_pe:
            tip = POS_EMBED_TIP
        elif vit:
            tip = "This ViT has no position embedding: it never knows where a patch is"
        else:
            tip = ("Swin has no absolute position embedding: its position information is the relative position "
                   "bias inside each window")
        self.pos_embed.setToolTip(tip)
        lesson = SWIN_LESSON.format(side=st.auto_window) if s.model is not None and not vit else LESSON
        if self.lesson.text() != lesson:
            self.lesson.setText(lesson)

    def _cell(self, y: float, x: float) -> Optional[Patch]:
        g = self.session.geometry
        return None if g is None else pixel_to_patch(y, x, g)

    def _picked_scrambled(self, y: float, x: float) -> None:
        """A click on the right picks the original patch shown there as the query."""
        pair, cell = self.session.scrambled, self._cell(y, x)
        if pair is None or cell is None:
            return
        if self.session.scramble.show_original:
            self.session.view.query = cell
            return
        gw = self.session.geometry.grid_size[1]
        k = int(pair.permutation[cell.row * gw + cell.col])
        self.session.view.query = Patch(k // gw, k % gw)

    def _dragged(self, y0: float, x0: float, y1: float, x1: float) -> None:
        """Dragging a patch onto another on the right swaps them (positions of the scrambled image; in
        original positions, the two original patches trade places in the scrambled image)."""
        a, b = self._cell(y0, x0), self._cell(y1, x1)
        pair = self.session.scrambled
        if a is None or b is None:
            return
        if self.session.scramble.show_original and pair is not None:
            grid = self.session.geometry.grid_size
            a, b = (query_in_scrambled(p, pair.permutation, grid) for p in (a, b))
        self._edit(lambda ab: self.session.scramble.swap(*ab), ((a.row, a.col), (b.row, b.col)))

    # -- drawing ---------------------------------------------------------------------------------
    def on_capture(self) -> None:
        self.view_a.set_input(self.session.doc.input_image)
        self._sync_controls()
        self._request()

    def _ready(self) -> None:
        self._dirty = True
        if self.isVisible():
            self.flush()

    def refresh(self) -> None:
        s, v, g = self.session, self.session.view, self.session.geometry
        st, pair = s.scramble, s.scrambled
        self._sync_controls()
        qh = s.products.get("query_heads")
        if isinstance(qh, Unavailable):
            self.map_a = PairMap(None, note=qh.reason)
        else:
            self.map_a = PairMap(qh.head_map(v.head), qh.token_px, qh.query_cell, qh.window)
        what = f"{v.query.label(list(g.prefix_names))} · block {v.block} · {head_name(v.head)}"
        self.caption_a.setText(f"Original input — attention of the {what}")
        self.pred_a.set_rows(s.predictions(TOP_K))
        if pair is None:
            self.map_b = None
            self.pred_b.clear_rows()
            self.caption_b.setText(f"Scrambled ({st.describe()}): computing…")
            self.view_b.set_map(None, 0, (0, 1), v.scale, v.colormap, False, v.opacity, v.smooth)
            own = None if self.map_a.values is None else levels(self.map_a.values, v.scale)
            self._draw(self.view_a, self.map_a, own, v.query if isinstance(v.query, Patch) else None)
            self.facts.setText("")
            return
        self.map_b = scrambled_map(pair, s.doc.capture_model, v.block, v.head, v.query, st.show_original)
        where = "put back in original positions" if st.show_original else "where the patches went"
        self.caption_b.setText(f"Scrambled ({st.describe()}) — the same query, {where}"
                               + (f" — {self.map_b.note}" if self.map_b.note else ""))
        self.view_b.set_input(s.doc.input_image if st.show_original else pair.input_image)
        self.view_b.patch_px = g.patch_size
        pool = [m.values for m in (self.map_a, self.map_b) if m is not None and m.values is not None]
        lo_hi = levels(pool[0], v.scale, pool) if pool else (0.0, 1.0)
        q = v.query if isinstance(v.query, Patch) else None
        q_b = q if q is None or st.show_original else query_in_scrambled(q, pair.permutation, g.grid_size)
        self._draw(self.view_a, self.map_a, lo_hi, q)
        self._draw(self.view_b, self.map_b, lo_hi, q_b)
        model = s.doc.capture_model
        self.pred_b.set_rows(top_classes(pair.capture.logits, model.class_names if model is not None else None, TOP_K))
        self.facts.setText(_facts(pair, s))

    def _draw(self, view: OverlayView, m: Optional[PairMap], lo_hi, patch: Optional[Patch]) -> None:
        v, g = self.session.view, self.session.geometry
        if m is None or m.values is None or lo_hi is None:
            view.set_map(None, 0, (0, 1), v.scale, v.colormap, False, v.opacity, v.smooth)
            view.set_query(None, g.patch_size)
            return
        view.set_map(m.values, m.token_px, lo_hi, v.scale, v.colormap, v.overlay == "alpha", v.opacity, v.smooth,
                     m.window)
        view.set_grid(v.show_grid or view is self.view_b, g.patch_size, g.grid_size)
        view.set_query(None if patch is None else (patch.row, patch.col), g.patch_size, m.query_cell, m.token_px)


def _facts(pair, session) -> str:
    """The measured differences between the two captures, as numbers."""
    parts = []
    if pair.prob_change is not None:
        parts.append(f"Largest change of a class probability: <b>{pair.prob_change:.3g}</b>.")
    r = pair.report
    if r is None:
        parts.append("No equivariance check for Swin: its windows sit at fixed places and its relative position "
                     "bias depends on where each patch is inside its window, so attention is not expected to "
                     "simply move with the patches.")
    else:
        n_heads = sum(int(b.num_heads) for b in pair.capture.blocks)
        attn = (f"max |A(Px) − P·A(x)·Pᵀ| over {len(r.attn_max_abs_diff)} blocks ({n_heads} heads): "
                f"<b>{r.max_attn_diff:.3g}</b>")
        logit = ("" if r.logits_max_abs_diff is None
                 else f"; max |logits(Px) − logits(x)|: <b>{r.logits_max_abs_diff:.3g}</b>")
        if r.pos_embed_used:
            parts.append(f"With position embeddings: {attn}{logit} — the embedding ties each token to its place, "
                         "so moving patches changes what is attended.")
        else:
            verdict = ("float precision: attention moves with the patches and the logits do not change"
                       if r.is_equivariant(1e-4) else "larger than float precision")
            why = ("this model has no position embedding" if getattr(session.model.net, "pos_embed", None) is None
                   else "position embeddings off")
            parts.append(f"Without position embeddings ({why}): {attn}{logit} — {verdict}.")
    return " ".join(parts)
