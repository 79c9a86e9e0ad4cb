"""Where one token looks: a query token's attention to the patch tokens, drawn on the patch grid.

Conventions shared by the whole ``attnviz.analysis`` attention toolkit (query, rollout, flow,
relevance, stats):

- A block's attention for one image is a ``(heads, N, N)`` array, numpy or torch, any float dtype
  (a batch of one, ``(1, heads, N, N)``, is accepted too). Row = query, column = key; each row is a
  softmax distribution. A network's blocks come as a list in forward order; :func:`image_attentions`
  takes them out of a :class:`~attnviz.nets.capture.Capture`.
- Token order is timm's: ``num_prefix_tokens`` prefix tokens first (class, distillation, registers),
  then the patches row-major over ``grid_size = (gh, gw)``, so patch (row, col) is token
  ``num_prefix_tokens + row * gw + col``.
- Computation runs in torch float64 on the CPU; every function returns numpy float64 arrays.
"""
from __future__ import annotations

from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch

from attnviz.nets.capture import Capture

ArrayLike = Union[np.ndarray, torch.Tensor]
Fusion = Literal["mean", "max", "min"]
FUSIONS: tuple[str, ...] = ("mean", "max", "min")


# ---------------------------------------------------------------------------------------------
# token index <-> grid position


def token_index(row: int, col: int, grid_size: tuple[int, int], num_prefix_tokens: int) -> int:
    """Token index of patch (row, col) on a ``grid_size`` patch grid behind ``num_prefix_tokens``."""
    gh, gw = grid_size
    if not (0 <= row < gh and 0 <= col < gw):
        raise ValueError(f"patch ({row}, {col}) lies outside the {gh}×{gw} patch grid")
    return num_prefix_tokens + row * gw + col


def token_position(index: int, grid_size: tuple[int, int], num_prefix_tokens: int) -> Optional[tuple[int, int]]:
    """(row, col) of token ``index`` on the patch grid, or None for a prefix token."""
    gh, gw = grid_size
    n = num_prefix_tokens + gh * gw
    if not 0 <= index < n:
        raise ValueError(f"token {index} does not exist (0..{n - 1}: {num_prefix_tokens} prefix + {gh}×{gw} patches)")
    if index < num_prefix_tokens:
        return None
    return divmod(index - num_prefix_tokens, gw)


def patch_positions(grid_size: tuple[int, int]) -> np.ndarray:
    """(gh*gw, 2) float64 (row, col) of every patch in token order."""
    gh, gw = grid_size
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")  # (gh, gw) each
    return np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)  # (gh*gw, 2)


# ---------------------------------------------------------------------------------------------
# input conversion


