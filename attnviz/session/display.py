"""How a map's numbers become the values a panel colours (no Qt): scale and colour range.

The panels colour exactly ``display_values(map, scale)`` between ``levels``; tests compare these arrays
with attnviz.analysis, so this is the one place that decides what a colour means.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

LOG_FLOOR = 1e-4  # log scale: values below this fraction of the maximum share the lowest colour


def display_values(values: np.ndarray, scale: str, top: Optional[float] = None) -> np.ndarray:
    """The array that is coloured: the map itself (linear) or log10 of it, floored at LOG_FLOOR·top."""
    v = np.asarray(values, dtype=np.float64)
    if scale == "linear":
        return v
    if scale != "log":
        raise ValueError(f"scale must be 'linear' or 'log', got {scale!r}")
    t = float(np.nanmax(v)) if top is None else float(top)
    floor = max(t, 1e-30) * LOG_FLOOR
    return np.log10(np.maximum(v, floor))


def levels(values: np.ndarray, scale: str, pool: Optional[Iterable[np.ndarray]] = None) -> tuple[float, float]:
    """Colour range of a map: its own range, or the range over ``pool`` (the block's or every block's
    maps, for 'block' and 'global' normalisation). Linear ranges start at 0 for non-negative maps so
    that the same colour means the same probability across maps; a flat map gets a unit-wide range."""
    arrays = [np.asarray(values, dtype=np.float64)] if pool is None else [np.asarray(a, dtype=np.float64) for a in pool]
    hi = max(float(np.nanmax(a)) for a in arrays)
    lo = min(float(np.nanmin(a)) for a in arrays)
    if scale == "log":
        top = hi
        lo_v, hi_v = np.log10(max(top, 1e-30) * LOG_FLOOR), np.log10(max(top, 1e-30))
        return float(lo_v), float(hi_v if hi_v > lo_v else lo_v + 1.0)
    if lo >= 0:
        lo = 0.0
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def upsample(values: np.ndarray, factor: int, smooth: bool) -> np.ndarray:
    """(h, w) -> (h·f, w·f): one value per patch (blocky), or bilinear between patch centres (smooth)."""
    v = np.asarray(values, dtype=np.float32)
    if not smooth or factor <= 1:
        return v
    import cv2

    h, w = v.shape
    return cv2.resize(v, (w * factor, h * factor), interpolation=cv2.INTER_LINEAR)  # (h*f, w*f)
