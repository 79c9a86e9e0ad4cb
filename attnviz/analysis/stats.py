"""Per-block, per-head attention statistics, for one image or averaged over many.

- Mean attention distance (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021, Fig. 7
  right): for a query q, Σ_k a_qk·‖p_q − p_k‖ with p the centres of the tokens in input pixels;
  averaged over queries. ViT: queries and keys are the patch tokens, each query's row renormalised
  over the patches (what it gives to prefix tokens has no position). Swin: inside each window, between
  the tokens' own positions on the stage grid (the shift's roll undone) times the block's token size
  (its geometry's ``token_px``); averaged over windows and queries. A shifted window can hold tokens
  from opposite image edges: without padding the shift mask keeps them apart (-100), but with padding
  timm's region layout lets some of them attend to each other (see :mod:`attnviz.analysis.windows`),
  and that attention spans the whole image, so window-local positions would understate it.
- Entropy: −Σ_k a_qk·ln a_qk over each full attention row (nats), averaged over queries (Swin: and
  windows). High = diffuse, 0 = one key takes everything.
- Prefix share (ViT): the mean over patch queries of the attention going to prefix tokens (class,
  distillation, registers); 0 for a ViT without prefix tokens, NaN for Swin (it has none).

Swin padding: when a stage's resolution is not a multiple of the window, timm pads the rolled map
at the bottom/right with zero tokens, and real tokens do attend to them. Padding tokens are left out
as queries everywhere; for the mean distance they are left out as keys too (rows renormalised over
real tokens, as with prefix tokens in ViT); the entropy uses the full rows the network computed.

Results are (blocks, heads) float64 arrays; Swin stages with fewer heads are padded with NaN up to
the largest head count.

Token norms (Darcet et al., "Vision Transformers Need Registers", ICLR 2024): the L2 norm of every
token a block hands on, as the network recorded it (``BlockCapture.token_norms``), on the block's grid,
with high-norm outliers flagged by a robust rule (:func:`norm_outliers`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Union

import numpy as np
import torch

from attnviz.nets.capture import BlockCapture, Capture, SwinBlockCapture

from .flow import Cancelled
from .query import patch_positions
from .windows import geometry_of, window_token_index

ProgressFn = Callable[[int, Optional[int]], None]
CancelFn = Callable[[], bool]


@dataclass
class HeadStats:
    """Statistics per block (rows, forward order) and head (columns)."""

    mean_distance: np.ndarray  # (L, H) input pixels
    entropy: np.ndarray  # (L, H) nats
    prefix_share: np.ndarray  # (L, H) fraction of attention; NaN for Swin
    num_heads: list[int] = field(default_factory=list)  # real head count of every block
    images: int = 0  # how many images the means cover


# ---------------------------------------------------------------------------------------------
# one block


def _pairwise_distance(pos: torch.Tensor) -> torch.Tensor:
    """(..., n, 2) positions -> (..., n, n) Euclidean distances."""
    d = pos[..., :, None, :] - pos[..., None, :, :]  # (..., n, n, 2)
    return d.pow(2).sum(-1).sqrt()


def _mean_distance(a: torch.Tensor, dist: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per query Σ_k a'_qk·dist_qk with a' the row renormalised over the kept keys: (..., q, k) -> (..., q)."""
    if key_mask is not None:
        a = a * key_mask
    s = a.sum(-1, keepdim=True)  # (..., q, 1)
    a = a / torch.where(s > 0, s, 1.0)
    return (a * dist).sum(-1)


def _entropy(a: torch.Tensor) -> torch.Tensor:
    """−Σ a·ln a over the last axis (0·ln 0 = 0): (..., q, k) -> (..., q)."""
    return -torch.special.xlogy(a, a).sum(-1)


