"""Products of the Position embeddings panel, registered beside it.

``pos_similarity``: the cosine similarity of every patch's learned absolute position embedding with every
other patch's, as the network adds it at the current input size (resampled like the network does when
the input grid differs from the trained one), its profile against patch distance, the rank correlation
between the two, and the same profile of a fixed 2-D sin-cos embedding for comparison. A model without a
learned absolute embedding (Swin, a ViT built without one) raises :class:`NotApplicable` with what the
model uses instead, so the panel can say it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..analysis.pos_embed import (
    distance_rank_correlation,
    position_similarity,
    similarity_distance_profile,
    sincos_2d_position_embedding,
    vit_position_similarity,
)
from .products import Context, NotApplicable, ProductSpec, register

SWIN_PANEL = "Swin windows"


@dataclass
class Profile:
    """Similarity against patch distance (ordered pairs i != j)."""

    distances: np.ndarray  # (K,) patch distances, ascending
    mean: np.ndarray  # (K,) mean cosine similarity at that distance
    std: np.ndarray  # (K,) spread (standard deviation) at that distance
    rank_correlation: float  # Spearman's rho of similarity vs distance over all pairs


@dataclass
class PositionSimilarity:
    """What the panel draws for a ViT with a learned absolute position embedding."""

    sim: np.ndarray  # (gh, gw, gh, gw) float64: sim[r, c] is the tile of patch (r, c)
    grid: tuple[int, int]  # the current input patch grid
    trained_grid: tuple[int, int]  # the grid the embedding was trained at
    interpolation: str  # how the network resamples it when the grids differ
    learned: Profile
    sincos: Profile  # a fixed 2-D sin-cos embedding on the same grid
    sincos_dim: int
    applied: bool  # False when this capture ran without the embedding (the scramble lesson's switch)

    @property
    def resampled(self) -> bool:
        return tuple(self.grid) != tuple(self.trained_grid)


def _profile(sim: torch.Tensor) -> Profile:
    p = similarity_distance_profile(sim)
    return Profile(p.distances.double().numpy(), p.mean.double().numpy(), p.std.double().numpy(),
                   distance_rank_correlation(sim))


def no_embedding_reason(ctx: Context) -> str:
    """What a model without a learned absolute embedding uses instead, in words for the panel."""
    cfg = getattr(ctx.model.info, "config", None)
    if ctx.capture.family == "swin":
        version = getattr(cfg, "version", 1)
        how = ("a small MLP of the log-spaced offset (Swin v2's continuous position bias)" if version == 2
               else "a learned table with one entry per offset (Swin v1's relative position bias)")
        return (f"Swin has no absolute position embedding. Inside each window, every head adds a bias to its "
                f"attention logits that depends only on the offset between query and key, computed by {how}. "
                f"See the {SWIN_PANEL} panel for that bias, per head.")
    return ("This ViT has no position embedding at all: self-attention then sees a bag of patches (shuffling "
            "the patches shuffles its attention the same way and leaves the class token's output unchanged). "
            f"Compare it with a ViT that learned one (faces-vit), or see the {SWIN_PANEL} panel for Swin's "
            "relative position bias.")


def pos_similarity(ctx: Context) -> PositionSimilarity:
    cap, net = ctx.capture, ctx.model.net
    if cap.family != "vit" or getattr(net, "pos_embed", None) is None:
        raise NotApplicable(no_embedding_reason(ctx))
    grid = (int(cap.grid_size[0]), int(cap.grid_size[1]))
    if grid[0] * grid[1] < 3:
        raise NotApplicable(f"the input is only {grid[0]}×{grid[1]} patches: too few to compare positions")
    sim = vit_position_similarity(net, grid)  # (gh, gw, gh, gw), resampled as the network does
    cfg = net.config
    dim = max(4, int(cfg.embed_dim) // 4 * 4)  # sin-cos needs a multiple of 4 channels
    ref = position_similarity(sincos_2d_position_embedding(dim, grid), grid)  # (gh, gw, gh, gw)
    return PositionSimilarity(sim.double().numpy(), grid, tuple(int(v) for v in cfg.grid_size), cfg.pos_interp,
                              _profile(sim), _profile(ref), dim, bool(ctx.use_pos_embed))


# On the worker: a DINOv2-sized grid (37×37 patches at 518 px) takes a second or more to rank.
register(ProductSpec("pos_similarity", pos_similarity, (), slow=True))
