"""Heads panel: every head of the block as small multiples, every block × head at once, and one head's
full attention matrix.

A view change touches only what depends on it: a head change moves the highlight, a block change
recolours the tiles and their captions, a hover moves the outline on the tiles (one widget paints them
all: :class:`~attnviz.qt.widgets.head_grid.HeadGrid`). The second and third tabs are built when first
shown (they are not on screen at start-up).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QTabWidget, QVBoxLayout, QWidget

from ...session.display import levels, mosaic
from ...session.products import AttnMatrix, QueryHeads, Unavailable
from ..widgets.colorbar import ColorBar
from ..widgets.colorize import colorize
from ..widgets.fonts import style_plot
from ..widgets.hatch import LEGEND, hatch_item, mask_path
from ..widgets.head_grid import HeadGrid
from ..widgets.overlay import QUERY_PEN, RGBAImageItem, cached, shared_lookup_table
from .base import Panel

SELECTED = pg.mkPen(80, 220, 255, width=3)


def head_mosaic(rows: list[list[np.ndarray]], gap: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """Rows (blocks) of equally sized (h, w) head maps -> one mosaic image (see session.display.mosaic),
    each tile scaled to its own maximum so that every head's pattern is visible; a block with fewer heads
    leaves its row's end empty. Returns the image and the tile size."""
    h, w = rows[0][0].shape
    tiles = np.full((len(rows), max(len(r) for r in rows), h, w), np.nan)  # (blocks, heads, h, w)
    for i, row in enumerate(rows):
        for j, t in enumerate(row):
            top = float(np.max(t))
            tiles[i, j] = t / top if top > 0 else t
    return mosaic(tiles, gap), (h, w)


def _cosmetic(color: QColor, width: float) -> QPen:
    pen = QPen(color)
    pen.setCosmetic(True)
    pen.setWidthF(width)
    return pen


class RowMarker(QGraphicsRectItem):
    """The query's row of the attention matrix, outlined over the matrix only (not the whole plot)."""

    def __init__(self):
        super().__init__()
        self.setPen(_cosmetic(QUERY_PEN, 2.0))
        self.setZValue(20)
        self._row = 0

    def set_row(self, row: int, n_cols: int) -> None:
        self._row = row
        self.setRect(QRectF(0, row, n_cols, 1))

    def value(self) -> float:
        """The centre of the marked row, in matrix coordinates (row r spans r..r+1)."""
        return self._row + 0.5


class ImagePlot(pg.GraphicsLayoutWidget):
    """A plot with labelled axes holding one image (rows downwards, square pixels) and its colour bar."""

    def __init__(self, left: str, bottom: str):
        super().__init__()
        self.setBackground(pg.mkColor(30, 30, 34))
        self.plot = self.addPlot(row=0, col=0, enableMenu=False)
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.setLabel("left", left)
        self.plot.setLabel("bottom", bottom)
        self.plot.hideButtons()
        self.img = cached(RGBAImageItem())
        self.plot.addItem(self.img)
        self.bar = ColorBar()
        self.addItem(self.bar, row=0, col=1)
        self.title = ""
        style_plot(self.plot)

    def getPlotItem(self):
        return self.plot

    def getAxis(self, side: str):
        return self.plot.getAxis(side)

    def set_title(self, title: str) -> None:
        if title != self.title:
            self.title = title
            style_plot(self.plot, title)

    def refresh_font(self) -> None:
        style_plot(self.plot, self.title or None)
        self.bar.refresh_font()


