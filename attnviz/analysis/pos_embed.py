"""Position information of ViT and Swin, as images a viewer can show.

ViT (Dosovitskiy et al. 2021, Fig. 7 centre): the cosine similarity between the learned absolute
position embedding of every patch and every other patch, one (gh, gw) tile per patch. The embedding
is taken as the network uses it at the current input size: prefix entries (class/distillation/register
tokens) are left out and the patch part is resampled the way timm's ``resample_abs_pos_embed`` does
(bicubic with antialias by default). Cosine, not the raw dot product, so the norm of an embedding does
not dominate its tile. Fixed 2-D sin-cos embeddings (MAE, He et al. 2022) can be generated here so
the same view works for models that use them.

Swin (Liu et al. 2021, 2022): the relative position bias each head adds to its attention logits.
v1 learns a table with one entry per relative offset (dy, dx) in [-(M-1), M-1]^2; v2 computes it
with a small MLP of log-spaced offsets, squashed to (0, 16) by ``16 * sigmoid``. Both are shown as a
(2M-1, 2M-1) image per head, indexed ``[dy + M - 1, dx + M - 1]`` with (dy, dx) = query - key, the
convention of :func:`attnviz.nets.windows.relative_position_index`, and as the (M, M) bias one query
position sees over the keys of its window. A captured block (:class:`attnviz.nets.SwinBlockCapture`)
carries the bias and (v2) the temperature the network applied: :func:`captured_bias`,
:func:`captured_bias_image` and :func:`captured_logit_scale` read those, so a view shows what the
network added; the module-based :func:`attention_bias_image` / :func:`v2_logit_scale` stay for a
network (or a timm module) without a capture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F

from attnviz.nets.capture import BlockCapture, SwinBlockCapture
from attnviz.nets.windows import log_spaced_coords, relative_position_index

# --------------------------------------------------------------------------------------------------
# ViT: absolute position embeddings
# --------------------------------------------------------------------------------------------------


def _as_2d(pos_embed: torch.Tensor) -> torch.Tensor:
    """Accept (1, L, D) or (L, D); return (L, D) float32, detached."""
    if not isinstance(pos_embed, torch.Tensor):
        raise TypeError(f"position embedding must be a tensor, got {type(pos_embed).__name__}")
    pe = pos_embed.detach()
    if pe.dim() == 3:
        if pe.shape[0] != 1:
            raise ValueError(f"position embedding must have batch size 1, got shape {tuple(pe.shape)}")
        pe = pe[0]  # (L, D)
    if pe.dim() != 2:
        raise ValueError(f"position embedding must be (1, L, D) or (L, D), got shape {tuple(pe.shape)}")
    return pe.float()


def patch_position_embeddings(
    pos_embed: torch.Tensor,
    trained_grid: tuple[int, int],
    grid_size: Optional[tuple[int, int]] = None,
    num_prefix_tokens: int = 0,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """The patch part of an absolute position embedding at ``grid_size``, shape (gh * gw, D).

    ``num_prefix_tokens`` is the number of prefix entries stored *in the embedding* (0 for
    ``no_embed_class`` models such as DeiT-3 or DINOv2 with registers). ``trained_grid`` is the patch
    grid the embedding was trained at; when ``grid_size`` differs, the grid part is resampled as
    timm does (float32, ``F.interpolate`` with the given mode and antialias); when equal it is used as is.
    """
    pe = _as_2d(pos_embed)  # (L, D)
    th, tw = int(trained_grid[0]), int(trained_grid[1])
    if num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
    if pe.shape[0] != num_prefix_tokens + th * tw:
        raise ValueError(
            f"position embedding has {pe.shape[0]} entries, expected {num_prefix_tokens} prefix + "
            f"{th}x{tw} grid = {num_prefix_tokens + th * tw}"
        )
    grid = pe[num_prefix_tokens:]  # (th * tw, D)
    if grid_size is None or (int(grid_size[0]), int(grid_size[1])) == (th, tw):
        return grid.clone()
    gh, gw = int(grid_size[0]), int(grid_size[1])
    if gh <= 0 or gw <= 0:
        raise ValueError(f"grid size must be positive, got {grid_size}")
    D = grid.shape[1]
    img = grid.reshape(1, th, tw, D).permute(0, 3, 1, 2)  # (1, D, th, tw)
    use_aa = antialias and interpolation in ("bilinear", "bicubic")
    img = F.interpolate(img, size=(gh, gw), mode=interpolation, antialias=use_aa)  # (1, D, gh, gw)
    return img.permute(0, 2, 3, 1).reshape(gh * gw, D)  # (gh * gw, D)


def cosine_similarity_grid(patch_embed: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """(gh, gw, gh, gw) cosine similarity of every patch's embedding with every other patch's.

    ``sim[y, x]`` is the tile drawn for patch (y, x). A zero vector has similarity 0 to everything.
    """
    gh, gw = int(grid_size[0]), int(grid_size[1])
    if patch_embed.dim() != 2 or patch_embed.shape[0] != gh * gw:
        raise ValueError(f"expected ({gh * gw}, D) patch embeddings, got shape {tuple(patch_embed.shape)}")
    unit = F.normalize(patch_embed.float(), dim=-1)  # (N, D)
    sim = unit @ unit.T  # (N, N)
    return sim.reshape(gh, gw, gh, gw)  # (gh, gw, gh, gw)


def position_similarity(
    pos_embed: torch.Tensor,
    trained_grid: tuple[int, int],
    grid_size: Optional[tuple[int, int]] = None,
    num_prefix_tokens: int = 0,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Cosine-similarity grid (gh, gw, gh, gw) of a position embedding as used at ``grid_size``."""
    patches = patch_position_embeddings(
        pos_embed, trained_grid, grid_size, num_prefix_tokens, interpolation, antialias
    )
    gs = tuple(trained_grid) if grid_size is None else tuple(grid_size)
    return cosine_similarity_grid(patches, gs)  # (gh, gw, gh, gw)


