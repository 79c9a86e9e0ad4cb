"""A figure as plain data (no Qt): parts made of tiles, each tile an array and how it is coloured.

A :class:`Figure` is a title line and a list of :class:`Part` (one panel's worth: a title, tiles and a
colour bar). The Qt renderer (``attnviz/qt/figures``) lays the parts out and draws them with QPainter
into a PNG, SVG or PDF; the pixels of a tile come from :func:`tile_rgba` here, in numpy, so what a
heat map's pixels mean is decided in one place and can be tested exactly: value ``v`` between levels
``(lo, hi)`` takes colour ``lut[clip(floor((v − lo) · 256 / (hi − lo)), 0, 255)]`` (pyqtgraph's rule
for a 256-entry lookup table; ±inf clip to the ends), NaN and masked cells are transparent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class ColorBar:
    """The colour scale of a part: colormap, the value range it spans, what the values are."""

    colormap: str
    levels: tuple[float, float]
    label: str = ""
    scale: str = "linear"  # 'log': the levels are log10 values, ticks are printed as powers of ten


@dataclass
class Tile:
    """One image of a part: a heat map (``values``), a plain picture (``rgb``), or a map over a picture."""

    caption: str = ""
    values: Optional[np.ndarray] = None  # (h, w) float, coloured between ``levels`` by ``colormap``
    levels: tuple[float, float] = (0.0, 1.0)
    colormap: str = "inferno"
    rgb: Optional[np.ndarray] = None  # (H, W, 3) uint8 picture drawn beneath the map (or alone)
    opacity: float = 1.0  # of the map over the picture
    alpha_ramp: bool = False  # attention as alpha: the map's opacity rises with its value
    mask: Optional[np.ndarray] = None  # (h, w) bool: only these cells coloured (Swin: the query's window)
    token_px: int = 1  # picture pixels per map cell (the map covers h·token_px × w·token_px pixels)
    marker: Optional[tuple[int, int, int]] = None  # (row, col, size) outlined, in map cells
    grid: Optional[tuple[int, int]] = None  # (rows, cols) of lines drawn over the tile (e.g. blocks × heads)
    xlabel: str = ""
    ylabel: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the tile in its own units: the picture's pixels, else the map's cells."""
        if self.rgb is not None:
            return int(self.rgb.shape[0]), int(self.rgb.shape[1])
        assert self.values is not None
        return int(self.values.shape[0]), int(self.values.shape[1])


@dataclass
class Part:
    """A panel of the figure: title, tiles laid out in a grid of ``columns`` (0: as square as fits)."""

    name: str
    title: str
    tiles: list[Tile]
    colorbar: Optional[ColorBar] = None
    columns: int = 0
    note: str = ""


@dataclass
class Figure:
    title: str
    subtitle: str = ""
    parts: list[Part] = field(default_factory=list)
    columns: int = 0  # parts per row (0: chosen from the count)


def colour_index(values: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """(h, w) int indices 0..255 into a 256-entry lookup table: the one colour rule of attnviz.

    Value ``v`` between levels ``(lo, hi)`` takes ``clip(floor((v − lo) · 256 / (hi − lo)), 0, 255)``
    (pyqtgraph's rule for a 256-entry table: ``lo`` is entry 0, ``hi`` entry 255). Out-of-range values
    clip to the ends, and so do the infinities: +inf is entry 255, −inf entry 0 (the log of a zero
    weight is the lowest colour, not a hole). NaN is "no value" and gets −1 (drawn transparent). A
    range with ``hi <= lo`` is taken as ``(lo, lo + 1)``, as :func:`attnviz.session.display.levels`
    widens a flat map's range."""
    lo, hi = float(levels[0]), float(levels[1])
    span = hi - lo if hi > lo else 1.0
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    v = np.clip(np.where(nan, lo, v), lo, lo + span)  # ±inf -> the ends, before any arithmetic
    idx = np.floor((v - lo) * (256.0 / span))
    idx = np.clip(idx, 0, 255).astype(np.int64)
    idx[nan] = -1
    return idx


def colour(values: np.ndarray, levels: tuple[float, float], lut: np.ndarray,
           mask: Optional[np.ndarray] = None) -> np.ndarray:
    """(h, w) values -> (h, w, 4) uint8 RGBA through ``lut`` (256, 4); NaN and unmasked cells transparent."""
    idx = colour_index(values, levels)
    out = lut[np.maximum(idx, 0)].astype(np.uint8)  # (h, w, 4)
    clear = idx < 0
    if mask is not None:
        clear |= ~np.asarray(mask, dtype=bool)
    out[clear] = 0
    return out


def tile_rgba(tile: Tile, cell: int, lut: Optional[np.ndarray]) -> np.ndarray:
    """The tile's pixels at ``cell`` output pixels per unit (picture pixel, or map cell for a bare map):
    (rows·cell, cols·cell, 4) uint8, every unit an exact cell×cell block (nearest neighbour)."""
    if tile.rgb is None:
        rgba = colour(tile.values, tile.levels, lut, tile.mask)  # (h, w, 4)
        return np.repeat(np.repeat(rgba, cell, axis=0), cell, axis=1)  # (h*cell, w*cell, 4)
    H, W = tile.rgb.shape[:2]
    base = np.concatenate([tile.rgb.astype(np.uint8), np.full((H, W, 1), 255, np.uint8)], axis=2)  # (H, W, 4)
    if tile.values is not None:
        over = colour(tile.values, tile.levels, lut, tile.mask)  # (h, w, 4)
        p = max(int(tile.token_px), 1)
        over = np.repeat(np.repeat(over, p, axis=0), p, axis=1)[:H, :W]  # (h*p, w*p, 4) cropped to the picture
        a = over[..., 3:4].astype(np.float64) / 255.0
        if tile.alpha_ramp:
            ramp = (colour_index(np.repeat(np.repeat(tile.values, p, 0), p, 1)[:H, :W], tile.levels) / 255.0)
            a = a * np.clip(ramp, 0, 1)[..., None]
        a = a * float(tile.opacity)
        h, w = over.shape[:2]
        mixed = base[:h, :w, :3] * (1 - a) + over[..., :3] * a
        base[:h, :w, :3] = np.rint(mixed).astype(np.uint8)
    return np.repeat(np.repeat(base, cell, axis=0), cell, axis=1) if cell > 1 else base
