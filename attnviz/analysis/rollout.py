"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020).

Each block mixes tokens by its attention and keeps them by its residual connection. Rollout models a
block as the row-stochastic matrix

    Ã = (1 − α) · F + α · I,    F = fuse_h(A) with its rows renormalised,

and follows the mixing through the network: R = Ã_L ⋯ Ã_1 (the last block's matrix on the left, so
R[i, j] is how much input token j contributes to token i after block L). The map of a start token
(e.g. the class token) is R[start, patches].

Options follow vit-explain's: head fusion 'mean', 'max' or 'min', and a discard ratio that zeroes,
in every row, that fraction of the lowest patch entries before renormalising (prefix-token columns
are never discarded). Deliberately unlike vit-explain, rows are normalised per row
(``keepdim=True``), blocks are multiplied in forward order, and the identity weight is exactly α
because F is renormalised before the identity is mixed in.

The knobs (α, fusion, discard ratio, block range) are one :class:`~attnviz.analysis.options.MixOptions`
value, validated when it is made and passed whole, shared with flow and relevance. The prefix-token
count is a separate argument: it is the capture's geometry, not a choice.

Conventions (shapes, token order, dtypes) are those of :mod:`attnviz.analysis.query`: inputs are
per-image ``(heads, N, N)`` arrays, numpy or torch; results are numpy float64. Head fusion runs in
the input's precision (max/min exactly; the mean of float32 inputs adds at most ~heads·2⁻²⁴ relative
error, the order of the inputs' own rounding); everything after it in float64.
"""
from __future__ import annotations

from typing import Literal, Optional, Sequence

import numpy as np
import torch

from .options import DEFAULT_OPTIONS, MixOptions
from .query import ArrayLike, as_block_list, as_heads, fuse_heads, patch_map


def augment(
    fused: torch.Tensor, *, options: MixOptions = DEFAULT_OPTIONS, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Head-fused (N, N) non-negative weights -> Ã = (1 − α)·F + α·I, float64, rows summing to 1.

    F is ``fused`` with, per row, the ``int(options.discard_ratio * (N − num_prefix_tokens))`` lowest
    patch entries set to zero, then each row divided by its own sum. A row with nothing left (all
    zero) becomes the identity row: the token keeps itself. Only ``options.alpha`` and
    ``options.discard_ratio`` apply here (the heads are already fused, and there is one block).
    """
    alpha = options.alpha
    F = fused.detach().to("cpu", torch.float64, copy=True)
    if F.dim() != 2 or F.shape[0] != F.shape[1]:
        raise ValueError(f"fused attention must be (N, N), got {tuple(F.shape)}")
    N = F.shape[-1]
    if not 0 <= num_prefix_tokens <= N:
        raise ValueError(f"{num_prefix_tokens} prefix tokens do not fit in {N} tokens")
    if N and not bool(F.min() >= 0):  # also catches NaN
        raise ValueError("attention weights must be non-negative numbers")
    n_patch = N - num_prefix_tokens
    k = int(options.discard_ratio * n_patch)
    if k > 0:
        patches = F[:, num_prefix_tokens:]  # (N, n_patch) view
        lowest = torch.topk(patches, k, dim=-1, largest=False).indices  # (N, k)
        patches.scatter_(-1, lowest, 0.0)
    rows = F.sum(dim=-1, keepdim=True)  # (N, 1): one sum per row, broadcast along the row
    if not bool(torch.isfinite(rows).all()):
        raise ValueError("attention holds infinite values")
    empty = rows[:, 0] <= 0
    F.div_(torch.where(empty[:, None], 1.0, rows))
    F.diagonal()[empty] = 1.0  # a row with nothing left keeps its own token
    F.mul_(1.0 - alpha)
    F.diagonal().add_(alpha)
    return F