def as_heads(attn: ArrayLike, what: str = "attention") -> torch.Tensor:
    """One block's attention as a CPU tensor (heads, N, N) in its own float dtype (detached).

    Accepts (heads, N, N) or a batch of one (1, heads, N, N); anything else raises ValueError.
    """
    t = torch.as_tensor(attn).detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]  # (heads, N, N)
    if t.dim() != 3 or t.shape[-1] != t.shape[-2] or t.shape[0] < 1:
        raise ValueError(f"{what} must be (heads, N, N) for one image, got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.to(torch.float64)
    return t.to("cpu")


def as_block_list(attns: Sequence[ArrayLike], what: str = "attention") -> list[torch.Tensor]:
    """Every block's (heads, N, N) attention, checked to share one token count."""
    if isinstance(attns, (np.ndarray, torch.Tensor)) and attns.ndim == 3:
        raise ValueError(f"{what}: pass a list of blocks, each (heads, N, N), not a single block")
    blocks = [as_heads(a, f"{what} of block {i}") for i, a in enumerate(attns)]
    if not blocks:
        raise ValueError(f"no {what} given: the capture holds no blocks (was attention captured?)")
    n = blocks[0].shape[-1]
    for i, b in enumerate(blocks):
        if b.shape[-1] != n:
            raise ValueError(f"{what} of block {i} covers {b.shape[-1]} tokens, block 0 covers {n}")
    return blocks


def image_attentions(capture: Capture, index: int = 0) -> list[torch.Tensor]:
    """A ViT capture's per-block attention of image ``index``: a list of (heads, N, N) tensors.

    Swin captures hold window attention (no global token matrix) and raise ValueError.
    """
    if capture.family != "vit":
        raise ValueError("token-to-token maps need a ViT-family capture; Swin attends inside windows")
    if not capture.blocks:
        raise ValueError("the capture holds no attention blocks")
    B = capture.blocks[0].attn.shape[0]
    if not 0 <= index < B:
        raise ValueError(f"image {index} is not in this capture (batch of {B})")
    return [b.attn[index] for b in capture.blocks]


# ---------------------------------------------------------------------------------------------
# head fusion and maps


def fuse_heads(attn: torch.Tensor, fusion: Fusion | str = "mean") -> torch.Tensor:
    """(heads, ...) -> (...) by the mean, max or min over heads (in the input's precision)."""
    if fusion == "mean":
        return attn.mean(dim=0)
    if fusion == "max":
        return attn.amax(dim=0)
    if fusion == "min":
        return attn.amin(dim=0)
    raise ValueError(f"unknown head fusion '{fusion}' (use one of {', '.join(FUSIONS)})")


def _check_geometry(n_tokens: int, num_prefix_tokens: int, grid_size: tuple[int, int]) -> None:
    gh, gw = grid_size
    if num_prefix_tokens < 0 or gh < 1 or gw < 1 or num_prefix_tokens + gh * gw != n_tokens:
        raise ValueError(f"{n_tokens} tokens do not match {num_prefix_tokens} prefix tokens + a {gh}×{gw} grid")


def patch_map(
    values: ArrayLike,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    normalize: Optional[Literal["max", "sum"]] = None,
) -> np.ndarray:
    """Per-token values (..., N) -> their patch entries as an image (..., gh, gw), float64.

    normalize='max' scales each map so its largest entry is 1 (an all-zero map stays zero);
    'sum' so its entries sum to 1; None leaves the values as they are.
    """
    v = torch.as_tensor(values).detach().to("cpu", torch.float64)
    _check_geometry(v.shape[-1], num_prefix_tokens, grid_size)
    m = v[..., num_prefix_tokens:].reshape(*v.shape[:-1], *grid_size)  # (..., gh, gw)
    if normalize is not None:
        if normalize == "max":
            d = m.amax(dim=(-2, -1), keepdim=True)  # (..., 1, 1)
        elif normalize == "sum":
            d = m.sum(dim=(-2, -1), keepdim=True)  # (..., 1, 1)
        else:
            raise ValueError(f"unknown normalisation '{normalize}' (use 'max', 'sum' or None)")
        m = torch.where(d > 0, m / torch.where(d > 0, d, 1.0), torch.zeros_like(m))
    return m.numpy()


def query_attention(
    attn: ArrayLike, query: int, num_prefix_tokens: int, grid_size: tuple[int, int]
) -> np.ndarray:
    """(heads, gh, gw): how much token ``query`` (a prefix token or a patch) attends to each patch.

    Values are the network's own probabilities (no renormalisation over patches: what a query gives
    to prefix tokens is simply not drawn; :func:`prefix_attention` reports it).
    """
    a = as_heads(attn)
    n = a.shape[-1]
    _check_geometry(n, num_prefix_tokens, grid_size)
    if not 0 <= query < n:
        raise ValueError(f"query token {query} does not exist (0..{n - 1})")
    # one row, then float64: converting the whole (heads, N, N) first costs 240 MB at ViT-L/14 518
    return patch_map(a[:, query, :].to(torch.float64), num_prefix_tokens, grid_size)  # (heads, gh, gw)


def query_map(
    attn: ArrayLike,
    query: int,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    head: int | Fusion | str = "mean",
) -> np.ndarray:
    """(gh, gw) attention of ``query`` to the patches for one head (int) or fused ('mean'/'max'/'min')."""
    per_head = torch.from_numpy(query_attention(attn, query, num_prefix_tokens, grid_size))  # (heads, gh, gw)
    if isinstance(head, (int, np.integer)) and not isinstance(head, bool):
        if not 0 <= head < per_head.shape[0]:
            raise ValueError(f"head {head} does not exist (0..{per_head.shape[0] - 1})")
        return per_head[head].numpy()
    return fuse_heads(per_head, head).numpy()


def prefix_attention(attn: ArrayLike, query: int, num_prefix_tokens: int) -> np.ndarray:
    """(heads, num_prefix_tokens): what token ``query`` gives to each prefix token, per head."""
    a = as_heads(attn)
    if not 0 <= query < a.shape[-1]:
        raise ValueError(f"query token {query} does not exist (0..{a.shape[-1] - 1})")
    return a[:, query, :num_prefix_tokens].to(torch.float64).numpy()  # (heads, P), a copy of one row