def vit_position_similarity(net: Any, grid_size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Similarity grid of an attnviz ViT's ``pos_embed`` at ``grid_size`` (default: trained grid).

    Uses ``net.config`` (a ViTConfig) for the trained grid, the prefix entries in the embedding
    (none when ``no_embed_class``) and the resampling mode.
    """
    pe = getattr(net, "pos_embed", None)
    if pe is None:
        raise ValueError("this model has no learned absolute position embedding")
    cfg = net.config
    prefix = 0 if cfg.no_embed_class else cfg.num_prefix_tokens
    return position_similarity(
        pe, cfg.grid_size, grid_size, prefix, cfg.pos_interp, cfg.pos_interp_antialias
    )


def sincos_2d_position_embedding(
    embed_dim: int,
    grid_size: tuple[int, int],
    num_prefix_tokens: int = 0,
    temperature: float = 10000.0,
) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, MAE layout, shape (num_prefix_tokens + gh * gw, D).

    As in MAE's released code: the first half of the channels encodes the column (x), the second
    half the row (y); each half is [sin(p * w_k), cos(p * w_k)] with w_k = 1 / temperature^(k / (D/4)),
    k = 0 .. D/4 - 1. Prefix entries are zeros (MAE gives its class token a zero embedding).
    """
    if embed_dim <= 0 or embed_dim % 4 != 0:
        raise ValueError(f"2-D sin-cos embedding needs embed_dim divisible by 4, got {embed_dim}")
    gh, gw = int(grid_size[0]), int(grid_size[1])
    quarter = embed_dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (D/4,)
    ys, xs = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )  # (gh, gw) each

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        ang = pos.reshape(-1, 1) * omega[None, :]  # (N, D/4)
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)  # (N, D/2)

    grid = torch.cat([one_axis(xs), one_axis(ys)], dim=1).float()  # (N, D)
    prefix = torch.zeros(num_prefix_tokens, embed_dim)
    return torch.cat([prefix, grid], dim=0)  # (P + N, D)


