"""The map the view state selects, with its colour range: what the image panel (and export) draws.

``shown_map(session)`` answers "which numbers are on screen": the query's attention for the block and
head (method 'attention'), or rollout / flow / relevance on the input patch grid, together with the
grid they live on and the colour range the normalisation asks for. No Qt, so tests and the exporter
read the same arrays the panel colours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .display import format_ticks, levels, span_levels
from .products import QueryHeads, TokenMap, Unavailable
from .view_state import METHOD_NAMES


@dataclass
class ShownMap:
    values: Optional[np.ndarray]  # (h, w) float64 on the token grid of ``token_px`` pixels; None: nothing to draw
    token_px: int = 0
    levels: tuple[float, float] = (0.0, 1.0)
    title: str = ""
    note: str = ""  # why nothing is drawn, what is being computed, or how the colours are spread
    query_cell: Optional[tuple[int, int]] = None  # the query's cell on this map's grid (Swin: stage token)
    prefix: Optional[np.ndarray] = None  # (P,) what the query gives each prefix token (attention method)
    window: Optional[np.ndarray] = None  # Swin: (h, w) bool, the query's window; outside it nothing is drawn


def head_name(head) -> str:
    return f"head {head}" if isinstance(head, int) else f"{head} of heads"


def shown_map(session, method: Optional[str] = None, normalisation: Optional[str] = None) -> ShownMap:
    """The map of ``method`` (default: the view's) coloured by ``normalisation`` (default: the view's)."""
    view, products, g = session.view, session.products, session.geometry
    method = view.method if method is None else method
    normalisation = view.normalisation if normalisation is None else normalisation
    if session.capture is None or g is None:
        return ShownMap(None, note="Open a model and an image")
    if method == "attention":
        qh: QueryHeads = products.get("query_heads")
        if isinstance(qh, Unavailable):
            return ShownMap(None, note=qh.reason)
        values = qh.head_map(view.head)  # (h, w)
        if normalisation == "block":
            pool = [qh.maps, values]
        elif normalisation == "global":
            every = products.get("model_query_maps")
            pool = [values] + [b.maps for b in every if not isinstance(b, Unavailable)]
        else:
            pool = None
        title = f"Attention of the {qh.label} · block {view.block} · {head_name(view.head)}"
        return ShownMap(values, qh.token_px, levels(values, view.scale, pool), title,
                        query_cell=qh.query_cell, prefix=qh.head_prefix(view.head), window=qh.window)
    name = METHOD_NAMES[method]
    result = products.get(method)
    if result is None:
        return ShownMap(None, g.patch_size, title=name, note=f"computing {name.lower()}…")
    if isinstance(result, Unavailable):
        return ShownMap(None, g.patch_size, title=name, note=result.reason)
    assert isinstance(result, TokenMap)
    if method == "flow":  # nearly even over the patches: from its own minimum, said in the caption and on the bar
        lv = span_levels(result.map, view.scale)
        lo, hi = format_ticks(list(lv), view.scale)
        return ShownMap(result.map, g.patch_size, lv, f"{name} {result.note}".strip(),
                        note=f"colours from its min {lo} to its max {hi}")
    return ShownMap(result.map, g.patch_size, levels(result.map, view.scale), f"{name} {result.note}".strip())