def vit_block_stats(
    attn: torch.Tensor, num_prefix_tokens: int, grid_size: tuple[int, int], token_px: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, H, N, N) attention -> mean distance, entropy, prefix share, each (B, H) float64."""
    a = torch.as_tensor(attn).detach().to("cpu", torch.float64)
    if a.dim() != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"ViT attention must be (B, heads, N, N), got {tuple(a.shape)}")
    P = num_prefix_tokens
    gh, gw = grid_size
    if P + gh * gw != a.shape[-1]:
        raise ValueError(f"{a.shape[-1]} tokens do not match {P} prefix tokens + a {gh}×{gw} grid")
    dist = _pairwise_distance(torch.from_numpy(patch_positions(grid_size))) * token_px  # (n, n) pixels
    patches = a[..., P:, P:]  # (B, H, n, n)
    md = _mean_distance(patches, dist).mean(-1)  # (B, H)
    ent = _entropy(a).mean(-1)  # (B, H)
    share = a[..., P:, :P].sum(-1).mean(-1)  # (B, H)
    return md.numpy(), ent.numpy(), share.numpy()


def swin_block_stats(block: BlockCapture) -> tuple[np.ndarray, np.ndarray]:
    """A Swin block's (B, nW, H, M², M²) attention -> mean distance and entropy, each (B, H) float64."""
    geom = geometry_of(block)  # ValueError for a ViT block
    a = block.attn.detach().to("cpu", torch.float64)
    M = geom.window_size
    if a.dim() != 5 or a.shape[-1] != M * M:
        raise ValueError(f"Swin attention must be (B, windows, heads, M², M²), got {tuple(a.shape)}")
    index = window_token_index(geom)  # (nW, M²) stage-grid token in each slot, -1 = padding
    if index.shape[0] != a.shape[1]:
        raise ValueError(f"{a.shape[1]} windows captured but the geometry gives {index.shape[0]}")
    W = geom.grid_size[1]
    real = (index >= 0).to(torch.float64)  # (nW, M²)
    flat = index.clamp(min=0)
    pos = torch.stack([flat // W, flat % W], dim=-1).to(torch.float64)  # (nW, M², 2) row, col on the grid
    dist = _pairwise_distance(pos) * geom.token_px  # (nW, M², M²) pixels
    keys = real[None, :, None, None, :]  # (1, nW, 1, 1, M²)
    queries = real[None, :, None, :]  # (1, nW, 1, M²)
    n_real = real.sum()
    md = (_mean_distance(a, dist[None, :, None], keys) * queries).sum(dim=(1, 3)) / n_real  # (B, H)
    ent = (_entropy(a) * queries).sum(dim=(1, 3)) / n_real  # (B, H)
    return md.numpy(), ent.numpy()


# ---------------------------------------------------------------------------------------------
# one capture, many captures


def _capture_stats(capture: Capture) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], int]:
    """Per block (B, H) arrays of the three statistics, and the batch size."""
    if not capture.blocks:
        raise ValueError("the capture holds no attention blocks")
    md, ent, share = [], [], []
    for blk in capture.blocks:
        if isinstance(blk, SwinBlockCapture):
            m, e = swin_block_stats(blk)
            s = np.full_like(m, np.nan)  # Swin has no prefix tokens
        else:
            m, e, s = vit_block_stats(blk.attn, capture.num_prefix_tokens, blk.grid_size, blk.token_px)
        md.append(m)
        ent.append(e)
        share.append(s)
    return md, ent, share, int(md[0].shape[0])


def _table(per_block: list[np.ndarray]) -> np.ndarray:
    """Per block (H_l,) vectors -> (L, max H) with NaN padding."""
    H = max(v.shape[-1] for v in per_block)
    out = np.full((len(per_block), H), np.nan)
    for i, v in enumerate(per_block):
        out[i, : v.shape[-1]] = v
    return out


def head_stats(capture: Capture, index: Optional[int] = None) -> HeadStats:
    """Statistics of image ``index`` of the capture, or the mean over its whole batch when None."""
    md, ent, share, B = _capture_stats(capture)
    if index is None:
        pick = slice(None)
    elif 0 <= index < B:
        pick = slice(index, index + 1)
    else:
        raise ValueError(f"image {index} is not in this capture (batch of {B})")
    return HeadStats(
        mean_distance=_table([m[pick].mean(0) for m in md]),
        entropy=_table([e[pick].mean(0) for e in ent]),
        prefix_share=_table([s[pick].mean(0) for s in share]),
        num_heads=[int(m.shape[-1]) for m in md],
        images=B if index is None else 1,
    )


def dataset_head_stats(
    captures: Union[Iterable[Capture], Callable[[], Iterable[Capture]]],
    *,
    total: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelFn] = None,
) -> HeadStats:
    """Mean statistics over every image of every capture (running sums, one capture in memory).

    ``captures`` is an iterable of captures (or a callable returning one), e.g. a generator that
    loads and captures image after image. ``progress(captures_done, total)`` follows each capture;
    ``cancel()`` is polled before each and a True answer raises :class:`Cancelled`. All captures
    must come from the same network (same blocks and heads).
    """
    source = captures() if callable(captures) else captures
    sums: Optional[list[list[np.ndarray]]] = None
    heads: list[int] = []
    images = 0
    done = 0
    for cap in source:
        if cancel is not None and cancel():
            raise Cancelled("statistics cancelled")
        md, ent, share, B = _capture_stats(cap)
        shape = [int(m.shape[-1]) for m in md]
        if sums is None:
            sums = [[np.zeros(h) for h in shape] for _ in range(3)]
            heads = shape
        elif shape != heads:
            raise ValueError("captures come from different networks (blocks or heads differ)")
        for acc, per_block in zip(sums, (md, ent, share)):
            for i, v in enumerate(per_block):
                acc[i] += v.sum(0)
        images += B
        done += 1
        if progress is not None:
            progress(done, total)
    if sums is None:
        raise ValueError("no images: the folder gave no captures")
    return HeadStats(
        mean_distance=_table([v / images for v in sums[0]]),
        entropy=_table([v / images for v in sums[1]]),
        prefix_share=_table([v / images for v in sums[2]]),
        num_heads=heads,
        images=images,
    )