@dataclass
class SpatialStructure:
    """How much a similarity grid looks like a 2-D map (used on model cards).

    A learned embedding that has picked up 2-D structure is more similar to its 4-neighbours than to
    distant patches; an embedding without position information (or a random one) shows no gap.
    """

    neighbour_mean: float  # mean similarity over ordered 4-neighbour pairs
    distant_mean: float  # mean similarity over pairs at Euclidean distance >= distant_from
    distant_from: float  # the distance threshold, in patches
    contrast: float  # neighbour_mean - distant_mean


def spatial_structure(sim: torch.Tensor, distant_from: Optional[float] = None) -> SpatialStructure:
    """Neighbour vs. distant similarity of a (gh, gw, gh, gw) grid.

    ``distant_from`` defaults to half the shorter grid side (at least 2), so "distant" means across
    a good part of the image at any grid size.
    """
    if sim.dim() != 4 or tuple(sim.shape[:2]) != tuple(sim.shape[2:]):
        raise ValueError(f"expected a (gh, gw, gh, gw) similarity grid, got shape {tuple(sim.shape)}")
    gh, gw = sim.shape[:2]
    if gh * gw < 2:
        raise ValueError("a similarity grid needs at least two patches")
    if distant_from is None:
        distant_from = max(2.0, min(gh, gw) / 2.0)
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()  # (N, 2)
    dist = torch.cdist(pos, pos)  # (N, N)
    flat = sim.reshape(gh * gw, gh * gw).float()  # (N, N)
    near = (dist - 1.0).abs() < 1e-6
    far = dist >= distant_from - 1e-6
    if not bool(far.any()):
        raise ValueError(f"no pair of patches is {distant_from} patches apart on a {gh}x{gw} grid")
    n_mean = float(flat[near].mean())
    d_mean = float(flat[far].mean())
    return SpatialStructure(n_mean, d_mean, float(distant_from), n_mean - d_mean)


