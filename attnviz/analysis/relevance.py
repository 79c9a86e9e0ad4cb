"""Class-specific relevance maps from attention and its gradient.

Two methods, both driven by the gradient of one class LOGIT (not its softmax probability, which
would mix in every other class) with respect to each block's attention probabilities:

- Gradient-weighted rollout (as in vit-explain): Ā_l = fuse_h((A_l ⊙ ∂y/∂A_l)⁺), then rollout
  (:mod:`attnviz.analysis.rollout`) over Ā_l: residual mixing Ã = (1 − α)·Ā + α·I, rows renormalised,
  R = Ã_L ⋯ Ã_1.
- Generic attention explainability (Chefer, Gur & Wolf, "Generic Attention-model Explainability for
  Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021): R = I, then for every block in
  forward order Ā_l = E_h[(∇A_l ⊙ A_l)⁺] and R ← R + Ā_l·R. The map is R[start, patches].

Every block's gradient must be paired with that block's attention: both lists are in forward order
and their shapes are checked block by block. Inputs follow :mod:`attnviz.analysis.query` (per-image
(heads, N, N) arrays, numpy or torch); results are numpy float64. The knobs are one
:class:`~attnviz.analysis.options.MixOptions`, as for rollout: 'grad_rollout' reads all of it,
'chefer' only the block range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from .options import DEFAULT_OPTIONS, MixOptions
from .query import ArrayLike, Fusion, as_block_list, fuse_heads, patch_map
from .rollout import augment, block_range, chain, chain_row

Method = Literal["chefer", "grad_rollout"]
METHODS: tuple[str, ...] = ("chefer", "grad_rollout")


def _pairs(
    attns: Sequence[ArrayLike], grads: Sequence[ArrayLike], options: MixOptions
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(attention, gradient) of the blocks options.first_block..last_block in forward order, float64,
    shapes checked."""
    A = as_block_list(attns, "attention")
    G = as_block_list(grads, "attention gradient")
    if len(A) != len(G):
        raise ValueError(f"{len(A)} attention blocks but {len(G)} gradient blocks")
    for i, (a, g) in enumerate(zip(A, G)):
        if a.shape != g.shape:
            raise ValueError(f"block {i}: attention {tuple(a.shape)} and gradient {tuple(g.shape)} differ")
    blocks = block_range(len(A), options.first_block, options.last_block)
    return [(A[i].to(torch.float64), G[i].to(torch.float64)) for i in blocks]


def weighted_attention(attn: torch.Tensor, grad: torch.Tensor, fusion: Fusion | str = "mean") -> torch.Tensor:
    """fuse_h((A ⊙ ∇A)⁺): (heads, N, N) attention and its gradient -> (N, N), negatives clipped per head."""
    return fuse_heads((attn * grad).clamp(min=0.0), fusion)


def chefer_matrices(
    attns: Sequence[ArrayLike], grads: Sequence[ArrayLike], *, options: MixOptions = DEFAULT_OPTIONS
) -> list[torch.Tensor]:
    """I + Ā_l for the chosen blocks in forward order, so R = chain(...) (Chefer et al. 2021).

    Only the block range of ``options`` applies: the method has no residual weight, always takes the
    head mean and discards nothing.
    """
    eye = None
    mats = []
    for a, g in _pairs(attns, grads, options):
        bar = weighted_attention(a, g, "mean")  # (N, N)
        if eye is None:
            eye = torch.eye(bar.shape[-1], dtype=torch.float64)
        mats.append(eye + bar)
    return mats


def chefer_relevance(
    attns: Sequence[ArrayLike], grads: Sequence[ArrayLike], *, options: MixOptions = DEFAULT_OPTIONS
) -> np.ndarray:
    """Chefer et al.'s relevance matrix R (N, N), float64: R = (I + Ā_L) ⋯ (I + Ā_1)."""
    return chain(chefer_matrices(attns, grads, options=options)).numpy()


def grad_rollout_matrices(
    attns: Sequence[ArrayLike],
    grads: Sequence[ArrayLike],
    *,
    options: MixOptions = DEFAULT_OPTIONS,
    num_prefix_tokens: int = 1,
) -> list[torch.Tensor]:
    """Rollout matrices Ã_l built from fuse_h((A ⊙ ∇A)⁺) instead of the attention (forward order)."""
    return [augment(weighted_attention(a, g, options.fusion), options=options, num_prefix_tokens=num_prefix_tokens)
            for a, g in _pairs(attns, grads, options)]


