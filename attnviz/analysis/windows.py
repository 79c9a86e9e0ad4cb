"""Where Swin's windows lie in the image, block by block, and which shift mask each window applies.

Everything here is built from :mod:`attnviz.nets.windows`, the geometry the networks run, so what is
drawn is what the network computed. The network's order of operations (timm's): a shifted block rolls
the unpadded (H, W) token map by (-s, -s), pads it bottom/right to (Hp, Wp), a multiple of the window
M, and partitions it into windows numbered row-major. A window of a shifted block therefore covers up
to four rectangles of the image (it wraps around the right and bottom edges), and the additive mask
(0 / -100) keeps tokens of different *shift regions* of the rolled grid from attending to each other.

Note (timm's order, reproduced here on purpose): the regions are laid out on the padded grid
([0, Hp-M), [Hp-M, Hp-s), [Hp-s, Hp) per axis) while the roll wraps at H. Without padding the two
agree. With padding, a few wrapped tokens share a region with tokens from the opposite edge and are
not masked apart, and padding tokens (zero features) are never masked as keys; :func:`window_regions`
shows the regions as the network applies them.

:class:`BlockGeometry` and :func:`block_geometry` are defined in :mod:`attnviz.nets.windows` (the Swin
block builds its windows from them) and re-exported here; a captured block carries its own
(:func:`geometry_of`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnviz.nets.capture import BlockCapture, SwinBlockCapture
from attnviz.nets.windows import (  # BlockGeometry and block_geometry re-exported: they live with the networks
    BlockGeometry,
    block_geometry,
    shift_attn_mask,
    shift_region_map,
    window_index_map,
    window_partition,
)


@dataclass(frozen=True)
class Rect:
    """Half-open rectangle [y0, y1) x [x0, x1), in tokens or pixels as stated by the caller."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def scaled(self, factor: int, limit: tuple[int, int] | None = None) -> "Rect":
        """The rectangle with every coordinate times ``factor``, clipped to ``limit`` = (H, W)."""
        y0, x0, y1, x1 = self.y0 * factor, self.x0 * factor, self.y1 * factor, self.x1 * factor
        if limit is not None:
            y0, y1 = min(y0, limit[0]), min(y1, limit[0])
            x0, x1 = min(x0, limit[1]), min(x1, limit[1])
        return Rect(y0, x0, y1, x1)


def geometry_of(block: BlockCapture) -> BlockGeometry:
    """Window geometry of a captured Swin block, exactly as the network ran it.

    Raises ValueError for a ViT block capture, which has no windows.
    """
    if not isinstance(block, SwinBlockCapture):
        raise ValueError(f"block {block.index} has no windows (not a Swin block)")
    return block.geometry


def window_token_index(geom: BlockGeometry) -> torch.Tensor:
    """(nW, M*M) flat token index y * W + x of what sits in each window slot; -1 for padding.

    Built by doing to an index map exactly what the network does to the features: roll by (-s, -s),
    pad bottom/right, :func:`window_partition`. Slot order inside a window is row-major, as in the
    attention matrices the network captures.
    """
    H, W = geom.grid_size
    Hp, Wp = geom.padded_size
    M, s = geom.window_size, geom.shift_size
    idx = torch.arange(H * W).reshape(H, W)  # (H, W)
    if s:
        idx = torch.roll(idx, shifts=(-s, -s), dims=(0, 1))  # (H, W)
    padded = torch.full((Hp, Wp), -1, dtype=torch.long)
    padded[:H, :W] = idx  # (Hp, Wp)
    return window_partition(padded[None, :, :, None], M).reshape(-1, M * M)  # (nW, M*M)


def window_of_token(geom: BlockGeometry) -> torch.Tensor:
    """(H, W) window index of every token of the stage grid (from nets.windows.window_index_map)."""
    return window_index_map(geom.grid_size, geom.window_size, geom.shift_size)  # (H, W)


def _slots_to_tokens(geom: BlockGeometry, per_slot: torch.Tensor) -> torch.Tensor:
    """(nW, M*M) values per window slot -> (H, W) the value of the slot each token sits in.

    Undoes the block's roll, pad and partition (:func:`window_token_index`); padding slots are dropped.
    """
    H, W = geom.grid_size
    table = window_token_index(geom).reshape(-1)  # (nW * M*M,)
    values = per_slot.reshape(-1)  # (nW * M*M,)
    out = torch.empty(H * W, dtype=values.dtype)
    real = table >= 0
    out[table[real]] = values[real]  # every token sits in exactly one slot
    return out.reshape(H, W)  # (H, W)


def slot_of_token(geom: BlockGeometry) -> torch.Tensor:
    """(H, W) slot (row-major position inside its window, 0 .. M*M-1) of every token."""
    M2 = geom.window_size**2
    slots = torch.arange(M2).repeat(geom.num_windows, 1)  # (nW, M*M)
    return _slots_to_tokens(geom, slots)  # (H, W)


def locate_token(geom: BlockGeometry, y: int, x: int) -> tuple[int, int]:
    """(window index, slot) of the token at (y, x) of the stage grid."""
    H, W = geom.grid_size
    if not (0 <= y < H and 0 <= x < W):
        raise ValueError(f"token ({y}, {x}) is outside the {H}x{W} grid")
    w = int(window_of_token(geom)[y, x])
    row = window_token_index(geom)[w]  # (M*M,)
    return w, int((row == y * W + x).nonzero()[0, 0])


