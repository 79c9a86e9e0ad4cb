"""Attention anatomy panel: softmax(QKᵀ/√d + B)V taken apart for the selected block, head and query.

Three maps side by side (four for Swin, whose logits add a position bias and, in shifted blocks, the
shift mask): the query's similarity scores against every key, the softmax probabilities, and each
key's contribution ‖a_k v_k‖ to the output. Every number comes from
:mod:`attnviz.analysis.anatomy` through the ``attention_anatomy`` product (computed on the worker: it
runs the network once more for the selected block's q, k, v).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, Qt, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QComboBox, QLabel

from ...analysis.anatomy import Anatomy, formula, key_line, key_name
from ...session.anatomy_products import AnatomyView, stage_keys, stage_map  # importing it registers the product
from ...session.products import Unavailable
from ...session.query import Patch
from ..widgets.colorbar import ColorBar
from ..widgets.colorize import colorize
from ..widgets.overlay import RGBAImageItem, lookup_table
from .base import Panel

BACKGROUND = pg.mkColor(30, 30, 34)
QUERY_PEN = pg.mkPen(80, 220, 255, width=2.5)
HOVER_PEN = pg.mkPen(255, 255, 255, width=2)
MAX_NUMBERED_CELLS = 100  # maps with more cells than this show colours only (numbers would not fit)
MIN_NUMBER_PX = 7  # numbers smaller than this are not written
PRODUCT = "attention_anatomy"


class _Stage:
    """One labelled map of the panel: title, image, colour bar, numbers per cell, prefix numbers."""

    def __init__(self, layout: pg.GraphicsLayout, col: int, key: str):
        self.key = key
        self.title = pg.LabelItem("", size="9pt", color="#e6e6e6")
        layout.addItem(self.title, row=0, col=2 * col, colspan=2)
        self.vb = layout.addViewBox(row=1, col=2 * col, lockAspect=True, invertY=True, enableMouse=False,
                                    enableMenu=False)
        # finished RGBA: pyqtgraph's own float + lookup-table path (NaN masking) crashed drawImage in tests
        self.img = RGBAImageItem()
        self.shown: Optional[np.ndarray] = None
        self.levels = (0.0, 1.0)
        self.vb.addItem(self.img)
        self.bar = ColorBar(bar_px=10)  # numbers even for a tiny range (see widgets/colorbar.py)
        layout.addItem(self.bar, row=1, col=2 * col + 1)
        # the map sits in the middle of its box (square cells): its bar, as tall as the map, beside it
        layout.layout.setAlignment(self.bar, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        self.prefix = pg.LabelItem("", size="8pt", color="#cfcfd4")
        layout.addItem(self.prefix, row=2, col=2 * col, colspan=2)
        self.query_box = pg.QtWidgets.QGraphicsRectItem()
        self.query_box.setPen(QUERY_PEN)
        self.hover_box = pg.QtWidgets.QGraphicsRectItem()
        self.hover_box.setPen(HOVER_PEN)
        for box in (self.query_box, self.hover_box):
            box.setZValue(10)
            self.vb.addItem(box)
        self.texts: list[pg.TextItem] = []
        self.numbered = 0  # how many of ``texts`` hold a cell's number now

    def set_numbers(self, values: np.ndarray, fmt: str, marks: Optional[np.ndarray] = None) -> None:
        """Write each cell's value on it (``marks``: a string per cell that replaces the number)."""
        h, w = values.shape
        n = self.numbered = h * w if h * w <= MAX_NUMBERED_CELLS else 0
        while len(self.texts) < n:
            t = pg.TextItem("", color="#ffffff", anchor=(0.5, 0.5), fill=pg.mkBrush(0, 0, 0, 120))
            t.setZValue(5)
            self.vb.addItem(t)
            self.texts.append(t)
        for i, t in enumerate(self.texts):
            t.setVisible(i < n)
            if i < n:
                r, c = divmod(i, w)
                mark = None if marks is None else marks[r, c]
                t.setText(mark if mark else fmt.format(values[r, c]))
                t.setPos(c + 0.5, r + 0.5)

    def fit(self, shape: tuple[int, int], side_w: float) -> float:
        """Give the map box the width ``side_w`` allows with square cells (every map the same size, its
        colour bar right beside it, as tall as the map); returns the side of one cell in screen pixels."""
        h, w = shape
        height = self.vb.height()
        if height <= 1 or side_w <= 1:
            return 0.0
        cell_px = min(height / h, side_w / w)
        self.vb.setMinimumWidth(cell_px * w)
        self.vb.setMaximumWidth(cell_px * w)
        self.bar.setMaximumHeight(max(60.0, cell_px * h + 16))
        return cell_px

    def size_numbers(self, cell_px: float) -> None:
        """Numbers sized to the cells; hidden where they would be too small to read."""
        size = int(min(14, cell_px * 0.32))
        font = QFont()
        font.setPixelSize(max(size, 1))
        for i, t in enumerate(self.texts):
            t.setFont(font)
            t.setVisible(i < self.numbered and size >= MIN_NUMBER_PX)

    def frame(self) -> None:
        """Show exactly the map (not the numbers' boxes, which reach past its edges)."""
        r = self.img.boundingRect()
        if r.width() > 0:
            self.vb.setRange(QRectF(0, 0, r.width(), r.height()), padding=0.02)

    def show_cell(self, box, cell: Optional[tuple[int, int]]) -> None:
        box.setVisible(cell is not None)
        if cell is not None:
            box.setRect(QRectF(cell[1], cell[0], 1, 1))