def similarity_by_distance(sim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean similarity as a function of Euclidean patch distance.

    Returns (distances (K,), mean_similarity (K,)) over the K distinct distances > 0 on the grid.
    """
    if sim.dim() != 4 or tuple(sim.shape[:2]) != tuple(sim.shape[2:]):
        raise ValueError(f"expected a (gh, gw, gh, gw) similarity grid, got shape {tuple(sim.shape)}")
    gh, gw = sim.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)  # (N, 2)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1).flatten()  # (N*N,) squared distances, exact
    vals = sim.reshape(-1).float()  # (N*N,)
    keys, inv = torch.unique(d2, return_inverse=True)
    sums = torch.zeros(len(keys)).index_add_(0, inv, vals)
    counts = torch.zeros(len(keys)).index_add_(0, inv, torch.ones_like(vals))
    keep = keys > 0
    return keys[keep].double().sqrt().float(), (sums / counts)[keep]


@dataclass
class DistanceProfile:
    """Similarity against Euclidean patch distance: one entry per distinct distance > 0 on the grid."""

    distances: torch.Tensor  # (K,) patch distances, ascending
    mean: torch.Tensor  # (K,) mean similarity of the pairs at that distance
    std: torch.Tensor  # (K,) their standard deviation (population, over ordered pairs)
    count: torch.Tensor  # (K,) number of ordered pairs (i, j), i != j, at that distance


def similarity_distance_profile(sim: torch.Tensor) -> DistanceProfile:
    """Mean and spread of a (gh, gw, gh, gw) similarity grid per patch distance (ordered pairs i != j).

    The mean is :func:`similarity_by_distance`'s; the spread shows how much a distance alone decides
    the similarity (a perfect 2-D map has little spread, a border/interior split a lot).
    """
    distances, mean = similarity_by_distance(sim)  # (K,), (K,)
    gh, gw = sim.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)  # (N, 2)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1).flatten()  # (N*N,) squared distances, exact
    vals = sim.reshape(-1).double()  # (N*N,)
    keys, inv = torch.unique(d2, return_inverse=True)  # same keys, same order as similarity_by_distance
    counts = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, inv, torch.ones_like(vals))
    sums = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, inv, vals)
    centred = vals - (sums / counts)[inv]  # (N*N,) deviation from the mean at its distance
    var = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, inv, centred * centred) / counts
    keep = keys > 0
    return DistanceProfile(distances, mean, var[keep].sqrt().float(), counts[keep].long())


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, ties given the mean of the ranks they span (float64)."""
    v = values.double()
    order = torch.argsort(v, stable=True)
    sorted_v = v[order]
    # Start index of each run of equal values in sorted order.
    new_run = torch.ones(len(v), dtype=torch.bool)
    new_run[1:] = sorted_v[1:] != sorted_v[:-1]
    run_id = torch.cumsum(new_run.long(), 0) - 1  # (n,) run of each sorted position
    starts = torch.nonzero(new_run).flatten()  # (R,)
    ends = torch.cat([starts[1:], torch.tensor([len(v)])])  # (R,) one past the last
    mean_rank = (starts + ends + 1).double() / 2.0  # (R,) mean of ranks starts+1 .. ends
    ranks = torch.empty(len(v), dtype=torch.float64)
    ranks[order] = mean_rank[run_id]
    return ranks


def distance_rank_correlation(sim: torch.Tensor) -> float:
    """Spearman rank correlation between similarity and Euclidean patch distance, over all pairs i != j.

    One number for "does the embedding encode 2-D distance": -1 when similarity falls strictly with
    distance, about 0 when it ignores it. Each unordered pair is counted once (the grid is symmetric,
    and counting both orders would not change the value); ties get average ranks, as in
    ``scipy.stats.spearmanr``.
    """
    if sim.dim() != 4 or tuple(sim.shape[:2]) != tuple(sim.shape[2:]):
        raise ValueError(f"expected a (gh, gw, gh, gw) similarity grid, got shape {tuple(sim.shape)}")
    gh, gw = sim.shape[:2]
    n = gh * gw
    if n < 3:
        raise ValueError("a rank correlation needs a grid of at least three patches")
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1).double()  # (N, 2)
    iu = torch.triu_indices(n, n, offset=1)  # (2, N(N-1)/2) pairs i < j
    dist = (pos[iu[0]] - pos[iu[1]]).pow(2).sum(-1).sqrt()  # (P,)
    vals = sim.reshape(n, n).double()[iu[0], iu[1]]  # (P,)
    if not bool(torch.isfinite(vals).all()):
        raise ValueError("the similarity grid holds NaN or infinite values")
    rs, rd = _average_ranks(vals), _average_ranks(dist)
    rs, rd = rs - rs.mean(), rd - rd.mean()
    denom = float(rs.norm() * rd.norm())
    if denom == 0.0:
        raise ValueError("the similarity is the same for every pair: no rank correlation")
    return float((rs * rd).sum()) / denom


# --------------------------------------------------------------------------------------------------
# Swin: relative position bias
# --------------------------------------------------------------------------------------------------


def _window_from_table_len(length: int) -> int:
    side = math.isqrt(length)
    if side * side != length or side % 2 == 0:
        raise ValueError(f"a relative position table has (2M-1)^2 rows; {length} is not such a number")
    return (side + 1) // 2


def v1_bias_image(table: torch.Tensor) -> torch.Tensor:
    """Swin v1 ``relative_position_bias_table`` ((2M-1)^2, heads) -> (heads, 2M-1, 2M-1) image.

    ``image[h, dy + M - 1, dx + M - 1]`` is the bias head h adds for query - key = (dy, dx); table row
    ``(dy + M - 1) * (2M - 1) + (dx + M - 1)`` as in :func:`relative_position_index`.
    """
    if table.dim() != 2:
        raise ValueError(f"expected a ((2M-1)^2, heads) table, got shape {tuple(table.shape)}")
    M = _window_from_table_len(table.shape[0])
    side = 2 * M - 1
    return table.detach().float().T.reshape(-1, side, side).clone()  # (heads, 2M-1, 2M-1)


