"""Swin attention mapped back onto the image: one query's window attention, and a Swin rollout.

Window attention of a query
    A Swin block captures attention per window, (B, nW, heads, M*M, M*M), in the rolled and padded
    frame. :func:`query_attention_map` takes the query's row inside its window and scatters it to the
    stage grid with :func:`attnviz.analysis.windows.window_token_index` (the network's own roll, pad
    and partition applied to token indices), so the cyclic shift is undone and padding slots are
    dropped; everything outside the query's window is 0.

Swin rollout (defined here; the ViT rollout of Abnar & Zuidema 2020 carried through windows)
    Relevance is a row-stochastic matrix R whose row t says how token t of the current stage is made
    of the stage-0 patch tokens (the input patch grid). Start with R = I on the stage-0 grid and go
    through the blocks in forward order:

    * Block: scatter the head-fused window attention to an N x N matrix A over the stage's tokens
      (A[t, u] = fused attention of t to u when both sit in the same window, else 0; padding keys are
      dropped and rows renormalised to sum to 1). It is block-sparse: at most M*M non-zeros per row.
      With the residual connection, Ã = (1 - alpha) * A + alpha * I (alpha = 0.5 as in rollout), and
      R <- Ã R.
    * Patch merging (stage s -> s+1): the new token (i, j) is a linear function of its 2 x 2 children
      (2i + a, 2j + b) on the stage-s grid (children outside the grid are padding and dropped). We
      let it take an equal share of each real child: D[(i, j), child] = 1 / (number of real children),
      R <- D R.

    The map of a final-stage token t is R[t] on the (gh, gw) stage-0 grid; the map for the class
    prediction is the mean of R over the final tokens, since Swin classifies the global average of
    the final tokens. Every map is a probability distribution over input patches (sums to 1).

    Assumptions, as in ViT rollout: attention alone tells how information moves (values, MLPs and
    norms are ignored); the residual counts as much as attention (alpha); heads are fused by mean
    (or max/min, renormalised); and the merge spreads a token equally over its four children, since
    the merge's linear layer has no single "attention" weight per child.

    The product is evaluated from the end (row vectors times the block operators), so a map costs
    O(targets * blocks * tokens * M^2), and the operators are applied window by window (gather,
    batched matmul, scatter) without forming any N x N matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch

from attnviz.analysis.query import FUSIONS, fuse_heads
from attnviz.analysis.windows import geometry_of, locate_token, window_token_index
from attnviz.nets.capture import BlockCapture, SwinBlockCapture

HeadFusion = Union[str, int]


def _fuse(attn: torch.Tensor, head_fusion: HeadFusion) -> torch.Tensor:
    """(nW, heads, M*M, M*M) -> (nW, M*M, M*M) by mean/max/min over heads or one head index."""
    if isinstance(head_fusion, int) and not isinstance(head_fusion, bool):
        if not 0 <= head_fusion < attn.shape[1]:
            raise ValueError(f"head {head_fusion} does not exist (the block has {attn.shape[1]} heads)")
        return attn[:, head_fusion]
    if head_fusion not in FUSIONS:
        raise ValueError(f"head_fusion must be 'mean', 'max', 'min' or a head index, got {head_fusion!r}")
    return fuse_heads(attn.transpose(0, 1), head_fusion)  # heads first: (heads, nW, ...) -> (nW, ...)


def _block_attn(block: BlockCapture, batch: int) -> torch.Tensor:
    """The block's (nW, heads, M*M, M*M) attention for one image, checked against its geometry."""
    if not isinstance(block, SwinBlockCapture) or block.attn.dim() != 5:
        raise ValueError("expected a Swin block capture with attention of shape (B, nW, heads, M*M, M*M)")
    attn = block.attn  # (B, nW, heads, M*M, M*M)
    if not 0 <= batch < attn.shape[0]:
        raise ValueError(f"batch index {batch} out of range for {attn.shape[0]} images")
    return attn[batch].detach().float().cpu()  # (nW, heads, M*M, M*M)


@dataclass(frozen=True)
class _WindowOperator:
    """One block's token-mixing matrix, stored per window."""

    index: torch.Tensor  # (nW, M*M) flat token index per slot, -1 for padding
    probs: torch.Tensor  # (nW, M*M, M*M) fused attention, padding rows/columns zeroed, rows sum to 1