def augmented_attention(
    attn: ArrayLike, *, options: MixOptions = DEFAULT_OPTIONS, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """One block's (heads, N, N) attention -> its rollout matrix Ã (N, N), float64 (see :func:`augment`).

    Heads are fused by ``options.fusion``; the block range of ``options`` does not apply to one block.
    """
    a = as_heads(attn)
    return augment(fuse_heads(a, options.fusion), options=options, num_prefix_tokens=num_prefix_tokens)


def block_range(num_blocks: int, first_block: int = 0, last_block: Optional[int] = None) -> range:
    """Blocks first_block..last_block inclusive (negative indices count from the end).

    The range is checked here, against the network's block count, because :class:`MixOptions` cannot
    know how many blocks a capture holds.
    """
    last = num_blocks - 1 if last_block is None else last_block
    first = first_block + num_blocks if first_block < 0 else first_block
    last = last + num_blocks if last < 0 else last
    if not 0 <= first <= last < num_blocks:
        raise ValueError(f"blocks {first_block}..{last_block} are not a range of the {num_blocks} blocks")
    return range(first, last + 1)


def augmented_attentions(
    attns: Sequence[ArrayLike], *, options: MixOptions = DEFAULT_OPTIONS, num_prefix_tokens: int = 1
) -> list[torch.Tensor]:
    """Ã of every block in options.first_block..options.last_block, in forward order."""
    blocks = as_block_list(attns)
    return [augmented_attention(blocks[i], options=options, num_prefix_tokens=num_prefix_tokens)
            for i in block_range(len(blocks), options.first_block, options.last_block)]


def chain(mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """R = M_last ⋯ M_first for matrices given in forward order (the last block's on the left)."""
    R = mats[0]
    for M in mats[1:]:
        R = M @ R
    return R


def chain_row(mats: Sequence[torch.Tensor], start: int) -> torch.Tensor:
    """Row ``start`` of :func:`chain` (N,), by vector-matrix products only: e_startᵀ·M_last ⋯ M_first."""
    N = mats[0].shape[-1]
    if not 0 <= start < N:
        raise ValueError(f"start token {start} does not exist (0..{N - 1})")
    v = torch.zeros(N, dtype=torch.float64)
    v[start] = 1.0
    for M in reversed(mats):
        v = v @ M
    return v


def rollout(
    attns: Sequence[ArrayLike], *, options: MixOptions = DEFAULT_OPTIONS, num_prefix_tokens: int = 1
) -> np.ndarray:
    """The full rollout matrix R = Ã_last ⋯ Ã_first, (N, N) float64 with rows summing to 1.

    R[i, j]: share of input token j in token i after ``options.last_block``. For one start token's
    map, :func:`rollout_row` is cheaper (vector products instead of matrix products).
    """
    return chain(augmented_attentions(attns, options=options, num_prefix_tokens=num_prefix_tokens)).numpy()


def rollout_row(
    attns: Sequence[ArrayLike],
    start: int = 0,
    *,
    options: MixOptions = DEFAULT_OPTIONS,
    num_prefix_tokens: int = 1,
) -> np.ndarray:
    """R[start] (N,) float64: what every input token contributes to token ``start`` (sums to 1)."""
    if options.discard_ratio > 0:
        mats = augmented_attentions(attns, options=options, num_prefix_tokens=num_prefix_tokens)
        return chain_row(mats, start).numpy()
    # Without discarding, v·Ã = (1 − α)·(v / rowsums)·F + α·v: no N×N matrix is built per block.
    blocks = as_block_list(attns)
    N = blocks[0].shape[-1]
    if not 0 <= start < N:
        raise ValueError(f"start token {start} does not exist (0..{N - 1})")
    if not 0 <= num_prefix_tokens <= N:
        raise ValueError(f"{num_prefix_tokens} prefix tokens do not fit in {N} tokens")
    v = torch.zeros(N, dtype=torch.float64)
    v[start] = 1.0
    for i in reversed(block_range(len(blocks), options.first_block, options.last_block)):
        F = fuse_heads(blocks[i], options.fusion).to(torch.float64)  # (N, N)
        v = _row_times_augmented(v, F, options.alpha)
    return v.numpy()


def _row_times_augmented(v: torch.Tensor, F: torch.Tensor, alpha: float) -> torch.Tensor:
    """v·augment(F) for a (N,) row vector and residual weight alpha, without discarding (see :func:`augment`)."""
    if not bool(F.min() >= 0):  # also catches NaN
        raise ValueError("attention weights must be non-negative numbers")
    rows = F.sum(dim=-1)  # (N,)
    if not bool(torch.isfinite(rows).all()):
        raise ValueError("attention holds infinite values")
    empty = rows <= 0  # rows with nothing in them act as identity rows
    w = torch.where(empty, 0.0, v / torch.where(empty, 1.0, rows))  # (N,)
    return (1.0 - alpha) * (w @ F + torch.where(empty, v, 0.0)) + alpha * v


def rollout_map(
    attns: Sequence[ArrayLike],
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    start: int = 0,
    *,
    options: MixOptions = DEFAULT_OPTIONS,
    normalize: Optional[Literal["max", "sum"]] = "max",
) -> np.ndarray:
    """(gh, gw) rollout map of token ``start``: R[start, patches] on the patch grid (max 1 by default)."""
    row = rollout_row(attns, start, options=options, num_prefix_tokens=num_prefix_tokens)  # (N,)
    return patch_map(row, num_prefix_tokens, grid_size, normalize=normalize)