def locate_pixel(geom: BlockGeometry, py: int, px: int) -> tuple[int, int, int]:
    """(window index, token y, token x) of input pixel (py, px) at this block."""
    y, x = int(py) // geom.token_px, int(px) // geom.token_px
    w, _ = locate_token(geom, y, x)
    return w, y, x


def _axis_runs(start: int, size: int, shift: int, length: int) -> list[tuple[int, int]]:
    """Original-coordinate intervals covered by rolled positions [start, start+size) ∩ [0, length)."""
    stop = min(start + size, length)
    if start >= stop:
        return []
    a, b = (start + shift) % length, (stop - 1 + shift) % length
    if a <= b:
        return [(a, b + 1)]
    return [(a, length), (0, b + 1)]  # wraps around the far edge


def window_rects(geom: BlockGeometry, unit: str = "tokens", img_size: tuple[int, int] | None = None) -> list[list[Rect]]:
    """Per window (row-major over the padded grid), the image rectangles it covers.

    A window of an unshifted block is one rectangle (clipped at the grid edge where it holds padding);
    a shifted window that wraps around covers 2 or 4. ``unit`` is 'tokens' (stage grid) or 'pixels'
    (times ``token_px``, clipped to ``img_size`` when given). Padding slots cover nothing.
    """
    if unit not in ("tokens", "pixels"):
        raise ValueError(f"unit must be 'tokens' or 'pixels', got {unit!r}")
    H, W = geom.grid_size
    Hp, Wp = geom.padded_size
    M, s = geom.window_size, geom.shift_size
    out: list[list[Rect]] = []
    for wy in range(Hp // M):
        ys = _axis_runs(wy * M, M, s, H)
        for wx in range(Wp // M):
            xs = _axis_runs(wx * M, M, s, W)
            rects = [Rect(y0, x0, y1, x1) for (y0, y1) in ys for (x0, x1) in xs]
            if unit == "pixels":
                rects = [r.scaled(geom.token_px, img_size) for r in rects]
            out.append(rects)
    return out


def window_masks(geom: BlockGeometry) -> torch.Tensor | None:
    """(nW, M*M, M*M) additive mask the block applies (0 / -100), or None for an unshifted block."""
    if not geom.shift_size:
        return None
    return shift_attn_mask(geom.padded_size, geom.window_size, geom.shift_size)  # (nW, M*M, M*M)


def window_regions(geom: BlockGeometry) -> torch.Tensor:
    """(H, W) shift-region label of every token as the mask sees it (all 0 for an unshifted block).

    The labels of :func:`slot_regions` carried back to the tokens in the slots. Two tokens of the same
    window attend to each other unmasked iff their labels are equal.
    """
    return _slots_to_tokens(geom, slot_regions(geom))  # (H, W)


def query_mask_map(geom: BlockGeometry, y: int, x: int) -> torch.Tensor:
    """(H, W) additive mask seen by the query at (y, x): 0 for keys it may attend to without penalty
    (same window and region), -100 for masked keys of its window, NaN outside its window."""
    H, W = geom.grid_size
    w, slot = locate_token(geom, y, x)
    out = torch.full((H * W,), float("nan"))
    table = window_token_index(geom)[w]  # (M*M,)
    masks = window_masks(geom)
    row = torch.zeros(table.numel()) if masks is None else masks[w, slot]  # (M*M,)
    real = table >= 0
    out[table[real]] = row[real]
    return out.reshape(H, W)  # (H, W)


def padding_slots(geom: BlockGeometry) -> torch.Tensor:
    """(nW,) number of padding slots in each window."""
    return (window_token_index(geom) < 0).sum(dim=1)


def slot_regions(geom: BlockGeometry) -> torch.Tensor:
    """(nW, M*M) shift-region label of every window slot, padding slots included (all 0 unshifted).

    These are the labels the block's mask is built from (:func:`attnviz.nets.windows.shift_attn_mask`):
    slots i, j of window w are masked apart (-100) iff their labels differ.
    """
    M = geom.window_size
    if not geom.shift_size:
        return torch.zeros(geom.num_windows, M * M, dtype=torch.long)
    region = shift_region_map(geom.padded_size, M, geom.shift_size)  # (Hp, Wp)
    return window_partition(region[None, :, :, None], M).reshape(-1, M * M)  # (nW, M*M)


def pixel_window_index(geom: BlockGeometry, img_size: tuple[int, int]) -> np.ndarray:
    """(img_H, img_W) int32: the window each input pixel falls in at this block, -1 where no token.

    The window index is the network's (row-major over the rolled, padded grid), i.e. the first index
    of the block's captured attention (B, nW, heads, M², M²) and of its attn_mask (nW, M², M²). A
    pixel belongs to token (py // token_px, px // token_px); pixels past the last full token of the
    stage grid (the input was not a multiple of the token size) belong to no token and get -1.
    """
    from attnviz.analysis.swin_maps import stage_map_to_image  # swin_maps imports this module

    if int(img_size[0]) <= 0 or int(img_size[1]) <= 0:
        raise ValueError(f"image size must be positive, got {img_size}")
    win = window_of_token(geom).to(torch.int32)  # (H, W)
    return stage_map_to_image(win, geom.token_px, img_size, fill=-1).numpy()  # (img_H, img_W)


__all__ = [
    "Rect",
    "BlockGeometry",
    "block_geometry",
    "geometry_of",
    "window_token_index",
    "window_of_token",
    "slot_of_token",
    "locate_token",
    "locate_pixel",
    "window_rects",
    "window_masks",
    "window_regions",
    "query_mask_map",
    "padding_slots",
    "pixel_window_index",
    "slot_regions",
]
