"""Products of the Swin inspector: where a block's windows lie and the position bias the block added,
both read from the capture (what the network applied) via :mod:`attnviz.analysis`. The query's window
attention is the shared ``query_heads`` product (every head on the block's own token grid, with the
query's window as a mask), which the panel draws stretched over the input.

Registered with :func:`attnviz.session.products.register` when this module is imported (the Swin
panel imports it). Each is cheap (one block, one window), so each is computed inline; a ViT capture
raises :class:`NotApplicable` with the reason, which the panel shows instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..analysis.pos_embed import captured_bias, captured_bias_image, captured_logit_scale
from ..analysis.swin_maps import stage_map_to_image
from ..analysis.windows import (
    BlockGeometry,
    Rect,
    geometry_of,
    locate_token,
    pixel_window_index,
    slot_regions,
    window_rects,
    window_regions,
    window_token_index,
)
from ..nets.capture import SwinBlockCapture
from .products import Context, NotApplicable, ProductSpec, register
from .query import Patch, Query, stage_token

VIT_REASON = ("A ViT attends globally: every token attends to every other token of the image in every block, "
              "so there are no windows, shifts or relative position biases to show. Its per-head attention "
              "is in the Heads panel.")


@dataclass
class SwinWindows:
    """One Swin block's windows in input pixels, and the window that holds the query."""

    block: int
    stage: int
    geometry: BlockGeometry
    img_size: tuple[int, int]  # (H, W) of the network input
    rects: list[list[Rect]]  # per window (network order), its image rectangles in pixels
    pixel_window: np.ndarray  # (img_H, img_W) int32 window of each pixel, -1 outside every token
    pixel_region: np.ndarray  # (img_H, img_W) int shift region of each pixel (mask's labels), -1 outside
    query_cell: tuple[int, int]  # (y, x) of the query's token on the stage grid
    query_window: int  # index of the query's window (first index of attn / attn_mask)
    query_slot: int  # row-major slot of the query inside its window
    slot_tokens: np.ndarray  # (M²,) flat stage-grid token in each slot of the query's window, -1 padding
    slot_regions: np.ndarray  # (M²,) region label of each slot of the query's window (padding included)
    mask: Optional[np.ndarray]  # (M², M²) the additive mask the block applied to that window; None: none
    pad_px: tuple[int, int]  # padded margin (rows, cols) below / right of the stage map, in input pixels

    @property
    def window_px(self) -> int:
        """Side of one (unshifted) window in input pixels."""
        return self.geometry.window_size * self.geometry.token_px


@dataclass
class SwinBias:
    """The relative position bias one block added to its logits, for one head (or the mean of heads)."""

    version: int  # 1: learned table; 2: continuous position bias 16·sigmoid(MLP(log-spaced offsets))
    table: np.ndarray  # (2M−1, 2M−1) bias per offset query − key, [dy + M − 1, dx + M − 1]
    query_bias: np.ndarray  # (M, M) bias the query adds to the logit of each key slot of its window
    query_pos: tuple[int, int]  # (row, col) of the query inside its window
    logit_scale: Optional[np.ndarray]  # (heads,) v2 temperature τ per head; None for v1
    head_label: str
    window_size: int


def _per_block(ctx: Context, block: int, what: str, fn):
    """``fn()`` computed once per (capture, block, what) and kept on the capture's context: what does not
    depend on the query or head (the windows' pixels, the bias image) is not recomputed when only those
    move. Arrays are made read-only, since every product of this capture shares them."""
    memo = ctx.__dict__.setdefault("_swin_memo", {})
    key = (block, what)
    if key not in memo:
        value = fn()
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        memo[key] = value
    return memo[key]


def _swin_block(ctx: Context, block: int) -> SwinBlockCapture:
    cap = ctx.capture
    if cap.family != "swin":
        raise NotApplicable(VIT_REASON)
    b = cap.blocks[block]
    if not isinstance(b, SwinBlockCapture):
        raise NotApplicable(f"block {block} carries no window geometry")
    return b


def _query_patch(query: Query) -> Patch:
    if not isinstance(query, Patch):
        raise NotApplicable("Swin has no prefix tokens: pick a patch")
    return query


def head_label(head) -> str:
    """How a head selection reads in captions: one head, or the fusion over heads."""
    return f"head {head}" if isinstance(head, int) else f"{head} over heads"


def swin_windows(ctx: Context, block: int, query: Query) -> SwinWindows:
    b = _swin_block(ctx, block)
    q = _query_patch(query)
    geom = geometry_of(b)
    img = tuple(int(v) for v in ctx.capture.img_size)
    cell = stage_token(q, b)
    w, slot = locate_token(geom, *cell)
    mask = None if b.attn_mask is None else b.attn_mask[w].detach().float().cpu().numpy()  # (M², M²)
    (H, W), (Hp, Wp), t = geom.grid_size, geom.padded_size, geom.token_px
    return SwinWindows(
        block=block, stage=int(b.stage), geometry=geom, img_size=img,
        rects=_per_block(ctx, block, "rects", lambda: window_rects(geom, "pixels", img)),
        pixel_window=_per_block(ctx, block, "pixel_window", lambda: pixel_window_index(geom, img)),
        pixel_region=_per_block(ctx, block, "pixel_region",
                                lambda: stage_map_to_image(window_regions(geom), t, img, fill=-1).numpy()),
        query_cell=cell, query_window=w, query_slot=slot,
        slot_tokens=_per_block(ctx, block, "slot_tokens", lambda: window_token_index(geom).numpy())[w],
        slot_regions=_per_block(ctx, block, "slot_regions", lambda: slot_regions(geom).numpy())[w],
        mask=mask,
        pad_px=((Hp - H) * t, (Wp - W) * t),
    )


def swin_bias(ctx: Context, block: int, head, query: Query) -> SwinBias:
    b = _swin_block(ctx, block)
    q = _query_patch(query)
    geom = geometry_of(b)
    M = geom.window_size
    _w, slot = locate_token(geom, *stage_token(q, b))
    image = _per_block(ctx, block, "bias_image", lambda: captured_bias_image(b))  # (heads, 2M−1, 2M−1)
    rows = _per_block(ctx, block, "bias", lambda: captured_bias(b))[:, slot, :]  # (heads, M²) the query's row
    if isinstance(head, int):
        table, row = image[head], rows[head]
    else:  # a fusion of heads: the bias is shown as their mean
        table, row = image.mean(0), rows.mean(0)
    scale = None if b.logit_scale is None else captured_logit_scale(b).double().numpy()
    return SwinBias(1 if scale is None else 2, table.double().numpy(), row.reshape(M, M).double().numpy(),
                    divmod(slot, M), scale, head_label(head), M)


register(
    ProductSpec("swin_windows", swin_windows, ("block", "query")),
    ProductSpec("swin_bias", swin_bias, ("block", "head", "query")),
)

__all__ = ["SwinWindows", "SwinBias", "VIT_REASON", "head_label", "swin_windows", "swin_bias"]
