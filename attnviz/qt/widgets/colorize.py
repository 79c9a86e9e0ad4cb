"""Colouring a map once, in numpy: (h, w) values + colour range + lookup table -> (h, w, 4) RGBA.

pyqtgraph can colour a float image itself, but it then rebuilds a 256-entry Qt colour table and an
indexed image on every render (about 0.2 ms per image, twelve head tiles per block change). The tiles
and overlays hand it the finished RGBA instead, coloured exactly as pyqtgraph would (value ``lo`` is
entry 0, ``hi`` entry 255, linear between, clipped); NaN is transparent. :func:`premultiplied` wraps
the result as the QImage format Qt paints fastest.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtGui import QImage

from ...export.figure import colour


def colorize(values: np.ndarray, lo_hi: tuple[float, float], lut: np.ndarray,
             clear: Optional[np.ndarray] = None) -> np.ndarray:
    """(h, w) float -> (h, w, 4) uint8 through ``lut`` (256, 4); NaN (and ``clear``, a bool mask) transparent.

    The one colour rule of attnviz (:func:`attnviz.export.figure.colour`), so what a panel shows and what
    an exported figure holds are the same pixels."""
    return colour(values, lo_hi, lut, None if clear is None else ~np.asarray(clear, dtype=bool))


def solid(mask: np.ndarray, color: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) bool -> (h, w, 4) uint8: ``color`` where the mask is set, transparent elsewhere."""
    out = np.zeros(mask.shape + (4,), dtype=np.uint8)
    out[mask] = color
    return out


def premultiplied_bgra(rgba: np.ndarray) -> np.ndarray:
    """(h, w, 4) uint8 RGBA -> (h, w, 4) uint8 in the byte order of Qt's ARGB32_Premultiplied on a
    little-endian machine (B, G, R, A, colours multiplied by alpha): the format Qt paints fastest."""
    a = rgba[..., 3:4].astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * a + 127) // 255  # (h, w, 3) premultiplied
    return np.ascontiguousarray(np.concatenate([rgb[..., ::-1], a], axis=-1).astype(np.uint8))  # (h, w, 4)


def premultiplied(rgba: np.ndarray) -> tuple[QImage, np.ndarray]:
    """(h, w, 4) uint8 RGBA -> a QImage in ARGB32 premultiplied and the buffer it reads (keep that alive
    as long as the image)."""
    bgra = premultiplied_bgra(rgba)  # (h, w, 4)
    h, w = bgra.shape[:2]
    return QImage(bgra.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied), bgra