def window_operator(block: BlockCapture, head_fusion: HeadFusion = "mean", batch: int = 0) -> _WindowOperator:
    """A block's head-fused attention with padding keys dropped and rows renormalised."""
    geom = geometry_of(block)
    attn = _block_attn(block, batch)
    M2 = geom.window_size**2
    if attn.shape[0] != geom.num_windows or attn.shape[-1] != M2:
        raise ValueError(
            f"attention shape {tuple(attn.shape)} does not match {geom.num_windows} windows of {M2} tokens"
        )
    index = window_token_index(geom)  # (nW, M*M)
    probs = _fuse(attn, head_fusion)  # (nW, M*M, M*M)
    real = (index >= 0).float()  # (nW, M*M)
    probs = probs * real[:, None, :] * real[:, :, None]
    probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)
    return _WindowOperator(index, probs)


def _apply_left(v: torch.Tensor, op: _WindowOperator, alpha: float) -> torch.Tensor:
    """v @ Ã for row vectors v (K, N): Ã = (1 - alpha) * A + alpha * I, A given per window."""
    K, N = v.shape
    idx = op.index.reshape(-1)  # (nW * M*M,)
    real = idx >= 0
    gathered = torch.zeros(K, idx.numel(), dtype=v.dtype)
    gathered[:, real] = v[:, idx[real]]  # (K, nW * M*M): weight on each query slot
    nW, M2 = op.index.shape
    mixed = torch.einsum("kwi,wij->kwj", gathered.reshape(K, nW, M2), op.probs)  # (K, nW, M*M) on keys
    out = torch.zeros_like(v)
    out[:, idx[real]] = mixed.reshape(K, -1)[:, real]  # each token sits in exactly one slot
    return (1.0 - alpha) * out + alpha * v


