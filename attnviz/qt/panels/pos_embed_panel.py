"""Position embeddings panel: the ViT paper's similarity grid (Fig. 7 centre), the query patch's tile
enlarged, and similarity against patch distance beside a fixed 2-D sin-cos embedding.

Everything drawn is the ``pos_similarity`` product (:mod:`attnviz.session.pos_products`), computed by
:mod:`attnviz.analysis.pos_embed` from the embedding as the network adds it at the current input size.
The gh×gw tiles are composed into ONE image (a mosaic, NaN between tiles), so a 37×37 grid is one item,
not 1369 widgets.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QDockWidget, QGraphicsRectItem, QLabel, QPushButton

from ...session.display import mosaic
from ...session.pos_products import SWIN_PANEL, PositionSimilarity
from ...session.products import Unavailable
from ...session.query import Patch
from ..widgets.colorbar import ColorBar
from ..widgets.colorize import colorize
from ..widgets.overlay import RGBAImageItem, lookup_table
from .base import Panel

QUERY_COLOUR = (80, 220, 255)
LEARNED_COLOUR = (255, 170, 60)
SINCOS_COLOUR = (120, 200, 255)
LEVELS = (-1.0, 1.0)  # cosine similarity


def _outline(width: float) -> QGraphicsRectItem:
    item = QGraphicsRectItem()
    pen = QPen(pg.mkColor(*QUERY_COLOUR))
    pen.setCosmetic(True)
    pen.setWidthF(width)
    item.setPen(pen)
    item.setZValue(20)
    item.setVisible(False)
    return item


class PosEmbedPanel(Panel):
    title = "Position embeddings"
    help_text = ("Each small tile belongs to one patch and colours how similar (cosine, −1 to 1) its learned position "
                 "embedding is to every other patch's: in a trained ViT the bright spot sits around the patch itself, "
                 "so the 2-D layout of the image has been learned from a 1-D sequence (Dosovitskiy et al. 2021, "
                 "Fig. 7). Below, the similarity of all pairs of patches the same distance apart (mean; band: spread) "
                 "beside a fixed 2-D sin-cos embedding, and ρ, the rank correlation of similarity with distance "
                 "(−1: nearer is always more alike). Click a tile to make that patch the query everywhere.")
    reads = ("query", "colormap")
    default_size = (720, 640)

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        self.caption_row()
        self.message = QLabel("")  # what a model without a learned absolute embedding uses instead
        self.message.setWordWrap(True)
        self.message.setStyleSheet("padding:8px;font-size:11pt")
        self.message.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.message.setVisible(False)
        self.body.addWidget(self.message)
        self.to_swin = QPushButton(f"Show the {SWIN_PANEL} panel")
        self.to_swin.clicked.connect(self._show_swin_panel)
        self.to_swin.setVisible(False)
        self.body.addWidget(self.to_swin, 0, Qt.AlignmentFlag.AlignLeft)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground(pg.mkColor(30, 30, 34))
        self.body.addWidget(self.canvas, 1)
        self.grid_title = self.canvas.addLabel("", row=0, col=0, size="9pt", color="#dddddd")
        self.tile_title = self.canvas.addLabel("", row=0, col=1, size="9pt", color="#dddddd")
        # the mosaic of every patch's tile
        self.grid_vb = self.canvas.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False,
                                              enableMenu=False)
        # finished RGBA (pyqtgraph's float + lookup-table path with NaN gaps crashed drawImage in tests)
        self.grid_img = RGBAImageItem()
        self.grid_vb.addItem(self.grid_img)
        self.grid_sel = _outline(2.5)
        self.grid_vb.addItem(self.grid_sel)
        self.bar = ColorBar()  # cosine similarity, −1..1: shared by the grid and the enlarged tile
        self.canvas.addItem(self.bar, row=1, col=2)
        self._mosaic_of: Optional[tuple] = None  # (data, colormap) the mosaic image was coloured for
        # the query's tile, enlarged, with row/column axes
        self.tile_plot = self.canvas.addPlot(row=1, col=1)
        self.tile_plot.invertY(True)
        self.tile_plot.setAspectLocked(True)
        self.tile_plot.setMouseEnabled(False, False)
        self.tile_plot.hideButtons()
        self.tile_plot.setMenuEnabled(False)
        self.tile_plot.setLabel("left", "patch row")
        self.tile_plot.setLabel("bottom", "patch column")
        self.tile_img = RGBAImageItem()
        self.tile_plot.addItem(self.tile_img)
        self.tile_sel = _outline(2.0)
        self.tile_plot.addItem(self.tile_sel)
        # similarity against distance
        self.curve_plot = self.canvas.addPlot(row=2, col=0, colspan=3)
        self.curve_plot.setLabel("bottom", "distance between the two patches (patches)")
        self.curve_plot.setLabel("left", "cosine similarity")
        self.curve_plot.showGrid(x=True, y=True, alpha=0.2)
        self.curve_plot.setMouseEnabled(False, False)
        self.curve_plot.hideButtons()
        self.curve_plot.setMenuEnabled(False)
        self.legend = self.curve_plot.addLegend(offset=(10, -10), labelTextColor="#dddddd",
                                                brush=pg.mkBrush(30, 30, 34, 200))
        self.curves = {}
        for key, colour, name in (("learned", LEARNED_COLOUR, "learned (this model)"),
                                  ("sincos", SINCOS_COLOUR, "fixed 2-D sin-cos")):
            pen = pg.mkPen(*colour, width=2)
            mean = self.curve_plot.plot([], [], pen=pen, symbol="o", symbolSize=5, symbolBrush=colour,
                                        symbolPen=None, name=name)
            lo = pg.PlotDataItem([], [], pen=pg.mkPen(*colour, 60))
            hi = pg.PlotDataItem([], [], pen=pg.mkPen(*colour, 60))
            band = pg.FillBetweenItem(lo, hi, brush=pg.mkBrush(*colour, 45))
            for item in (lo, hi, band):
                self.curve_plot.addItem(item)
            self.curves[key] = (mean, lo, hi)
        self.canvas.ci.layout.setRowStretchFactor(1, 3)
        self.canvas.ci.layout.setRowStretchFactor(2, 2)
        self.canvas.ci.layout.setColumnStretchFactor(0, 3)
        self.canvas.ci.layout.setColumnStretchFactor(1, 2)
        self.canvas.scene().sigMouseClicked.connect(self._clicked)
        session.products.ready.connect(lambda name: self.schedule() if name == "pos_similarity" else None)

        # what is drawn, for tests and export
        self.data: Optional[PositionSimilarity] = None
        self.grid_array: Optional[np.ndarray] = None  # the mosaic
        self.tile_array: Optional[np.ndarray] = None  # the query's (gh, gw) tile
        self.curve_arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # distances, mean, std

    # -- input ----------------------------------------------------------------------------------
    def _clicked(self, ev) -> None:
        """A click on a tile of the mosaic, or on a cell of the enlarged tile, picks that patch as the query."""
        if self.data is None:
            return
        gh, gw = self.data.grid
        pos = ev.scenePos()
        if self.grid_vb.sceneBoundingRect().contains(pos):
            p = self.grid_vb.mapSceneToView(pos)
            r, c = int(np.floor(p.y() / (gh + 1))), int(np.floor(p.x() / (gw + 1)))
        elif self.tile_plot.vb.sceneBoundingRect().contains(pos):
            p = self.tile_plot.vb.mapSceneToView(pos)
            r, c = int(np.floor(p.y())), int(np.floor(p.x()))
        else:
            return
        if 0 <= r < gh and 0 <= c < gw:
            self.session.view.query = Patch(r, c)

    def _show_swin_panel(self) -> None:
        dock = self._swin_dock()
        if dock is not None:
            dock.show()
            dock.raise_()

    def _swin_dock(self) -> Optional[QDockWidget]:
        win = self.window()
        for dock in win.findChildren(QDockWidget) if win is not None else []:
            if dock.windowTitle() == SWIN_PANEL:
                return dock
        return None

    # -- drawing --------------------------------------------------------------------------------
    def refresh(self) -> None:
        data = self.session.products.get("pos_similarity")  # None while the worker computes it; ready follows
        if data is None:
            self.caption.setText("Computing the similarity of the position embeddings…")
            return
        if isinstance(data, Unavailable):
            self._explain(data.reason)
            return
        self.data = data
        self.message.setVisible(False)
        self.to_swin.setVisible(False)
        self.canvas.setVisible(True)
        v = self.session.view
        gh, gw = data.grid
        how = (f"resampled ({data.interpolation}) from the {data.trained_grid[0]}×{data.trained_grid[1]} grid it "
               f"was trained at" if data.resampled else "the grid it was trained at")
        text = f"Learned absolute position embedding on {gh}×{gw} patches ({how})"
        if not data.applied:
            text += " — switched off in this capture (the scramble lesson): shown, but not added"
        self.caption.setText(text)
        self.bar.set(v.colormap, LEVELS)
        lut = lookup_table(v.colormap, False)

        old = self._mosaic_of
        if old is None or old[0] is not data or old[1] != v.colormap:  # a query change only moves the outlines
            self._mosaic_of = (data, v.colormap)
            self.grid_array = mosaic(data.sim)  # (gh, gw, gh, gw): tile (r, c) is patch (r, c) against all
            self.grid_img.setImage(colorize(self.grid_array, LEVELS, lut), autoLevels=False)  # (H, W, 4)
            self.grid_img.setRect(QRectF(0, 0, self.grid_array.shape[1], self.grid_array.shape[0]))
            self.grid_vb.autoRange(padding=0.01)
        self.grid_title.setText(f"cosine similarity of each patch's embedding to all {gh * gw} patches "
                                f"(click a tile)")

        q = v.query
        if isinstance(q, Patch) and 0 <= q.row < gh and 0 <= q.col < gw:
            self.grid_sel.setRect(QRectF(q.col * (gw + 1) - 0.5, q.row * (gh + 1) - 0.5, gw + 1, gh + 1))
            self.grid_sel.setVisible(True)
            self.tile_array = data.sim[q.row, q.col]  # (gh, gw)
            self.tile_img.setImage(colorize(self.tile_array, LEVELS, lut), autoLevels=False)  # (gh, gw, 4)
            self.tile_img.setRect(QRectF(0, 0, gw, gh))
            self.tile_img.setVisible(True)
            self.tile_sel.setRect(QRectF(q.col, q.row, 1, 1))
            self.tile_sel.setVisible(True)
            self.tile_plot.setRange(QRectF(0, 0, gw, gh), padding=0.02)
            self.tile_title.setText(f"patch ({q.row}, {q.col}) against every patch")
        else:
            self.grid_sel.setVisible(False)
            self.tile_array = None
            self.tile_img.setVisible(False)
            self.tile_sel.setVisible(False)
            self.tile_title.setText("the query is a prefix token: click a tile to pick a patch")
        for ax, n in (("left", gh), ("bottom", gw)):
            step = max(1, n // 8)
            self.tile_plot.getAxis(ax).setTicks([[(i + 0.5, str(i)) for i in range(0, n, step)]])

        self.curve_arrays = {}
        for key, prof in (("learned", data.learned), ("sincos", data.sincos)):
            mean, lo, hi = self.curves[key]
            mean.setData(prof.distances, prof.mean)
            lo.setData(prof.distances, prof.mean - prof.std)
            hi.setData(prof.distances, prof.mean + prof.std)
            self.curve_arrays[key] = (prof.distances, prof.mean, prof.std)
        self.curve_plot.setYRange(-1.0, 1.0, padding=0.02)
        self.curve_plot.setTitle(f"similarity against distance, mean ± spread · rank correlation ρ: learned "
                                 f"{data.learned.rank_correlation:+.2f}, sin-cos ({data.sincos_dim} dims) "
                                 f"{data.sincos.rank_correlation:+.2f}", color="#dddddd", size="9pt")

    def _explain(self, reason: str) -> None:
        """No learned absolute embedding: say what the model uses instead, and point to the Swin panel."""
        self.data = None
        self.grid_array = self.tile_array = None
        self.curve_arrays = {}
        self.caption.setText("No learned absolute position embedding")
        self.message.setText(reason)
        self.message.setVisible(True)
        self.to_swin.setVisible(self._swin_dock() is not None)
        self.canvas.setVisible(False)