class AnatomyPanel(Panel):
    title = "Attention anatomy"
    help_text = ("Where one attention row comes from: the query's <b>score</b> for every key (q·k/√d; Swin v2 "
                 "uses the cosine of q and k times a learned temperature), plus Swin's relative position "
                 "<b>bias</b> and, in shifted windows, the −100 <b>mask</b>; the softmax turns these into the "
                 "<b>probabilities</b> (equal to the captured attention); the output is Σ a·v, and each key "
                 "<b>contributes</b> ‖a·v‖. A key with a high probability but a short value vector contributes "
                 "little; hover a cell for its numbers, click it to make it the query.")
    reads = ("block", "head", "query", "colormap")
    default_size = (980, 420)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        self.head_combo = QComboBox()
        self.head_combo.setToolTip("The anatomy is per head: the softmax of one head's scores")
        self.head_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)  # filled later
        self.head_combo.activated.connect(self._head_picked)
        self.caption_row(QLabel("Head"), self.head_combo)
        self.formula = QLabel("")
        self.formula.setStyleSheet("font-family:monospace")
        self.formula.setWordWrap(True)
        self.body.addWidget(self.formula)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(BACKGROUND)
        self.graphics.setMinimumHeight(260)
        self.body.addWidget(self.graphics, 1)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.body.addWidget(self.summary)
        self.key_text = QLabel("")
        self.key_text.setStyleSheet("font-family:monospace")
        self.key_text.setWordWrap(True)
        self.body.addWidget(self.key_text)
        self.note = QLabel("")
        self.note.setStyleSheet("color:#a85a00;font-weight:600")  # amber that reads on a light or dark window
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        self.body.addWidget(self.note)
        self.stages: list[_Stage] = []
        self._family: Optional[str] = None
        self.result: Optional[AnatomyView] = None
        self.arrays: dict[str, np.ndarray] = {}  # the map behind each stage's image (tests, export)
        self.prefix_arrays: dict[str, np.ndarray] = {}  # ViT: the prefix keys' values beside each map
        self.hover_key: Optional[int] = None
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(0)
        self._fit_timer.timeout.connect(self._fit)
        self.graphics.installEventFilter(self)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._mouse_clicked)
        session.products.ready.connect(lambda name: self.schedule() if name == PRODUCT else None)

    # -- building -------------------------------------------------------------------------------
    def _ensure_stages(self, family: str) -> None:
        if self._family == family:
            return
        self.graphics.clear()
        keys = stage_keys(family)
        layout = self.graphics.ci
        self.stages = [_Stage(layout, i, k) for i, k in enumerate(keys)]
        self._family = family

    def on_capture(self) -> None:
        self.hover_key = None

    def on_font_change(self) -> None:
        """The colour bars' numbers follow the application font (and so does the room left for the maps)."""
        for st in self.stages:
            st.bar.refresh_font()
        self._fit()

    def _sync_heads(self, heads: int, head) -> None:
        if self.head_combo.count() != heads + (0 if isinstance(head, int) else 1) or \
                (not isinstance(head, int)) != (self.head_combo.itemData(0) is None):
            self.head_combo.blockSignals(True)
            self.head_combo.clear()
            if not isinstance(head, int):
                self.head_combo.addItem("pick a head", None)
            for h in range(heads):
                self.head_combo.addItem(f"head {h}", h)
            self.head_combo.blockSignals(False)
        i = self.head_combo.findData(head) if isinstance(head, int) else 0
        self.head_combo.blockSignals(True)
        self.head_combo.setCurrentIndex(max(i, 0))
        self.head_combo.blockSignals(False)

    def _head_picked(self, index: int) -> None:
        h = self.head_combo.itemData(index)
        if h is not None:
            self.session.view.head = int(h)

    def eventFilter(self, obj, ev) -> bool:
        if obj is self.graphics and ev.type() == QEvent.Type.Resize:
            self._fit()
        return super().eventFilter(obj, ev)

    def _fit(self) -> None:
        if self.result is None:
            return
        self.graphics.ci.layout.activate()  # the boxes' heights for this size
        n = max(len(self.stages), 1)
        bars = sum(st.bar.maximumWidth() + 10 for st in self.stages)  # each bar's width follows the font
        side_w = (self.graphics.width() - bars - 10) / n
        cells = [st.fit(self.result.anatomy.map_shape, side_w) for st in self.stages]
        cell_px = min(cells) if cells else 0.0
        self.graphics.ci.layout.activate()  # the boxes at their new widths
        for st in self.stages:
            st.size_numbers(cell_px)  # one size for every map, so the maps read alike
            st.frame()

    # -- mouse ----------------------------------------------------------------------------------
    def _cell_at(self, scene_pos) -> Optional[tuple[int, int]]:
        a = None if self.result is None else self.result.anatomy
        if a is None:
            return None
        for st in self.stages:
            if st.vb.sceneBoundingRect().contains(scene_pos):
                p = st.vb.mapSceneToView(scene_pos)
                r, c = int(np.floor(p.y())), int(np.floor(p.x()))
                h, w = a.map_shape
                if 0 <= r < h and 0 <= c < w:
                    return r, c
        return None

    def _mouse_moved(self, scene_pos) -> None:
        cell = self._cell_at(scene_pos)
        key = None if cell is None else self.result.anatomy.key_of_cell(*cell)
        if key != self.hover_key:
            self.hover_key = key
            self._draw_key()

    def _mouse_clicked(self, ev) -> None:
        cell = self._cell_at(ev.scenePos())
        if cell is None:
            return
        a = self.result.anatomy
        t = int(a.key_tokens[a.key_of_cell(*cell)])
        if t < 0:
            return  # a padding slot is no token of the image
        blocks = self.session.capture.blocks
        if a.block >= len(blocks):
            return  # drawn from a capture that has been replaced
        y, x = divmod(t, a.grid_size[1])
        f = 1 if a.family == "vit" else 2 ** int(blocks[a.block].stage)
        self.session.view.query = Patch(y * f, x * f)  # Swin: the first input patch the token covers

    # -- drawing --------------------------------------------------------------------------------
    def refresh(self) -> None:
        v, cap = self.session.view, self.session.capture
        heads = int(cap.blocks[v.block].num_heads)
        self._sync_heads(heads, v.head)
        res = self.session.products.get(PRODUCT)
        if res is None:
            self.caption.setText(f"Block {v.block}: computing q, k and v of this block…")
            return
        if isinstance(res, Unavailable):
            self.result = None
            self.caption.setText(res.reason)
            self.formula.setText("")
            self.key_text.setText("")
            self.summary.setText("")
            self.arrays, self.prefix_arrays = {}, {}
            for st in self.stages:
                st.img.clear()
            return
        self.result = res
        a = res.anatomy
        self._ensure_stages(a.family)
        if a.window is None:
            keys = f"its {a.num_keys} keys (prefix tokens as numbers under the maps)" if a.num_prefix else \
                f"its {a.num_keys} keys"
        else:
            M = a.map_shape[0]
            keys = f"the {M}×{M} slots of its window {a.window}"
            if self.session.capture.blocks[a.block].shift_size:
                keys += " (cyclically shifted: slots across the wrap are not neighbours in the image)"
        self.caption.setText(f"Block {a.block}, head {a.head}: the attention of the {res.query_label} over {keys}")
        self.formula.setText(f"{formula(a)}   ·   max |a − captured attention| = {a.max_prob_error:.1e}")
        self.note.setText(res.note)
        self.note.setVisible(bool(res.note))
        lut = lookup_table(v.colormap, False)
        self.arrays, self.prefix_arrays = {}, {}
        for st in self.stages:
            m = stage_map(a, st.key)
            self.arrays[st.key] = m.values
            st.shown, st.levels = m.shown, m.levels  # the array behind the image (NaN: a masked key, left dark)
            st.img.setImage(colorize(m.shown, m.levels, lut), autoLevels=False)  # (h, w, 4) coloured in numpy
            st.img.setRect(QRectF(0, 0, m.shown.shape[1], m.shown.shape[0]))
            st.bar.set(v.colormap, m.levels)
            st.title.setText("<br>".join(m.title))
            st.set_numbers(m.values, m.fmt, m.marks)
            st.show_cell(st.query_box, self._cell_of(a, a.query_key))
            st.frame()
            if a.num_prefix:
                self.prefix_arrays[st.key] = m.prefix
                st.prefix.setText(m.prefix_text(res.prefix_names))
            else:
                st.prefix.setText("")
        self.summary.setText(self._summary(a, res.prefix_names))
        if self.hover_key is not None and self.hover_key >= a.num_keys:
            self.hover_key = None
        self._fit()
        self._fit_timer.start()  # again once the layout has settled on the new maps
        self._draw_key()

    @staticmethod
    def _summary(a: Anatomy, names: list[str], n: int = 6) -> str:
        """The keys that carry most of the output, with probability and share: a high probability on a
        short value vector carries less than its probability suggests."""
        order = np.argsort(-a.share)[:n]
        rows = [f"{key_name(a, int(k), names)} {a.share[k]:.1%} (a {a.probs[k]:.1%})" for k in order]
        top = float(a.share[order].sum())
        return ("<b>Largest shares of Σ‖a·v‖:</b> " + " · ".join(rows)
                + f" — together {top:.0%}. ‖o‖ / Σ‖a·v‖ = {a.output_norm / a.contrib.sum():.2f} "
                "(below 1: the weighted values point apart and partly cancel).")

    @staticmethod
    def _cell_of(a: Anatomy, key: int) -> Optional[tuple[int, int]]:
        """Map cell of a key; None for a prefix key (shown as numbers beside the maps)."""
        if key < a.num_prefix:
            return None
        return divmod(key - a.num_prefix, a.map_shape[1])

    def _draw_key(self) -> None:
        if self.result is None:
            self.key_text.setText("")
            return
        a = self.result.anatomy
        key = a.top_key() if self.hover_key is None else self.hover_key
        which = "top key" if self.hover_key is None else "hovered"
        self.key_text.setText(f"{which} — {key_line(a, key, self.result.prefix_names)}")
        cell = self._cell_of(a, key)
        for st in self.stages:
            st.show_cell(st.hover_box, cell)