def v2_bias_image(
    fc1_weight: torch.Tensor,
    fc1_bias: torch.Tensor,
    fc2_weight: torch.Tensor,
    window_size: int,
    pretrained_window_size: int = 0,
    fc2_bias: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Swin v2 continuous position bias as a (heads, 2M-1, 2M-1) image.

    16 * sigmoid(fc2(relu(fc1(c)))) for the log-spaced offsets c of
    :func:`attnviz.nets.windows.log_spaced_coords`; the weights are those of ``cpb_mlp[0]`` (2 -> hidden,
    with bias) and ``cpb_mlp[2]`` (hidden -> heads, without bias in timm). Indexed like :func:`v1_bias_image`.
    """
    if fc1_weight.dim() != 2 or fc1_weight.shape[1] != 2:
        raise ValueError(f"cpb fc1 weight must be (hidden, 2), got {tuple(fc1_weight.shape)}")
    if fc2_weight.dim() != 2 or fc2_weight.shape[1] != fc1_weight.shape[0]:
        raise ValueError(
            f"cpb fc2 weight must be (heads, {fc1_weight.shape[0]}), got {tuple(fc2_weight.shape)}"
        )
    coords = log_spaced_coords(window_size, pretrained_window_size)  # (2M-1, 2M-1, 2)
    hidden = torch.relu(F.linear(coords, fc1_weight.detach().float(), fc1_bias.detach().float()))
    b2 = None if fc2_bias is None else fc2_bias.detach().float()
    out = F.linear(hidden, fc2_weight.detach().float(), b2)  # (2M-1, 2M-1, heads)
    return (16.0 * torch.sigmoid(out)).permute(2, 0, 1).contiguous()  # (heads, 2M-1, 2M-1)


def bias_matrix(image: torch.Tensor) -> torch.Tensor:
    """(heads, 2M-1, 2M-1) bias image -> (heads, M*M, M*M) bias added to the logits of a window."""
    M = _window_side(image)
    idx = relative_position_index(M)  # (M*M, M*M)
    flat = image.reshape(image.shape[0], -1)  # (heads, (2M-1)^2)
    return flat[:, idx.reshape(-1)].reshape(image.shape[0], M * M, M * M)  # (heads, M*M, M*M)


def bias_for_query(image: torch.Tensor, query: tuple[int, int]) -> torch.Tensor:
    """(heads, M, M) bias a query at window position ``query`` = (qy, qx) adds to each key (ky, kx)."""
    M = _window_side(image)
    qy, qx = int(query[0]), int(query[1])
    if not (0 <= qy < M and 0 <= qx < M):
        raise ValueError(f"query position {query} is outside the {M}x{M} window")
    rows = qy - torch.arange(M) + M - 1  # (M,) dy + M - 1 for key rows ky
    cols = qx - torch.arange(M) + M - 1  # (M,)
    return image[:, rows[:, None], cols[None, :]]  # (heads, M, M)


def _window_side(image: torch.Tensor) -> int:
    if image.dim() != 3 or image.shape[1] != image.shape[2] or image.shape[1] % 2 == 0:
        raise ValueError(f"expected a (heads, 2M-1, 2M-1) bias image, got shape {tuple(image.shape)}")
    return (image.shape[1] + 1) // 2


def attention_bias_image(
    attn_module: Any, window_size: Optional[int] = None, pretrained_window_size: int = 0
) -> torch.Tensor:
    """(heads, 2M-1, 2M-1) position bias of a Swin window-attention module (timm layout).

    v1: the module's ``relative_position_bias_table``; at a ``window_size`` smaller than the trained
    window (a stage map smaller than M) the central offsets are used, as attnviz's Swin does.
    v2: its ``cpb_mlp`` (Linear, ReLU, Linear) evaluated at ``window_size`` (required for v2) with
    ``pretrained_window_size``.
    """
    table = getattr(attn_module, "relative_position_bias_table", None)
    if table is not None:
        image = v1_bias_image(table)  # (heads, 2T-1, 2T-1)
        T = _window_side(image)
        if window_size is None or window_size == T:
            return image
        if not 0 < window_size < T:
            raise ValueError(f"window {window_size} does not fit the {T}x{T} window the table was trained for")
        M = int(window_size)
        return image[:, T - M : T + M - 1, T - M : T + M - 1].contiguous()  # (heads, 2M-1, 2M-1)
    mlp = getattr(attn_module, "cpb_mlp", None)
    if mlp is not None:
        if window_size is None:
            raise ValueError("a Swin v2 position bias needs the window size it is evaluated at")
        fc1, fc2 = mlp[0], mlp[2]
        return v2_bias_image(
            fc1.weight, fc1.bias, fc2.weight, window_size, pretrained_window_size, getattr(fc2, "bias", None)
        )
    raise ValueError("module has neither a relative_position_bias_table (v1) nor a cpb_mlp (v2)")


def v2_logit_scale(attn_module: Any) -> torch.Tensor:
    """(heads,) temperature a Swin v2 head multiplies its cosine similarities by: exp(min(s, log 100))."""
    scale = getattr(attn_module, "logit_scale", None)
    if scale is None:
        raise ValueError("module has no logit_scale (not a Swin v2 attention)")
    return torch.clamp(scale.detach().float().reshape(-1), max=math.log(100.0)).exp()  # (heads,)


def _swin_block(block: BlockCapture) -> SwinBlockCapture:
    if not isinstance(block, SwinBlockCapture):
        raise ValueError(f"block {block.index} is not a Swin block: it has no relative position bias")
    return block


def captured_bias(block: BlockCapture) -> torch.Tensor:
    """(heads, M*M, M*M) position bias a captured Swin block added to every window's logits.

    The tensor the network applied (float32, CPU), not recomputed; raises ValueError for a ViT block.
    """
    return _swin_block(block).bias.clone()


def captured_bias_image(block: BlockCapture) -> torch.Tensor:
    """(heads, 2M-1, 2M-1) image of a captured block's bias, indexed like :func:`v1_bias_image`.

    Every relative offset occurs in the (M*M, M*M) matrix (offset (0, 0) on the diagonal, the extreme
    ones between opposite corners), so scattering the matrix by :func:`relative_position_index` fills
    the image; pairs with the same offset carry the same value, which makes the scatter well defined.
    """
    bias = captured_bias(block)  # (heads, M*M, M*M)
    M = _swin_block(block).window_size
    side = 2 * M - 1
    idx = relative_position_index(M).reshape(-1)  # (M*M * M*M,)
    flat = torch.empty(bias.shape[0], side * side, dtype=bias.dtype)  # (heads, (2M-1)^2)
    flat[:, idx] = bias.reshape(bias.shape[0], -1)  # (heads, M*M * M*M) scattered by offset
    return flat.reshape(-1, side, side)  # (heads, 2M-1, 2M-1)


def captured_logit_scale(block: BlockCapture) -> torch.Tensor:
    """(heads,) temperature τ a captured Swin v2 block multiplied its cosine similarities by.

    Raises ValueError for a v1 block (scaled dot product, no temperature) and for a ViT block.
    """
    scale = _swin_block(block).logit_scale
    if scale is None:
        raise ValueError(f"block {block.index} is a Swin v1 block: it has no logit scale (only v2 does)")
    return scale.clone()


__all__ = [
    "patch_position_embeddings",
    "cosine_similarity_grid",
    "position_similarity",
    "vit_position_similarity",
    "sincos_2d_position_embedding",
    "SpatialStructure",
    "spatial_structure",
    "similarity_by_distance",
    "distance_rank_correlation",
    "DistanceProfile",
    "similarity_distance_profile",
    "v1_bias_image",
    "v2_bias_image",
    "bias_matrix",
    "bias_for_query",
    "attention_bias_image",
    "v2_logit_scale",
    "captured_bias",
    "captured_bias_image",
    "captured_logit_scale",
]
