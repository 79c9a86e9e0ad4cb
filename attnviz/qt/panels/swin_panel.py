"""Swin windows panel: where the selected block's windows lie on the image (regular or shifted, with the
padding), the shift regions and mask of the query's window, the query's window attention block after
block, and the relative position bias the block added — everything read from the capture."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QSplitter, QStackedWidget, QTabWidget,
                               QToolButton, QVBoxLayout, QWidget)

from ...session import swin_products  # noqa: F401 - registers the swin_* products
from ...session.display import levels
from ...session.products import QueryHeads, Unavailable
from ...session.query import Patch
from ...session.swin_products import VIT_REASON, SwinBias, SwinWindows, head_label
from ..widgets.fonts import style_plot
from ..widgets.overlay import RGBAImageItem, cached
from .base import Panel
from .swin_strip import BlockStrip, BlockTile
from .swin_plots import (QUERY_COLOR, REGION_COLORS, WINDOW_COLORS, ExtentView, ImagePlot, RectLayer,
                         categorical_rgba, color_chip, cosmetic_pen, rect_item)

MASK_CMAP = "CET-L1"  # linear grey: −100 (masked) black, 0 (attends) white


def _caption_label() -> QLabel:
    lab = QLabel("")
    lab.setWordWrap(True)
    lab.setTextFormat(Qt.TextFormat.RichText)
    return lab


class SwinPanel(Panel):
    title = "Swin windows"
    help_text = ("Swin computes attention only inside M×M windows of tokens; every second block shifts the "
                 "windows by ⌊M/2⌋ tokens (a cyclic roll of the map) so that neighbouring windows exchange "
                 "information, and an additive mask of −100 keeps tokens that the roll brought together from "
                 "opposite edges apart. Between stages, patch merging joins 2×2 tokens into one, so the same "
                 "M×M window covers 4× the image area at each stage: step through the blocks (↑/↓) to watch the "
                 "query's window grow. Each head also adds a learned bias per relative offset (v1: a table; "
                 "v2: a small MLP on log-spaced offsets, 16·sigmoid, with a learned temperature τ).")
    reads = ("block", "head", "query", "colormap")
    default_size = (820, 620)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        v = session.view
        top = QHBoxLayout()
        self.prev_block = QToolButton()
        self.prev_block.setText("◀")
        self.prev_block.setToolTip("Previous block (↑)")
        self.prev_block.clicked.connect(lambda: setattr(v, "block", v.block - 1))
        self.next_block = QToolButton()
        self.next_block.setText("▶")
        self.next_block.setToolTip("Next block (↓)")
        self.next_block.clicked.connect(lambda: setattr(v, "block", v.block + 1))
        self.caption = _caption_label()
        self.caption.setStyleSheet("font-weight:600")
        self.regions_box = QCheckBox("shift regions")
        self.regions_box.setToolTip("Colour the tokens by the shift region the mask is built from, and show the "
                                    "mask of the query's window")
        self.regions_box.toggled.connect(lambda _on: self._redraw())
        for w in (self.prev_block, self.next_block):
            top.addWidget(w)
        top.addWidget(self.caption, 1)
        top.addWidget(self.regions_box)
        top.addWidget(self.help_button())
        self.body.addLayout(top)

        self.stack = QStackedWidget()
        self.body.addWidget(self.stack, 1)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setStyleSheet("font-size:11pt;padding:24px")
        self.stack.addWidget(self.message)
        self.tabs = QTabWidget()
        self.stack.addWidget(self.tabs)
        self._build_windows_tab()
        self._build_attention_tab()
        self._build_bias_tab()
        self.tabs.currentChanged.connect(lambda _i: self.schedule())

        self.windows: Optional[SwinWindows] = None
        self.attention: Optional[QueryHeads] = None  # the query's attention in the selected block, every head
        self.bias: Optional[SwinBias] = None
        self.colour_index: Optional[np.ndarray] = None  # (img_H, img_W) the labels coloured in the windows view

    # -- building -------------------------------------------------------------------------------
    def _build_windows_tab(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        self.windows_caption = _caption_label()
        lay.addWidget(self.windows_caption)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.win_view = ExtentView()
        self.win_view.setMinimumSize(220, 220)
        self.win_colour = cached(RGBAImageItem())  # premultiplied once, blitted on repaint
        self.win_colour.setZValue(6)
        self.win_view.vb.addItem(self.win_colour)
        self.win_layer = RectLayer(self.win_view.vb)  # every window (redrawn when the block changes)
        self.win_query_layer = RectLayer(self.win_view.vb)  # the query's window (redrawn when the query moves)
        self._win_key: Optional[tuple] = None
        self.win_view.sigClicked.connect(self.session.pick_pixel)
        split.addWidget(self.win_view)
        self.mask_plot = ImagePlot("query slot (row-major in the window)", "key slot",
                                   "mask added to the logit: 0 (white) or −100 (black)")
        split.addWidget(self.mask_plot)
        split.setSizes([500, 380])
        lay.addWidget(split, 1)
        self.legend = _caption_label()
        lay.addWidget(self.legend)
        self.tabs.addTab(page, "Windows")

    def _build_attention_tab(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        self.att_caption = _caption_label()
        lay.addWidget(self.att_caption)
        self.att_view = ExtentView(colorbar=True)
        self.att_view.setMinimumSize(200, 150)
        self.att_layer = RectLayer(self.att_view.vb)
        self.att_view.sigClicked.connect(self.session.pick_pixel)
        lay.addWidget(self.att_view, 1)
        self.growth = _caption_label()
        lay.addWidget(self.growth)
        self.strip = BlockStrip(lambda b: setattr(self.session.view, "block", b))
        lay.addWidget(self.strip)
        self.tabs.addTab(page, "Window attention")

    def _build_bias_tab(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        self.bias_caption = _caption_label()
        lay.addWidget(self.bias_caption)
        row = QSplitter(Qt.Orientation.Horizontal)
        self.table_plot = ImagePlot("Δy = query row − key row (tokens)", "Δx = query col − key col (tokens)",
                                    "bias added to the logit (same scale on both)")
        self.query_bias_plot = ImagePlot("key row in the window", "key column in the window",
                                         "bias added to the logit (same scale on both)")
        row.addWidget(self.table_plot)
        row.addWidget(self.query_bias_plot)
        lay.addWidget(row, 2)
        self.scale_plot = pg.PlotWidget()
        self.scale_plot.setBackground(pg.mkColor(30, 30, 34))
        self.scale_plot.setMenuEnabled(False)
        self.scale_plot.setMouseEnabled(False, False)
        self.scale_plot.setLabel("left", "τ")
        self.scale_plot.setLabel("bottom", "head")
        self.scale_plot.setMinimumHeight(120)
        self.scale_bars: Optional[pg.BarGraphItem] = None
        self.scale_array: Optional[np.ndarray] = None
        lay.addWidget(self.scale_plot, 1)
        self.scale_note = _caption_label()
        lay.addWidget(self.scale_note)
        self.tabs.addTab(page, "Position bias")

    # -- state ----------------------------------------------------------------------------------
    def on_font_change(self) -> None:
        for plot in (self.mask_plot, self.table_plot, self.query_bias_plot):
            plot.refresh_font()
        style_plot(self.scale_plot.getPlotItem())
        self.att_view.refresh_font()

    def on_capture(self) -> None:
        """The input under the views and under every tile of the block strip: set once per capture."""
        img, cap = self.session.doc.input_image, self.session.capture
        if img is not None:
            self.win_view.set_input(img)
            self.att_view.set_input(img)
            if cap is not None and cap.family == "swin":
                self.strip.set_input(img, cap.num_blocks)

    def _redraw(self) -> None:
        self._dirty = True
        self.flush()

    def refresh(self) -> None:
        s, v = self.session, self.session.view
        cap = s.capture
        if cap.family != "swin":
            self._explain(VIT_REASON)
            return
        wins = s.products.get("swin_windows")
        if isinstance(wins, Unavailable):
            self._explain(wins.reason)
            return
        self.stack.setCurrentWidget(self.tabs)
        self.windows = wins
        b = cap.blocks[v.block]
        g = wins.geometry
        kind = (f"shifted windows (roll by {g.shift_size} tokens = {g.shift_size * g.token_px} px)" if g.shift_size
                else "regular windows")
        self.caption.setText(f"Block {v.block} of {cap.num_blocks} · stage {b.stage} · {kind} · "
                             f"{g.window_size}×{g.window_size} tokens per window · {g.num_windows} windows")
        self._draw_windows(wins)
        att = s.products.get("query_heads")
        if not isinstance(att, Unavailable):
            self.attention = att
            self._draw_attention(att, wins)
            if self.tabs.currentIndex() == 1:  # the strip reads every block: only when it is on screen
                self._draw_strip()
        bias = s.products.get("swin_bias")
        if not isinstance(bias, Unavailable):
            self.bias = bias
            self._draw_bias(bias, wins)

    def _explain(self, reason: str) -> None:
        self.windows = self.attention = self.bias = None
        self.colour_index = None
        self.caption.setText("")
        self.message.setText(reason)
        self.stack.setCurrentWidget(self.message)

    # -- windows --------------------------------------------------------------------------------
    def _draw_windows(self, w: SwinWindows) -> None:
        g, v = w.geometry, self.session.view
        t = g.token_px
        H, W = g.grid_size
        regions = self.regions_box.isChecked()
        labels = w.pixel_region if regions else w.pixel_window
        self.colour_index = labels
        pad_h, pad_w = w.pad_px
        ext_h, ext_w = H * t + pad_h, W * t + pad_w
        key = (id(w.rects), regions)  # the per-block arrays are shared while the capture lives
        if key != self._win_key:  # what depends on the block only: drawn once per block, not per query
            self._win_key = key
            self._draw_window_grid(w, labels, regions)
        query = self.win_query_layer
        query.clear()
        query.rects(w.rects[w.query_window], cosmetic_pen(QUERY_COLOR, 3.0), z=18)
        if g.num_windows <= 64 and not regions:
            big = max(w.rects[w.query_window], key=lambda r: r.height * r.width)
            query.numbers([(str(w.query_window), (big.x0 + big.x1) / 2, (big.y0 + big.y1) / 2)],
                          color=(80, 220, 255), fill=(20, 20, 24, 230))
        self.win_view.set_extent(max(ext_h, w.img_size[0]), max(ext_w, w.img_size[1]))
        q = v.query
        if isinstance(q, Patch):
            self.win_view.set_query((q.row, q.col), self.session.geometry.patch_size, w.query_cell, t)
        self.windows_caption.setText(
            f"<b>Windows of block {w.block}</b> (stage {w.stage}) drawn on the input, {w.img_size[0]}×{w.img_size[1]} "
            f"px; each colour is one window (numbered as the network partitions them). Query window "
            f"<span style='color:#50dcff'>{w.query_window}</span>, slot {w.query_slot}. Click a patch to make it the query.")
        pad_text = (f" The stage map ({H}×{W} tokens) is padded with zero tokens to {g.padded_size[0]}×{g.padded_size[1]} "
                    f"(hatched: {pad_h} px below, {pad_w} px right)." if (pad_h or pad_w) else "")
        if regions:
            chips = " ".join(color_chip(REGION_COLORS[r], str(r)) for r in range(9))
            self.legend.setText(f"Shift regions (the mask's labels, on the rolled grid): {chips}. Two tokens of a "
                                f"window attend unmasked iff their regions are equal." + pad_text)
        else:
            self.legend.setText(("Cyclic shift: a window at the bottom/right edge wraps around and covers pieces on "
                                 "the opposite edges." if g.shift_size else "Regular (unshifted) windows.") + pad_text)
        self._draw_mask(w, regions)

    def _draw_window_grid(self, w: SwinWindows, labels: np.ndarray, regions: bool) -> None:
        """Colours, outlines and numbers of every window, and the padded margin (all per block)."""
        g = w.geometry
        t, (H, W) = g.token_px, g.grid_size
        self.win_colour.setImage(categorical_rgba(labels, REGION_COLORS if regions else WINDOW_COLORS, 90),
                                 levels=(0, 255), autoLevels=False)
        self.win_colour.setRect(QRectF(0, 0, labels.shape[1], labels.shape[0]))
        layer = self.win_layer
        layer.clear()
        thin = cosmetic_pen(QColor(255, 255, 255, 170), 1.0)
        layer.outlines([r for rects in w.rects for r in rects], thin)
        if g.num_windows <= 64 and not regions:
            labels = []
            for i, rects in enumerate(w.rects):
                big = max(rects, key=lambda r: r.height * r.width, default=None)
                if big is not None and big.height * big.width > 0:  # on the window's largest piece
                    labels.append((str(i), (big.x0 + big.x1) / 2, (big.y0 + big.y1) / 2))
            layer.numbers(labels)
        pad_h, pad_w = w.pad_px
        ext_h, ext_w = H * t + pad_h, W * t + pad_w
        if pad_h or pad_w:  # the zero tokens the stage map is padded with, below and right of the map
            brush = QBrush(QColor(200, 200, 200, 120), Qt.BrushStyle.BDiagPattern)
            pen = cosmetic_pen(QColor(200, 200, 200), 1.0, Qt.PenStyle.DashLine)
            if pad_h:
                layer.add(_qrect(0, H * t, ext_w, pad_h, pen, brush))
            if pad_w:
                layer.add(_qrect(W * t, 0, pad_w, H * t, pen, brush))
            layer.text("padding", ext_w - 2, ext_h - 1, color=(220, 220, 220), anchor=(1, 1))

    def _draw_mask(self, w: SwinWindows, regions: bool) -> None:
        plot = self.mask_plot
        plot.setVisible(regions)
        plot.clear_image()
        if not regions:
            return
        M2 = w.geometry.window_size ** 2
        if w.mask is None:
            plot.set_title(f"Block {w.block}: regular windows, no mask added (0 everywhere)")
            plot.draw(np.zeros((M2, M2)), QRectF(0, 0, M2, M2), MASK_CMAP, (-100.0, 0.0))
        else:
            plot.set_title(f"Block {w.block}, window {w.query_window}: shift mask from the capture (0 / −100)")
            plot.draw(w.mask, QRectF(0, 0, M2, M2), MASK_CMAP, (-100.0, 0.0))
        # each slot's region as a strip above (keys) and left of (queries) the mask; padding slots hatched
        strip = categorical_rgba(w.slot_regions[None, :], REGION_COLORS, 255)  # (1, M², 4)
        top = pg.ImageItem(strip, levels=(0, 255), autoLevels=False)
        top.setRect(QRectF(0, -1.4, M2, 1))
        left = pg.ImageItem(strip.transpose(1, 0, 2).copy(), levels=(0, 255), autoLevels=False)  # (M², 1, 4)
        left.setRect(QRectF(-1.4, 0, 1, M2))
        plot.layer.add(top)
        plot.layer.add(left)
        if M2 <= 36:
            for j, r in enumerate(w.slot_regions):
                plot.layer.text(str(int(r)), j + 0.5, -0.9, color=(0, 0, 0), size="7pt")
                plot.layer.text(str(int(r)), -0.9, j + 0.5, color=(0, 0, 0), size="7pt")
        pad = np.flatnonzero(w.slot_tokens < 0)
        pen = cosmetic_pen(QColor(255, 255, 255), 1.0, Qt.PenStyle.DotLine)
        for j in pad:
            plot.layer.add(_qrect(j, -1.4, 1, 1, pen, QBrush(QColor(0, 0, 0, 160), Qt.BrushStyle.BDiagPattern)))
        plot.layer.add(_qrect(0, w.query_slot, M2, 1, cosmetic_pen(QUERY_COLOR, 2.0), None))
        plot.plot.vb.autoRange(padding=0.04)

    # -- window attention -----------------------------------------------------------------------
    def _draw_attention(self, a: QueryHeads, w: SwinWindows) -> None:
        """The selected head's map on the block's token grid, stretched over the pixels its tokens cover;
        only the query's window is coloured (the keys it can see)."""
        v, g = self.session.view, w.geometry
        values = a.head_map(v.head)  # (H_b, W_b)
        lo, hi = levels(values[a.window], "linear")
        self.att_view.set_map(values, a.token_px, (lo, hi), "linear", v.colormap, False, 0.8, False, a.window)
        self.att_layer.clear()
        self.att_layer.rects(w.rects[w.query_window], cosmetic_pen(QUERY_COLOR, 2.5), z=18)
        q = v.query
        if isinstance(q, Patch):
            self.att_view.set_query((q.row, q.col), self.session.geometry.patch_size, a.query_cell, a.token_px)
        self.att_view.set_extent(*w.img_size)
        self.att_caption.setText(
            f"<b>Window attention of {q.label()}</b> in block {w.block} (stage {w.stage}), {head_label(v.head)}: the "
            f"softmax probability its token (stage token {a.query_cell}) gives each key of its window; colour bar "
            f"0 – {hi:.3g}. Outside the window (outlined) it attends to nothing.")
        t, M, patch = g.token_px, g.window_size, self.session.geometry.patch_size
        merges = w.stage
        merge_text = (f"after {merges} patch merging{'s' if merges > 1 else ''} (each joins 2×2 tokens into one)"
                      if merges else "no patch merging yet (the patch embedding's tokens)")
        self.growth.setText(
            f"Stage {w.stage}: one token = {t}×{t} input pixels ({t // patch}×{t // patch} patches of {patch} px), "
            f"{merge_text}; a window of {M}×{M} tokens covers {M * t}×{M * t} px"
            + (f"; this block shifts it by {g.shift_size * t} px" if g.shift_size else "") + ". Below, every block "
            "(number, stage s, window side in px, ⇲ shifted), each tile scaled to its own maximum; click one or "
            "step with ↑/↓ to see the window grow.")

    def _draw_strip(self) -> None:
        """Every block's tile for the current head and query, from the cached per-block products."""
        s, v = self.session, self.session.view
        cap = s.capture
        if len(self.strip.blocks) != cap.num_blocks and s.doc.input_image is not None:
            self.strip.set_input(s.doc.input_image, cap.num_blocks)
        tiles, captions = [], []
        for i, b in enumerate(cap.blocks):
            a = s.products.get("query_heads", block=i)
            w = s.products.get("swin_windows", block=i)
            g = b.geometry
            side = g.window_size * g.token_px
            captions.append(f"{i}  s{b.stage}  {side}px" + (" ⇲" if g.shift_size else ""))
            if isinstance(a, Unavailable) or isinstance(w, Unavailable) or a is None or w is None:
                tiles.append(None)
                continue
            if isinstance(v.head, int) and v.head >= b.num_heads:  # the head exists in later stages only
                captions[-1] += f" · {b.num_heads} heads"
                tiles.append(None)
                continue
            tiles.append(BlockTile(a.head_map(v.head), a.window, a.token_px, w.rects[w.query_window], v.colormap))
        self.strip.set_blocks(tiles, captions, v.block)

    # -- position bias --------------------------------------------------------------------------
    def _draw_bias(self, b: SwinBias, w: SwinWindows) -> None:
        M = b.window_size
        if b.version == 1:
            top = float(np.max(np.abs(b.table))) or 1.0
            lv, cmap, what = (-top, top), "CET-D1", "learned relative position bias table"
        else:
            lv, cmap, what = (float(b.table.min()), float(b.table.max())), "viridis", \
                "continuous position bias 16·sigmoid(MLP(log-spaced offsets))"
            if not lv[1] > lv[0]:
                lv = (lv[0], lv[0] + 1.0)
        side = 2 * M - 1
        self.table_plot.clear_image()
        self.table_plot.draw(b.table, QRectF(-(M - 1) - 0.5, -(M - 1) - 0.5, side, side), cmap, lv)
        self.table_plot.set_title(f"Block {w.block} (stage {w.stage}), {b.head_label}: bias per offset "
                                  f"({side}×{side})")
        qy, qx = b.query_pos
        # the offsets this query uses: dy = qy − ky for ky in 0..M−1 (and likewise dx)
        self.table_plot.layer.add(_qrect(qx - (M - 1) - 0.5, qy - (M - 1) - 0.5, M, M,
                                         cosmetic_pen(QUERY_COLOR, 2.0), None))
        self.query_bias_plot.clear_image()
        self.query_bias_plot.draw(b.query_bias, QRectF(-0.5, -0.5, M, M), cmap, lv)
        self.query_bias_plot.integer_ticks(M, M)
        self.table_plot.integer_ticks(side, side, -(M - 1), -(M - 1), 1 if M <= 8 else 2)
        self.query_bias_plot.set_title(f"Block {w.block}, {b.head_label}: bias the query (window row {qy}, "
                                       f"col {qx}) adds to each key")
        self.query_bias_plot.layer.add(_qrect(qx - 0.5, qy - 0.5, 1, 1, cosmetic_pen(QUERY_COLOR, 2.5), None))
        self.bias_caption.setText(
            f"<b>Swin v{b.version} position bias</b> of block {w.block}, {b.head_label}: the {what}, as the network "
            f"added it to the logits (read from the capture). Left: by offset query − key (cyan: the offsets this "
            f"query uses); right: the same values at the keys of the query's {M}×{M} window.")
        self.scale_plot.clear()
        self.scale_bars = None
        v = self.session.view
        if b.logit_scale is None:
            self.scale_array = None
            self.scale_plot.setVisible(False)
            self.scale_note.setText("Swin v1 has no temperature: its logits are the scaled dot product q·k/√d plus "
                                    "this bias.")
            return
        self.scale_plot.setVisible(True)
        n = len(b.logit_scale)
        self.scale_array = b.logit_scale.copy()
        brushes = [pg.mkBrush(80, 220, 255) if v.head == h else pg.mkBrush(150, 150, 160) for h in range(n)]
        self.scale_bars = pg.BarGraphItem(x=np.arange(n), height=b.logit_scale, width=0.6, brushes=brushes)
        self.scale_plot.addItem(self.scale_bars)
        self.scale_plot.getAxis("bottom").setTicks([[(h, str(h)) for h in range(n)]])
        self.scale_plot.setXRange(-0.6, n - 0.4, padding=0)
        self.scale_plot.setYRange(0, float(b.logit_scale.max()) * 1.15, padding=0)
        self.scale_plot.setTitle(f"Block {w.block}: logit scale τ per head (cosine similarity × τ)", color="#dddddd",
                                 size="9pt")
        vals = ", ".join(f"{x:.2f}" for x in b.logit_scale)
        self.scale_note.setText(f"Swin v2 logits: cos(q, k)·τ + bias, τ = exp(min(logit_scale, log 100)) "
                                f"≤ 100; τ per head: {vals}.")


def _qrect(x: float, y: float, w: float, h: float, pen, brush):
    """A rectangle item at (x, y) of size (w, h) in plot coordinates, above the images."""
    return rect_item(QRectF(x, y, w, h), pen, brush, z=25)
