"""Swin window geometry as pure tensor functions: partitions, shifts, masks, relative positions.

The networks use these, and so does ``attnviz.analysis`` when it draws windows and masks, so what is
drawn is by construction what the network applied. Conventions follow timm's Swin: feature maps are
(B, H, W, C), windows are enumerated row-major over the padded grid, a shifted block rolls the map by
(-s, -s) before partitioning and the mask separates the regions the roll brought together.

:class:`BlockGeometry` is the one record of where a block's windows lie; the Swin block computes it
with :func:`block_geometry` before it partitions, runs its windows by it and hands the same object to
its capture, so analysis draws exactly the geometry the network ran.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MASK_VALUE = -100.0  # the additive value Swin uses for pairs from different shift regions


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, M, M, C), windows row-major; H and W must be multiples of M."""
    B, H, W, C = x.shape
    M = window_size
    x = x.reshape(B, H // M, M, W // M, M, C)  # (B, H/M, M, W/M, M, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, M, M, C)  # (B*nW, M, M, C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """(B * nW, M, M, C) -> (B, H, W, C), the inverse of :func:`window_partition`."""
    M = window_size
    C = windows.shape[-1]
    x = windows.reshape(-1, H // M, W // M, M, M, C)  # (B, H/M, W/M, M, M, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)  # (B, H, W, C)


def effective_window(resolution: tuple[int, int], window_size: int, shift_size: int) -> tuple[int, int]:
    """Window and shift a block really uses at this resolution (timm's rule, square windows).

    A map no larger than the window is one window: the window shrinks to the map and there is no
    shift (a shift would only rotate the one window onto itself).
    """
    r = min(resolution)
    if r <= window_size:
        return r, 0
    return window_size, shift_size


def padded_size(resolution: tuple[int, int], window_size: int) -> tuple[int, int]:
    """Grid after zero-padding bottom/right up to a multiple of the window."""
    H, W = resolution
    M = window_size
    return (math.ceil(H / M) * M, math.ceil(W / M) * M)


@dataclass(frozen=True)
class BlockGeometry:
    """Window geometry of one Swin block on its stage grid, as the block runs it."""

    grid_size: tuple[int, int]  # (H, W) tokens at this stage
    window_size: int  # M actually used (see effective_window)
    shift_size: int  # s actually used (0: regular windows)
    padded_size: tuple[int, int]  # (Hp, Wp)
    token_px: int = 1  # side of one token in input pixels

    @property
    def num_windows(self) -> int:
        return (self.padded_size[0] // self.window_size) * (self.padded_size[1] // self.window_size)

    @property
    def windows_per_row(self) -> int:
        return self.padded_size[1] // self.window_size


def block_geometry(
    grid_size: tuple[int, int],
    window_size: int,
    shift_size: int = 0,
    token_px: int = 1,
    *,
    resolve: bool = True,
) -> BlockGeometry:
    """Geometry of a block; ``resolve`` applies timm's rule that a map no larger than M is one window.

    The network passes its configured window and shift (``resolve=True``); pass ``resolve=False`` with
    a window and shift that are already the ones used.
    """
    H, W = int(grid_size[0]), int(grid_size[1])
    if H <= 0 or W <= 0:
        raise ValueError(f"grid size must be positive, got {grid_size}")
    if window_size <= 0 or shift_size < 0 or shift_size >= max(window_size, 1):
        raise ValueError(f"need window_size > 0 and 0 <= shift < window, got M={window_size}, s={shift_size}")
    if token_px <= 0:
        raise ValueError(f"a token covers at least one pixel, got token_px={token_px}")
    M, s = effective_window((H, W), window_size, shift_size) if resolve else (window_size, shift_size)
    return BlockGeometry((H, W), M, s, padded_size((H, W), M), int(token_px))


def shift_region_map(padded: tuple[int, int], window_size: int, shift_size: int) -> torch.Tensor:
    """(Hp, Wp) int map: which of the up to 9 regions of the rolled grid each position belongs to.

    After rolling by (-s, -s), the last M rows/columns of the grid mix tokens from opposite edges of
    the image; the regions [0, -M), [-M, -s), [-s, end) along each axis tell them apart.
    """
    Hp, Wp = padded
    M, s = window_size, shift_size
    region = torch.zeros(Hp, Wp, dtype=torch.long)
    cnt = 0
    for h in ((0, -M), (-M, -s), (-s, None)):
        for w in ((0, -M), (-M, -s), (-s, None)):
            region[h[0]:h[1], w[0]:w[1]] = cnt
            cnt += 1
    return region


def shift_attn_mask(padded: tuple[int, int], window_size: int, shift_size: int) -> torch.Tensor:
    """(nW, M*M, M*M) additive mask of a shifted block: 0 within a region, -100 across regions."""
    M = window_size
    region = shift_region_map(padded, M, shift_size).float()
    win = window_partition(region[None, :, :, None], M).view(-1, M * M)  # (nW, M*M)
    diff = win.unsqueeze(1) - win.unsqueeze(2)  # (nW, M*M, M*M)
    return torch.where(diff != 0, torch.tensor(MASK_VALUE), torch.tensor(0.0))


def relative_position_index(window_size: int) -> torch.Tensor:
    """(M*M, M*M) index into the (2M-1)*(2M-1) bias table for every query/key pair in a window.

    Index = (dy + M - 1) * (2M - 1) + (dx + M - 1) with (dy, dx) = query position - key position.
    """
    M = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij"))  # (2, M, M)
    flat = coords.flatten(1)  # (2, M*M)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)  # (M*M, M*M, 2): query - key
    return (rel[..., 0] + M - 1) * (2 * M - 1) + (rel[..., 1] + M - 1)  # (M*M, M*M)


def log_spaced_coords(window_size: int, pretrained_window_size: int = 0) -> torch.Tensor:
    """(2M-1, 2M-1, 2) Swin v2 CPB input: relative (dy, dx) scaled to [-8, 8] and log-spaced.

    coord = sign(c) * log2(1 + |c|) / log2(8), with c = 8 * d / (Mp - 1) where Mp is the pretrained
    window size (or M when 0).
    """
    M = window_size
    d = torch.arange(-(M - 1), M, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(d, d, indexing="ij")).permute(1, 2, 0).clone()  # (2M-1, 2M-1, 2)
    norm = pretrained_window_size if pretrained_window_size > 0 else M
    table /= max(norm - 1, 1)
    table *= 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def window_index_map(resolution: tuple[int, int], window_size: int, shift_size: int) -> torch.Tensor:
    """(H, W) map from a token's position on the (unshifted) feature map to its window index.

    timm rolls the unpadded (H, W) map by (-s, -s) and then pads bottom/right, so position (y, x)
    sits at ((y - s) mod H, (x - s) mod W) of the padded grid; windows are counted row-major there.
    """
    H, W = resolution
    M, s = window_size, shift_size
    Wp = math.ceil(W / M) * M
    ys = (torch.arange(H) - s) % H  # (H,)
    xs = (torch.arange(W) - s) % W  # (W,)
    return (ys[:, None] // M) * (Wp // M) + (xs[None, :] // M)  # (H, W)