def grad_rollout(
    attns: Sequence[ArrayLike],
    grads: Sequence[ArrayLike],
    *,
    options: MixOptions = DEFAULT_OPTIONS,
    num_prefix_tokens: int = 1,
) -> np.ndarray:
    """Gradient-weighted rollout matrix (N, N), float64, rows summing to 1."""
    return chain(grad_rollout_matrices(attns, grads, options=options, num_prefix_tokens=num_prefix_tokens)).numpy()


def relevance_row(
    attns: Sequence[ArrayLike],
    grads: Sequence[ArrayLike],
    start: int = 0,
    method: Method | str = "chefer",
    *,
    options: MixOptions = DEFAULT_OPTIONS,
    num_prefix_tokens: int = 1,
) -> np.ndarray:
    """Row ``start`` of the relevance matrix of ``method`` (N,), by vector products only.

    options.alpha, fusion and discard_ratio apply to 'grad_rollout' only ('chefer' has no such
    options); the block range applies to both.
    """
    if method == "chefer":
        mats = chefer_matrices(attns, grads, options=options)
    elif method == "grad_rollout":
        mats = grad_rollout_matrices(attns, grads, options=options, num_prefix_tokens=num_prefix_tokens)
    else:
        raise ValueError(f"unknown relevance method '{method}' (use one of {', '.join(METHODS)})")
    return chain_row(mats, start).numpy()


# ---------------------------------------------------------------------------------------------
# from a network


@dataclass
class Relevance:
    """A class-specific map of one image."""

    values: np.ndarray  # (N,) float64: row ``start`` of the relevance matrix
    map: np.ndarray  # (gh, gw) float64: the patch entries, scaled to a maximum of 1
    class_idx: int
    logit: float  # the logit whose gradient was used
    method: str
    start: int
    num_prefix_tokens: int
    grid_size: tuple[int, int]
    options: MixOptions  # what mixed the blocks ('chefer' reads only the block range)


def attention_gradients(
    net: torch.nn.Module, x: torch.Tensor, class_idx: int, use_pos_embed: bool = True
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, object]:
    """Run ``net.capture(x, keep_graph=True)`` on one image and differentiate logit ``class_idx``
    (``use_pos_embed=False``: the capture without the position embedding, as the scramble lesson runs it).

    Returns (attentions, gradients, logits, capture): per-block (heads, N, N) CPU float32 tensors
    of image 0 in forward order, the (classes,) logits, and the capture (geometry; its attention
    tensors stay on the device and in the graph). Works under ``torch.inference_mode`` and with
    frozen parameters (the input is made to require a gradient).
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"class relevance takes one image (1, 3, H, W), got shape {tuple(x.shape)}")
    with torch.inference_mode(False), torch.enable_grad():
        xin = x.detach().clone().requires_grad_(True)
        cap = net.capture(xin, keep_graph=True, use_pos_embed=use_pos_embed)
        if cap.family != "vit":
            raise ValueError("class relevance needs a ViT-family model (Swin has no token-to-token attention)")
        if cap.logits is None:
            raise ValueError("this model has no classifier, so there is no class logit to explain")
        n_cls = cap.logits.shape[-1]
        if not 0 <= class_idx < n_cls:
            raise ValueError(f"class {class_idx} does not exist (0..{n_cls - 1})")
        if not cap.blocks:
            raise ValueError("the capture holds no attention blocks")
        attn = [b.attn for b in cap.blocks]  # each (1, heads, N, N), in the graph
        grads = torch.autograd.grad(cap.logits[0, class_idx], attn)
    A = [a[0].detach().to("cpu", torch.float32) for a in attn]
    G = [g[0].detach().to("cpu", torch.float32) for g in grads]
    return A, G, cap.logits[0].detach().to("cpu", torch.float32), cap


def class_relevance(
    net: torch.nn.Module,
    x: torch.Tensor,
    class_idx: int,
    method: Method | str = "chefer",
    *,
    start: int = 0,
    options: MixOptions = DEFAULT_OPTIONS,
) -> Relevance:
    """Class-specific map of image ``x`` (1, 3, H, W) for logit ``class_idx`` by ``method``.

    One capturing forward with the graph kept, one backward from the logit, then the math above. The
    result records ``options``, so a map can be told apart from one mixed another way.
    """
    if method not in METHODS:
        raise ValueError(f"unknown relevance method '{method}' (use one of {', '.join(METHODS)})")
    A, G, logits, cap = attention_gradients(net, x, class_idx)
    P = cap.num_prefix_tokens
    row = relevance_row(A, G, start, method, options=options, num_prefix_tokens=P)  # (N,)
    return Relevance(
        values=row, map=patch_map(row, P, cap.grid_size, normalize="max"), class_idx=int(class_idx),
        logit=float(logits[class_idx]), method=str(method), start=int(start), num_prefix_tokens=P,
        grid_size=tuple(cap.grid_size), options=options,
    )