def image_head_tables(capture: Capture) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Every image's statistics: mean distance, entropy and prefix share, each (B, L, max H) float64
    (NaN where a block has fewer heads; prefix share NaN for Swin), and the real head count per block.

    The rows of image b equal ``head_stats(capture, index=b)``; folder statistics accumulate these."""
    md, ent, share, B = _capture_stats(capture)
    heads = [int(m.shape[-1]) for m in md]
    out = []
    for per_block in (md, ent, share):
        t = np.full((B, len(per_block), max(heads)), np.nan)  # (B, L, H)
        for i, v in enumerate(per_block):
            t[:, i, : v.shape[-1]] = v
        out.append(t)
    return out[0], out[1], out[2], heads


# ---------------------------------------------------------------------------------------------
# token norms (Darcet et al., "Vision Transformers Need Registers", ICLR 2024)

# A patch token is an outlier when its norm exceeds max(median + OUTLIER_K · MAD, OUTLIER_RATIO · median)
# of the block's patch-token norms (MAD = median absolute deviation; for normally distributed norms
# 5·MAD ≈ 3.4 standard deviations). Median and MAD, because the artifact tokens themselves would inflate a
# mean and a standard deviation; the ratio, because the artifacts of Darcet et al. have norms several times
# those of the other patches, while a block whose norms barely vary (a tiny MAD) would otherwise flag
# tokens that are only a few per cent above the rest.
OUTLIER_K = 5.0
OUTLIER_RATIO = 2.0


@dataclass
class NormOutliers:
    """Which values of a set are outliers by the rule above, and the numbers behind it."""

    mask: np.ndarray  # bool, the shape of the values
    threshold: float  # max(median + k·MAD, ratio·median)
    median: float
    mad: float
    k: float
    ratio: float


def norm_outliers(values: np.ndarray, k: float = OUTLIER_K, ratio: float = OUTLIER_RATIO) -> NormOutliers:
    """Flag values strictly above max(median + k·MAD, ratio·median). Any shape; NaN is never an outlier."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        raise ValueError("no finite token norms to look for outliers in")
    med = float(np.median(finite))
    mad = float(np.median(np.abs(finite - med)))
    thr = max(med + k * mad, ratio * med)
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(v) & (v > thr)
    return NormOutliers(mask, thr, med, mad, float(k), float(ratio))


@dataclass
class TokenNorms:
    """One block's output token norms of one image, on the block's token grid, with the outliers flagged."""

    map: np.ndarray  # (H_b, W_b) float64 L2 norms of the patch (Swin: stage-grid) tokens
    outliers: NormOutliers  # over the patch tokens; .mask is (H_b, W_b)
    prefix: np.ndarray  # (P,) norms of the prefix tokens (class, distillation, registers); empty for Swin
    prefix_names: list[str]
    block: int
    token_px: int  # input pixels per token side of this block


def token_norms(capture: Capture, block: int, index: int = 0, k: float = OUTLIER_K,
                ratio: float = OUTLIER_RATIO) -> TokenNorms:
    """Block ``block``'s output token norms of image ``index``: the patch map and the prefix tokens' norms.

    ViT: ``token_norms`` is (B, N) over prefix + patch tokens; Swin: (B, H·W) row-major on the stage grid.
    The outlier rule (:func:`norm_outliers`) runs over the patch tokens only: prefix tokens are listed apart,
    since registers are meant to carry a large norm."""
    if not 0 <= block < len(capture.blocks):
        raise ValueError(f"block {block} is not in this capture ({len(capture.blocks)} blocks)")
    blk = capture.blocks[block]
    norms = getattr(blk, "token_norms", None)
    if norms is None:
        raise ValueError("this capture holds no token norms (the network did not record its block outputs)")
    n = norms.detach().to("cpu", torch.float64)
    if n.dim() != 2 or not 0 <= index < n.shape[0]:
        raise ValueError(f"token norms of shape {tuple(n.shape)} have no image {index}")
    gh, gw = blk.grid_size
    P = 0 if isinstance(blk, SwinBlockCapture) else int(capture.num_prefix_tokens)
    if n.shape[1] != P + gh * gw:
        raise ValueError(f"{n.shape[1]} token norms do not match {P} prefix tokens + a {gh}×{gw} grid")
    row = n[index].numpy()  # (P + gh*gw,)
    grid = row[P:].reshape(gh, gw)  # (gh*gw,) -> (H_b, W_b), row-major
    names = list(capture.prefix_names[:P]) if P else []
    names += [f"prefix {i}" for i in range(len(names), P)]
    return TokenNorms(grid, norm_outliers(grid, k, ratio), row[:P].copy(), names, int(block), int(blk.token_px))
