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


def span_levels(values: np.ndarray, scale: str) -> tuple[float, float]:
    """Colour range from the map's own minimum to its maximum (not from 0): for maps whose values all
    lie close together (attention flow: every patch carries nearly the same flow), so that their
    differences get the whole colour range. The colour bar then says where the range starts."""
    if scale == "log":
        return levels(values, scale)
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    if not hi > lo:
        return levels(values, scale)
    return lo, hi


def tick_values(lo: float, hi: float, most: int = 6) -> list[float]:
    """Round numbers for a colour bar from ``lo`` to ``hi``: both ends always, and up to ``most`` in all
    with a 1-2-5 step between them, however small the range (0.002 gives 0, 0.0005, ..., 0.002)."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return [float(lo)] if np.isfinite(lo) else []
    raw = (hi - lo) / max(most - 1, 1)
    mag = 10.0 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = np.ceil(lo / step - 1e-9) * step
    inner = [float(first + i * step) for i in range(int(np.floor((hi - first) / step + 1e-9)) + 1)]
    inner = [t for t in inner if abs(t - lo) > 0.35 * step and abs(hi - t) > 0.35 * step]  # clear of the ends
    return [float(lo)] + inner + [float(hi)]


def _compact(text: str) -> str:
    """'1.50e-04' -> '1.5e-4': no trailing zeros in a mantissa or a decimal, no padded exponent."""
    if "e" in text:
        mant, exp = text.split("e")
        mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
        return f"{mant}e{int(exp)}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_ticks(ticks: list[float], scale: str = "linear") -> list[str]:
    """Colour-bar numbers, one format for the whole bar so that they read as one scale: plain decimals
    with as many digits as the step between ticks needs (the two ends one more) while the largest is
    between 0.001 and 100000, else powers of ten; never an empty label. On a log scale the ticks are
    log10 of the numbers shown."""
    if scale == "log":
        return [_compact(f"{10.0 ** t:.2g}") if 1e-3 <= 10.0 ** t < 1e4 else _compact(f"{10.0 ** t:.1e}")
                for t in ticks]
    vals = [float(t) for t in ticks]
    top = max((abs(t) for t in vals), default=0.0)
    if top == 0:
        return ["0" for _ in vals]
    gaps = [b - a for a, b in zip(vals, vals[1:]) if b > a]
    step = min(gaps) if gaps else top
    if 1e-3 <= top < 1e5 and step >= top * 1e-6:
        digits = int(min(max(np.ceil(-np.log10(step) - 1e-9), 0), 8))
        out = []
        for i, t in enumerate(vals):
            d = digits + (1 if i in (0, len(vals) - 1) else 0)
            out.append("0" if abs(t) < step * 1e-6 else _compact(f"{t:.{d}f}"))
        return out
    return ["0" if abs(t) < step * 1e-6 else _compact(f"{t:.2e}") for t in vals]


def mosaic(tiles: np.ndarray, gap: int = 1) -> np.ndarray:
    """(R, C, h, w) tiles -> one (R·(h+gap)−gap, C·(w+gap)−gap) image, tile (i, j) at rows i·(h+gap)..,
    columns j·(w+gap)..; NaN in the gaps (drawn transparent). Missing tiles are NaN tiles."""
    R, C, h, w = tiles.shape
    # (tile row, row in tile, tile col, col in tile), each tile followed by its gap
    padded = np.full((R, h + gap, C, w + gap), np.nan)
    padded[:, :h, :, :w] = tiles.transpose(0, 2, 1, 3)
    flat = padded.reshape(R * (h + gap), C * (w + gap))  # (rows, cols) with a trailing gap
    return flat[: R * (h + gap) - gap, : C * (w + gap) - gap]