class HeadsPanel(Panel):
    title = "Heads"
    help_text = ("Each head of a block computes its own softmax(q·k/√d) and so looks somewhere else: one "
                 "follows its neighbours, another the whole object. Tiles show the query's attention per head, "
                 "each coloured from 0 to its own maximum and captioned with its entropy H (low = focused) and "
                 "mean attention distance in pixels over all queries; click a tile to select that head. "
                 "<i>All blocks</i> shows the whole model on one screen (each tile scaled to its own maximum); "
                 "<i>Matrix</i> the full attention matrix, one row per query (the query's row outlined). For Swin, "
                 "hatched tokens lie outside the query's window: no attention is computed there at all.")
    reads = ("block", "head", "query", "colormap")
    default_size = (700, 420)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        self.caption_row()
        self.tabs = QTabWidget()
        self.body.addWidget(self.tabs, 1)
        # small multiples
        self.grid = HeadGrid()
        self.tabs.addTab(self.grid, "Heads")
        self.arrays: list[np.ndarray] = []  # what each tile shows, for tests and export
        self.grid.sigClicked.connect(lambda h: setattr(self.session.view, "head", h))
        self._drawn: Optional[tuple] = None  # what the tiles show: (query heads object, colormap)
        self._captioned: Optional[tuple] = None  # (query heads, stats, block) behind the captions
        self._overview_key: Optional[tuple] = None  # (every block's maps, colormap) behind the mosaic
        self._qh: Optional[QueryHeads] = None
        # all blocks × heads, and the matrix: built when their tab is first shown
        self.overview: Optional[ImagePlot] = None
        self.overview_array: Optional[np.ndarray] = None
        self.overview_outside: Optional[np.ndarray] = None  # bool, same shape: tokens outside the window (Swin)
        self._tile = (1, 1)
        self.matrix: Optional[ImagePlot] = None
        self.matrix_row: Optional[RowMarker] = None
        self.matrix_array: Optional[np.ndarray] = None
        self._pages = [QWidget(), QWidget()]
        for page, name in zip(self._pages, ("All blocks", "Matrix")):
            QVBoxLayout(page).setContentsMargins(0, 0, 0, 0)
            self.tabs.addTab(page, name)
        self.tabs.currentChanged.connect(lambda _i: self.schedule())
        session.products.ready.connect(lambda name: self.schedule() if name == "stats" else None)
        session.view.signal("hover").connect(lambda *_: self.show_hover())

    # -- building -------------------------------------------------------------------------------
    def _build_overview(self) -> ImagePlot:
        if self.overview is None:
            self.overview = ImagePlot("block", "head")
            self.overview.bar.set("inferno", (0.0, 1.0))
            self.overview_sel = QGraphicsRectItem()
            self.overview_sel.setPen(SELECTED)
            self.overview_sel.setZValue(20)
            self.overview.plot.addItem(self.overview_sel)
            self.overview_hatch = hatch_item()
            self.overview.plot.addItem(self.overview_hatch)
            self.overview.scene().sigMouseClicked.connect(self._overview_clicked)
            self._pages[0].layout().addWidget(self.overview)
        return self.overview

    def _build_matrix(self) -> ImagePlot:
        if self.matrix is None:
            self.matrix = ImagePlot("query token", "key token")
            self.matrix_row = RowMarker()
            self.matrix.plot.addItem(self.matrix_row)
            self._pages[1].layout().addWidget(self.matrix)
        return self.matrix

    def _overview_clicked(self, ev) -> None:
        if self.overview_array is None:
            return
        p = self.overview.plot.vb.mapSceneToView(ev.scenePos())
        h, w = self._tile
        row, col = int(p.y() // (h + 1)), int(p.x() // (w + 1))
        v = self.session.view
        if 0 <= row < v.limits.num_blocks and 0 <= col < v.limits.heads[row] and p.x() >= 0 and p.y() >= 0:
            v.update(block=row, head=col)

    def on_font_change(self) -> None:
        for plot in (self.overview, self.matrix):
            if plot is not None:
                plot.refresh_font()

    # -- drawing --------------------------------------------------------------------------------
    def refresh(self) -> None:
        v, products = self.session.view, self.session.products
        qh: QueryHeads = products.get("query_heads")
        if isinstance(qh, Unavailable):
            self.caption.setText(qh.reason)
            return
        self._qh = qh
        n = qh.maps.shape[0]
        text = f"Block {v.block}: attention of the {qh.label}, {n} head{'s' if n != 1 else ''}"
        tab = self.tabs.currentIndex()
        if qh.window is not None and tab in (0, 1):
            text += f" · {LEGEND}"
        if text != self.caption.text():
            self.caption.setText(text)
        if tab == 0:
            self._draw_heads(qh)
        elif tab == 1:
            self._draw_overview()
        else:
            self._draw_matrix()

    def _draw_heads(self, qh: QueryHeads) -> None:
        v = self.session.view
        if self._drawn is None or self._drawn[0] is not qh or self._drawn[1] != v.colormap:
            lut = shared_lookup_table(v.colormap, False)
            clear = None if qh.window is None else ~qh.window  # Swin: only the query's window is coloured
            self.arrays = [qh.maps[h] for h in range(qh.maps.shape[0])]  # each (H_b, W_b)
            self.grid.set_tiles([colorize(m, levels(m, "linear"), lut, clear) for m in self.arrays], clear)
            self._drawn = (qh, v.colormap)
            self.show_hover()
        self.grid.set_selected(v.head if isinstance(v.head, int) else None)
        stats = self.session.products.get("stats")
        c = self._captioned
        if c is None or c[0] is not qh or c[1] is not stats or c[2] != v.block:
            self._captioned = (qh, stats, v.block)
            have = stats is not None and not isinstance(stats, Unavailable)
            self.grid.set_captions([f"head {h}" + (f" · H {stats.entropy[v.block, h]:.2f} · "
                                                   f"{stats.mean_distance[v.block, h]:.0f} px" if have else "")
                                    for h in range(len(self.arrays))])

    def show_hover(self) -> None:
        """The hovered patch outlined on every head tile, on the block's token grid (linked with the Image panel)."""
        g, qh, hover = self.session.geometry, self._qh, self.session.view.hover
        if g is None or qh is None or hover is None:
            self.grid.set_hover(None)
            return
        f = max(qh.token_px // g.patch_size, 1)  # input patches per side of one of this block's tokens
        self.grid.set_hover((hover.row // f, hover.col // f))

    def _draw_overview(self) -> None:
        from ...analysis.swin_maps import stage_map_to_patch_grid

        plot = self._build_overview()
        v = self.session.view
        every = self.session.products.get("model_query_maps")
        if isinstance(every, Unavailable):
            self.caption.setText(every.reason)
            return
        # Swin stages have coarser grids: each map is shown on the first block's grid (a merged token
        # covers its children), as analysis does for the Swin rollout
        first = every[0]
        grid0 = first.maps.shape[1:]

        def on_grid0(b: QueryHeads, t: np.ndarray) -> np.ndarray:
            if b.token_px == first.token_px:
                return t
            return stage_map_to_patch_grid(torch.from_numpy(t), b.token_px // first.token_px, grid0).numpy()

        rows = [[on_grid0(b, t) for t in b.maps] for b in every]
        k = self._overview_key
        if k is None or k[0] is not every or k[1] != v.colormap:
            self._overview_key = (every, v.colormap)
            img, self._tile = head_mosaic(rows)
            self.overview_array = img
            h, w = self._tile
            outside = np.zeros(img.shape, dtype=bool)
            if first.window is not None:  # Swin: each block's window, on the first grid
                for i, b in enumerate(every):
                    win = on_grid0(b, b.window.astype(np.float64)) > 0.5  # (h, w)
                    for j in range(b.maps.shape[0]):
                        outside[i * (h + 1): i * (h + 1) + h, j * (w + 1): j * (w + 1) + w] = ~win
            self.overview_outside = outside
            plot.img.setImage(colorize(img, (0.0, 1.0), shared_lookup_table(v.colormap, False), outside),
                              autoLevels=False, levels=None)
            plot.img.setRect(QRectF(0, 0, img.shape[1], img.shape[0]))
            self.overview_hatch.setPath(mask_path(outside))
            plot.bar.set(v.colormap, (0.0, 1.0))
            plot.set_title("each tile from 0 to its own maximum")
            plot.getAxis("left").setTicks([[(i * (h + 1) + h / 2, str(i)) for i in range(len(rows))]])
            plot.getAxis("bottom").setTicks([[(j * (w + 1) + w / 2, str(j)) for j in range(max(map(len, rows)))]])
        h, w = self._tile
        img = self.overview_array
        self.overview_sel.setRect(QRectF(v.head * (w + 1) - 0.5, v.block * (h + 1) - 0.5, w + 1, h + 1)
                                  if isinstance(v.head, int) else QRectF(-0.5, v.block * (h + 1) - 0.5,
                                                                         img.shape[1] + 1, h + 1))

    def _draw_matrix(self) -> None:
        plot = self._build_matrix()
        v = self.session.view
        m: AttnMatrix = self.session.products.get("attn_matrix")
        if isinstance(m, Unavailable):
            self.caption.setText(m.reason)
            return
        self.matrix_array = m.matrix
        lv = levels(m.matrix, "linear")
        plot.img.setImage(colorize(m.matrix, lv, shared_lookup_table(v.colormap, False)), autoLevels=False,
                          levels=None)  # (n, n, 4)
        n = m.matrix.shape[0]
        plot.img.setRect(QRectF(0, 0, m.matrix.shape[1], n))
        plot.bar.set(v.colormap, lv)
        plot.set_title(m.title)
        if m.query_row is not None:
            self.matrix_row.set_row(m.query_row, m.matrix.shape[1])
            self.matrix_row.setVisible(True)
        else:
            self.matrix_row.setVisible(False)
        ticks = [(i + 0.5, name) for i, name in enumerate(m.labels)]
        step = max(1, n // 8)
        first = len(m.labels) + (step if m.labels else 0)  # numbers start clear of the prefix labels
        ticks += [(i + 0.5, str(i)) for i in range(first - first % step if step > 1 else first, n, step)
                  if i >= first]
        for side in ("left", "bottom"):
            plot.getAxis(side).setTicks([ticks])
