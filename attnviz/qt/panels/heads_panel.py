"""Heads panel: every head of the block as small multiples, every block × head at once, and one head's
full attention matrix."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QHBoxLayout, QLabel, QTabWidget

from ...session.display import levels
from ...session.products import AttnMatrix, QueryHeads, Unavailable
from ..widgets.overlay import lookup_table
from .base import Panel

SELECTED = pg.mkPen(80, 220, 255, width=3)
UNSELECTED = pg.mkPen(70, 70, 78, width=1)


def mosaic(tiles: list[list[np.ndarray]], gap: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """Rows of equally sized (h, w) tiles -> one (R·(h+gap)−gap, C·(w+gap)−gap) image, NaN between tiles;
    each tile scaled to its own maximum so that every head's pattern is visible."""
    h, w = tiles[0][0].shape
    R, C = len(tiles), max(len(r) for r in tiles)
    out = np.full((R * (h + gap) - gap, C * (w + gap) - gap), np.nan)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            top = float(np.max(t))
            out[i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = t / top if top > 0 else t
    return out, (h, w)


def image_plot(left: str, bottom: str) -> tuple[pg.PlotWidget, pg.ImageItem]:
    """A plot with labelled axes holding one image, rows downwards, square pixels."""
    plot = pg.PlotWidget()
    plot.setBackground(pg.mkColor(30, 30, 34))
    plot.invertY(True)
    plot.setAspectLocked(True)
    plot.setLabel("left", left)
    plot.setLabel("bottom", bottom)
    img = pg.ImageItem()
    plot.addItem(img)
    return plot, img


class HeadsPanel(Panel):
    title = "Heads"
    help_text = ("Each head of a block computes its own softmax(q·k/√d) and so looks somewhere else: one "
                 "follows its neighbours, another the whole object. Tiles show the query's attention per head, "
                 "captioned with its entropy (low = focused) and mean attention distance in pixels over all "
                 "queries; click a tile to select that head. <i>All blocks</i> shows the whole model on one "
                 "screen (each tile scaled to its own maximum); <i>Matrix</i> the full attention matrix, one row "
                 "per query.")
    reads = ("block", "head", "query", "colormap")
    default_size = (700, 420)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        top = QHBoxLayout()
        self.caption = QLabel("")
        self.caption.setStyleSheet("font-weight:600")
        top.addWidget(self.caption, 1)
        top.addWidget(self.help_button())
        self.body.addLayout(top)
        self.tabs = QTabWidget()
        self.body.addWidget(self.tabs, 1)
        # small multiples
        self.grid = pg.GraphicsLayoutWidget()
        self.grid.setBackground(pg.mkColor(30, 30, 34))
        self.tabs.addTab(self.grid, "Heads")
        self.tiles: list[tuple[pg.ViewBox, pg.ImageItem, pg.LabelItem]] = []
        self.arrays: list[np.ndarray] = []  # what each tile shows, for tests and export
        self.grid.scene().sigMouseClicked.connect(self._tile_clicked)
        # all blocks × heads
        self.overview, self.overview_img = image_plot("block", "head")
        self.overview_sel = pg.QtWidgets.QGraphicsRectItem()
        self.overview_sel.setPen(SELECTED)
        self.overview.addItem(self.overview_sel)
        self.overview_array: Optional[np.ndarray] = None
        self._tile = (1, 1)
        self.overview.scene().sigMouseClicked.connect(self._overview_clicked)
        self.tabs.addTab(self.overview, "All blocks")
        # matrix
        self.matrix, self.matrix_img = image_plot("query token", "key token")
        self.matrix_row = pg.InfiniteLine(angle=0, pen=pg.mkPen(80, 220, 255, width=1.5))
        self.matrix.addItem(self.matrix_row)
        self.matrix_array: Optional[np.ndarray] = None
        self.tabs.addTab(self.matrix, "Matrix")
        self.tabs.currentChanged.connect(lambda _i: self.schedule())
        session.products.ready.connect(lambda name: self.schedule() if name == "stats" else None)

    # -- building -------------------------------------------------------------------------------
    def _ensure_tiles(self, n: int) -> None:
        if len(self.tiles) == n:
            return
        self.grid.clear()
        self.tiles = []
        cols = int(np.ceil(np.sqrt(n)))
        for h in range(n):
            r, c = divmod(h, cols)
            label = pg.LabelItem("", size="8pt", color="#dddddd")
            self.grid.addItem(label, row=2 * r, col=c)
            vb = self.grid.addViewBox(row=2 * r + 1, col=c, lockAspect=True, invertY=True, enableMouse=False,
                                      enableMenu=False)
            img = pg.ImageItem()
            vb.addItem(img)
            vb.setBorder(UNSELECTED)
            self.tiles.append((vb, img, label))

    def _tile_clicked(self, ev) -> None:
        for h, (vb, _img, _label) in enumerate(self.tiles):
            if vb.sceneBoundingRect().contains(ev.scenePos()):
                self.session.view.head = h
                return

    def _overview_clicked(self, ev) -> None:
        if self.overview_array is None:
            return
        p = self.overview.getPlotItem().vb.mapSceneToView(ev.scenePos())
        h, w = self._tile
        row, col = int(p.y() // (h + 1)), int(p.x() // (w + 1))
        v = self.session.view
        if 0 <= row < v.limits.num_blocks and 0 <= col < v.limits.heads[row] and p.x() >= 0 and p.y() >= 0:
            v.update(block=row, head=col)

    # -- drawing --------------------------------------------------------------------------------
    def refresh(self) -> None:
        v, products = self.session.view, self.session.products
        lut = lookup_table(v.colormap, False)
        qh: QueryHeads = products.get("query_heads")
        if isinstance(qh, Unavailable):
            self.caption.setText(qh.reason)
            return
        n = qh.maps.shape[0]
        self.caption.setText(f"Block {v.block}: attention of the {qh.label}, {n} head{'s' if n != 1 else ''}")
        tab = self.tabs.currentIndex()
        if tab == 0:
            self._draw_heads(qh, lut)
        elif tab == 1:
            self._draw_overview(lut)
        else:
            self._draw_matrix(lut)

    def _draw_heads(self, qh: QueryHeads, lut: np.ndarray) -> None:
        v = self.session.view
        n = qh.maps.shape[0]
        self._ensure_tiles(n)
        stats = self.session.products.get("stats")
        self.arrays = []
        for h, (vb, img, label) in enumerate(self.tiles):
            m = qh.maps[h]  # (H_b, W_b)
            self.arrays.append(m)
            drawn = m if qh.window is None else np.where(qh.window, m, np.nan)  # Swin: only the query's window
            img.setImage(drawn, levels=levels(m, "linear"), autoLevels=False)
            img.setLookupTable(lut)
            img.setRect(QRectF(0, 0, m.shape[1], m.shape[0]))
            vb.setBorder(SELECTED if v.head == h else UNSELECTED)
            vb.autoRange(padding=0)
            text = f"<b>head {h}</b>"
            if stats is not None and not isinstance(stats, Unavailable):
                ent, dist = stats.entropy[v.block, h], stats.mean_distance[v.block, h]
                text += f" · H {ent:.2f} · {dist:.0f} px"
            label.setText(text)

    def _draw_overview(self, lut: np.ndarray) -> None:
        from ...analysis.swin_maps import stage_map_to_patch_grid

        every = self.session.products.get("model_query_maps")
        if isinstance(every, Unavailable):
            self.caption.setText(every.reason)
            return
        # Swin stages have coarser grids: each map is shown on the first block's grid (a merged token
        # covers its children), as analysis does for the Swin rollout
        first = every[0]
        grid0 = first.maps.shape[1:]
        rows = [[t if b.token_px == first.token_px else
                 stage_map_to_patch_grid(torch.from_numpy(t), b.token_px // first.token_px, grid0).numpy()
                 for t in b.maps] for b in every]
        img, self._tile = mosaic(rows)
        self.overview_array = img
        self.overview_img.setImage(img, levels=(0, 1), autoLevels=False)
        self.overview_img.setLookupTable(lut)
        h, w = self._tile
        v = self.session.view
        self.overview_sel.setRect(QRectF(v.head * (w + 1) - 0.5, v.block * (h + 1) - 0.5, w + 1, h + 1)
                                  if isinstance(v.head, int) else QRectF(-0.5, v.block * (h + 1) - 0.5,
                                                                         img.shape[1] + 1, h + 1))
        ax = self.overview.getAxis("left")
        ax.setTicks([[(i * (h + 1) + h / 2, str(i)) for i in range(len(rows))]])
        self.overview.getAxis("bottom").setTicks([[(j * (w + 1) + w / 2, str(j)) for j in range(max(map(len, rows)))]])

    def _draw_matrix(self, lut: np.ndarray) -> None:
        m: AttnMatrix = self.session.products.get("attn_matrix")
        if isinstance(m, Unavailable):
            self.caption.setText(m.reason)
            return
        self.matrix_array = m.matrix
        self.matrix_img.setImage(m.matrix, levels=levels(m.matrix, "linear"), autoLevels=False)
        self.matrix_img.setLookupTable(lut)
        self.matrix.setTitle(m.title, color="#dddddd", size="9pt")
        if m.query_row is not None:
            self.matrix_row.setPos(m.query_row + 0.5)
            self.matrix_row.setVisible(True)
        else:
            self.matrix_row.setVisible(False)
        n = m.matrix.shape[0]
        ticks = [(i + 0.5, name) for i, name in enumerate(m.labels)]
        step = max(1, n // 8)
        first = len(m.labels) + (step if m.labels else 0)  # numbers start clear of the prefix labels
        ticks += [(i + 0.5, str(i)) for i in range(first - first % step if step > 1 else first, n, step)
                  if i >= first]
        for side in ("left", "bottom"):
            self.matrix.getAxis(side).setTicks([ticks])