def merge_matrix(fine: tuple[int, int], coarse: tuple[int, int]) -> torch.Tensor:
    """(N_coarse, N_fine) patch-merging matrix: each coarse token averages its real 2x2 children."""
    H, W = fine
    Hc, Wc = coarse
    if (Hc, Wc) != (math.ceil(H / 2), math.ceil(W / 2)):
        raise ValueError(f"a {H}x{W} grid merges to {math.ceil(H / 2)}x{math.ceil(W / 2)}, not {Hc}x{Wc}")
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")  # (H, W) each
    parent = ((ys // 2) * Wc + xs // 2).reshape(-1)  # (N_fine,)
    counts = torch.bincount(parent, minlength=Hc * Wc).float()  # (N_coarse,)
    D = torch.zeros(Hc * Wc, H * W)
    D[parent, torch.arange(H * W)] = 1.0 / counts[parent]
    return D  # (N_coarse, N_fine)


def _merge_left(v: torch.Tensor, fine: tuple[int, int], coarse: tuple[int, int]) -> torch.Tensor:
    """v @ D for row vectors over coarse tokens (K, N_coarse) -> (K, N_fine), without forming D."""
    H, W = fine
    Hc, Wc = coarse
    if (Hc, Wc) != (math.ceil(H / 2), math.ceil(W / 2)):
        raise ValueError(f"a {H}x{W} grid merges to {math.ceil(H / 2)}x{math.ceil(W / 2)}, not {Hc}x{Wc}")
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")  # (H, W) each
    parent = ((ys // 2) * Wc + xs // 2).reshape(-1)  # (N_fine,)
    counts = torch.bincount(parent, minlength=Hc * Wc).to(v.dtype)  # (N_coarse,)
    return (v / counts)[:, parent]  # (K, N_fine)


def _check_blocks(blocks: Sequence[BlockCapture]) -> None:
    """Refuse an empty list, ViT blocks and blocks out of forward order, each with its own message."""
    if len(blocks) == 0:
        raise ValueError("no attention blocks to roll out")
    for i, b in enumerate(blocks):
        if not isinstance(b, SwinBlockCapture):
            raise ValueError(f"block {i} is not a Swin block (no windows); use the ViT rollout")
    for a, b in zip(blocks, blocks[1:]):
        if b.stage < a.stage or (b.stage == a.stage and tuple(b.grid_size) != tuple(a.grid_size)):
            raise ValueError("blocks must be given in forward order")


def swin_rollout_rows(
    blocks: Sequence[BlockCapture],
    targets: torch.Tensor,
    *,
    alpha: float = 0.5,
    head_fusion: HeadFusion = "mean",
    batch: int = 0,
) -> torch.Tensor:
    """Rows of R for weightings of the last block's tokens: (K, N_last) -> (K, gh0 * gw0).

    ``targets[k]`` weights the tokens of the last given block's stage grid (a one-hot row for one
    token, a uniform row for the pooled prediction); the result is ``targets @ R``. ``blocks`` are
    the Swin block captures in forward order, starting at the first block of stage 0 (pass a prefix
    of the list to roll out up to an intermediate block).
    """
    _check_blocks(blocks)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    last = blocks[-1]
    n_last = last.grid_size[0] * last.grid_size[1]
    if targets.dim() != 2 or targets.shape[1] != n_last:
        raise ValueError(f"targets must be (K, {n_last}) over the last block's grid, got {tuple(targets.shape)}")
    v = targets.double()  # float64: a long product of stochastic matrices keeps its row sums exactly
    for i in range(len(blocks) - 1, -1, -1):
        b = blocks[i]
        op = window_operator(b, head_fusion, batch)
        v = _apply_left(v, _WindowOperator(op.index, op.probs.double()), alpha)
        if i > 0 and blocks[i - 1].stage != b.stage:
            v = _merge_left(v, tuple(blocks[i - 1].grid_size), tuple(b.grid_size))
    return v.float()  # (K, N_0)


def swin_rollout(
    blocks: Sequence[BlockCapture],
    target: Union[str, tuple[int, int]] = "mean",
    *,
    alpha: float = 0.5,
    head_fusion: HeadFusion = "mean",
    batch: int = 0,
) -> torch.Tensor:
    """(gh0, gw0) Swin rollout map on the stage-0 patch grid.

    ``target`` is 'mean' (average over the last block's tokens: what global-average pooling feeds
    the classifier) or a token (y, x) of the last block's stage grid.
    """
    _check_blocks(blocks)
    last = blocks[-1]
    H, W = last.grid_size
    if isinstance(target, str):
        if target != "mean":
            raise ValueError(f"target must be 'mean' or a token (y, x), got {target!r}")
        rows = torch.full((1, H * W), 1.0 / (H * W))
    else:
        y, x = int(target[0]), int(target[1])
        if not (0 <= y < H and 0 <= x < W):
            raise ValueError(f"token ({y}, {x}) is outside the {H}x{W} grid of the last block")
        rows = torch.zeros(1, H * W)
        rows[0, y * W + x] = 1.0
    out = swin_rollout_rows(blocks, rows, alpha=alpha, head_fusion=head_fusion, batch=batch)
    gh, gw = blocks[0].grid_size
    return out.reshape(gh, gw)  # (gh0, gw0)


def swin_rollout_matrix(
    blocks: Sequence[BlockCapture],
    *,
    alpha: float = 0.5,
    head_fusion: HeadFusion = "mean",
    batch: int = 0,
) -> torch.Tensor:
    """(N_last, N_0) the whole relevance matrix R: one row per token of the last block's stage."""
    _check_blocks(blocks)
    H, W = blocks[-1].grid_size
    eye = torch.eye(H * W)  # (N_last, N_last)
    return swin_rollout_rows(blocks, eye, alpha=alpha, head_fusion=head_fusion, batch=batch)


def _scatter_query_rows(block: BlockCapture, query: tuple[int, int], rows_of) -> torch.Tensor:
    """(K, H, W): ``rows_of(attn[w], slot)`` -> (K, M*M) rows of the query's window, each scattered to the
    stage grid (the cyclic shift undone, padding keys dropped, 0 outside the window)."""
    geom = geometry_of(block)
    w, slot = locate_token(geom, int(query[0]), int(query[1]))
    rows = rows_of(w, slot)  # (K, M*M)
    H, W = geom.grid_size
    out = torch.zeros(rows.shape[0], H * W)
    index = window_token_index(geom)[w]  # (M*M,)
    real = index >= 0
    out[:, index[real]] = rows[:, real]
    return out.reshape(-1, H, W)  # (K, H, W)


def query_attention_map(
    block: BlockCapture,
    query: tuple[int, int],
    *,
    head_fusion: HeadFusion = "mean",
    batch: int = 0,
) -> torch.Tensor:
    """(H, W) attention of the token at ``query`` = (y, x) of the block's stage grid to every token.

    Zeros outside the query's window; the cyclic shift is undone; padding keys are dropped (their
    attention is not shown, so the map can sum to slightly less than 1 in padded windows).
    """
    attn = _block_attn(block, batch)  # (nW, heads, M*M, M*M)
    return _scatter_query_rows(
        block, query, lambda w, slot: _fuse(attn[w : w + 1, :, slot : slot + 1, :], head_fusion)[0]  # (1, M*M)
    )[0]  # (H, W)


def query_attention_heads(block: BlockCapture, query: tuple[int, int], *, batch: int = 0) -> torch.Tensor:
    """(heads, H, W): :func:`query_attention_map` of every head, in one pass over the window."""
    attn = _block_attn(block, batch)  # (nW, heads, M*M, M*M)
    return _scatter_query_rows(block, query, lambda w, slot: attn[w, :, slot, :])  # (heads, H, W)


def query_attention_image(
    block: BlockCapture,
    pixel: tuple[int, int],
    img_size: tuple[int, int],
    *,
    head_fusion: HeadFusion = "mean",
    batch: int = 0,
) -> torch.Tensor:
    """(img_H, img_W) window attention of the token under input pixel (py, px), drawn over the image."""
    geom = geometry_of(block)
    p = geom.token_px  # > 0: block_geometry refuses less
    H, W = geom.grid_size
    y, x = int(pixel[0]) // p, int(pixel[1]) // p
    if not (0 <= y < H and 0 <= x < W) or pixel[0] < 0 or pixel[1] < 0:
        raise ValueError(f"pixel {tuple(pixel)} is outside the {H * p}x{W * p} area the tokens cover")
    stage_map = query_attention_map(block, (y, x), head_fusion=head_fusion, batch=batch)  # (H, W)
    return stage_map_to_image(stage_map, p, img_size)


def stage_map_to_patch_grid(stage_map: torch.Tensor, factor: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Upsample a stage map (H, W) by ``factor`` (2**stage) with nearest repetition, cropped to the
    stage-0 ``grid_size`` (a merged token covers its 2x2 children, padding children fall off)."""
    up = stage_map.repeat_interleave(factor, dim=0).repeat_interleave(factor, dim=1)  # (H*f, W*f)
    gh, gw = grid_size
    if up.shape[0] < gh or up.shape[1] < gw:
        raise ValueError(f"a {tuple(stage_map.shape)} map times {factor} does not cover {gh}x{gw}")
    return up[:gh, :gw]


def stage_map_to_image(stage_map: torch.Tensor, token_px: int, img_size: tuple[int, int],
                       fill: float = 0) -> torch.Tensor:
    """(img_H, img_W) map: each token's value over its token_px x token_px pixels, cropped to the
    image; pixels right/below the last whole token (which the patch embedding ignores) get ``fill``.

    The repetition is numpy's (several times faster than torch's repeat_interleave on a large input);
    the result has the stage map's dtype (an integer label map stays integer).
    """
    if token_px <= 0:
        raise ValueError(f"token_px must be positive, got {token_px}")
    Hi, Wi = int(img_size[0]), int(img_size[1])
    H, W = stage_map.shape
    h, w = min(Hi, H * token_px), min(Wi, W * token_px)  # the pixels the tokens cover inside the image
    src = stage_map.detach().cpu().numpy()[: -(-h // token_px), : -(-w // token_px)]  # only tokens that show
    up = src.repeat(token_px, axis=0).repeat(token_px, axis=1)  # (rows*p, cols*p)
    out = np.full((Hi, Wi), fill, dtype=src.dtype)
    out[:h, :w] = up[:h, :w]
    return torch.from_numpy(out)


__all__ = [
    "window_operator",
    "merge_matrix",
    "swin_rollout_rows",
    "swin_rollout",
    "swin_rollout_matrix",
    "query_attention_map",
    "query_attention_heads",
    "query_attention_image",
    "stage_map_to_patch_grid",
    "stage_map_to_image",
]
