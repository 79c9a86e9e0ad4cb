"""A strip of small images, one per Swin block: the query's window attention in each, so that the window
can be seen growing through the shifts and patch merges at a glance; clicking one selects that block.

Built on :class:`~attnviz.qt.widgets.head_grid.HeadGrid` (one widget painted in one pass, no view box
per tile): its tiles are the dimmed input, set once per capture; over each, this strip paints the
block's attention map on the block's own token grid (a few dozen pixels, stretched over the input
pixels its tokens cover) and the outline of the query's window. A head or query change recolours
those small maps only.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QRectF, QSize
from PySide6.QtGui import QImage, QPainter

from ...analysis.windows import Rect
from ..widgets.colorize import colorize, premultiplied
from ..widgets.head_grid import BACKGROUND, HeadGrid
from ..widgets.overlay import shared_lookup_table
from .swin_plots import QUERY_COLOR, cosmetic_pen

DIM = 0.45  # share of the input's colour kept under the maps (the rest is the background)
ROW_HEIGHT = 128  # widget pixels per row of tiles


class BlockTile:
    """What one block's tile shows over the input: its map on the block's token grid and the window."""

    def __init__(self, values: np.ndarray, window: np.ndarray, token_px: int, rects: list[Rect], colormap: str):
        self.values = values  # (H_b, W_b) the query's attention on the block's grid (what is coloured)
        self.token_px = token_px
        self.rects = rects  # the query's window in input pixels (up to 4 pieces when it wraps)
        top = float(values[window].max()) if window.any() else 0.0
        rgba = colorize(values, (0.0, top or 1.0), shared_lookup_table(colormap, False), clear=~window)  # (H_b, W_b, 4)
        self.image, self._buffer = premultiplied(rgba)


class BlockStrip(HeadGrid):
    """One tile per block: the input, dimmed, with the query's window attention of that block (each tile
    scaled to its own maximum) and the window outlined. ``arrays`` keeps each tile's map (stage grid)."""

    def __init__(self, on_pick: Callable[[int], None], parent=None):
        super().__init__(parent)
        self._fit_rows(1)
        self.sigClicked.connect(on_pick)
        self.blocks: list[Optional[BlockTile]] = []
        self._input: Optional[np.ndarray] = None  # the (h, w, 3) input the tiles were built from

    @property
    def arrays(self) -> list[Optional[np.ndarray]]:
        return [None if t is None else t.values for t in self.blocks]

    def columns(self) -> int:
        n = len(self.images)
        return max(1, n if n <= 12 else -(-n // 2))  # deep models (Swin-B: 24 blocks) take two rows

    def set_input(self, img: np.ndarray, n_blocks: int) -> None:
        """The network input (h, w, 3) uint8 under every tile (a new capture); dimmed once here."""
        if img is self._input and len(self.images) == n_blocks:
            return
        self._input = img
        bg = np.array([BACKGROUND.red(), BACKGROUND.green(), BACKGROUND.blue()], np.float32)
        rgb = (img.astype(np.float32) * DIM + bg * (1 - DIM)).astype(np.uint8)  # (h, w, 3)
        rgba = np.concatenate([rgb, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=-1)  # (h, w, 4)
        self.set_tiles([rgba] * n_blocks)
        self.blocks = [None] * n_blocks
        self._fit_rows(-(-n_blocks // self.columns()))

    def _fit_rows(self, rows: int) -> None:
        """At most ROW_HEIGHT per row of tiles; less in a small panel (the tiles shrink, nothing overlaps)."""
        self._rows = rows
        self.setMinimumHeight(70 * rows)
        self.setMaximumHeight(ROW_HEIGHT * rows + 8)
        self.updateGeometry()

    def sizeHint(self) -> QSize:
        return QSize(600, ROW_HEIGHT * self._rows + 8)  # full-size tiles when the panel has the room

    def set_blocks(self, tiles: list[Optional[BlockTile]], captions: list[str], selected: int) -> None:
        self.blocks = list(tiles)
        self.set_captions(captions)
        self.set_selected(selected)
        self.update()

    def heat_rect(self, index: int) -> Optional[QRectF]:
        """Where block ``index``'s map is painted (widget pixels): the input pixels its tokens cover, on the
        tile's input (the part past the input's edge, a merged token over padding, is clipped)."""
        tile = self.blocks[index] if index < len(self.blocks) else None
        if tile is None:
            return None
        t = self.tile_rect(index)
        ih, iw = self.shape
        h, w = tile.values.shape
        return QRectF(t.left(), t.top(), w * tile.token_px * t.width() / iw, h * tile.token_px * t.height() / ih)

    def paintEvent(self, ev) -> None:
        super().paintEvent(ev)  # background, the dimmed inputs, borders and captions
        if not self.images:
            return
        p = QPainter(self)
        pen = cosmetic_pen(QUERY_COLOR, 1.5)
        ih, iw = self.shape
        for i, tile in enumerate(self.blocks):
            if tile is None:
                continue
            t = self.tile_rect(i)
            sx, sy = t.width() / iw, t.height() / ih
            p.save()
            p.setClipRect(t)
            p.drawImage(self.heat_rect(i), tile.image)  # no smoothing: one colour per token
            p.setPen(pen)
            for r in tile.rects:
                p.drawRect(QRectF(t.left() + r.x0 * sx, t.top() + r.y0 * sy, r.width * sx, r.height * sy))
            p.restore()
        p.end()

    def image_of(self, index: int) -> QImage:
        """The coloured map of block ``index`` as painted (tests read its pixels)."""
        return self.blocks[index].image
